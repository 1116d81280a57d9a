//! The one backoff curve both retry loops use: the client's fail-over loop
//! between attempts of one call, and the agent session between beats or
//! registrations that failed.

use std::time::Duration;

use rand::Rng;

/// Delay before retry number `retry` (1 for the first retry).
///
/// Exponential from `initial`, doubling per retry, capped at `max`, with
/// "equal jitter": a uniform draw in the upper half of that value, so that
/// clients that failed together do not retry together, while the delay never
/// drops below half the curve (no tight loop when `initial` is non-zero).
pub(crate) fn exponential_backoff(
    initial: Duration,
    max: Duration,
    retry: u32,
    rng: &mut impl Rng,
) -> Duration {
    let exp = retry.saturating_sub(1).min(20);
    let base = initial.saturating_mul(1u32 << exp).min(max);
    let half = base / 2;
    let jitter = if half.is_zero() {
        Duration::ZERO
    } else {
        rng.gen_range(Duration::ZERO..=half)
    };
    (base - half) + jitter
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::mock::StepRng;

    #[test]
    fn doubles_from_initial_stays_in_the_upper_half_and_is_capped() {
        let (initial, max) = (Duration::from_millis(100), Duration::from_secs(1));
        let mut low = StepRng::new(0, 0);
        assert_eq!(
            exponential_backoff(initial, max, 1, &mut low),
            Duration::from_millis(50)
        );
        assert_eq!(
            exponential_backoff(initial, max, 3, &mut low),
            Duration::from_millis(200)
        );
        assert_eq!(
            exponential_backoff(initial, max, u32::MAX, &mut low),
            Duration::from_millis(500)
        );
        let mut rng = rand::thread_rng();
        for retry in 1..40 {
            let curve = initial.saturating_mul(1 << (retry - 1).min(20)).min(max);
            let d = exponential_backoff(initial, max, retry, &mut rng);
            assert!(d >= curve / 2 && d <= curve, "retry {retry}: {d:?}");
        }
        assert_eq!(
            exponential_backoff(Duration::ZERO, Duration::ZERO, 5, &mut rng),
            Duration::ZERO
        );
    }
}

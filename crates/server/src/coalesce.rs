//! One request coalescer: concurrent callers share one round of work.
//!
//! While a round runs, arriving items queue; when it ends, every item that
//! waited goes into the next round (up to a batch limit). An item never
//! joins a round already in flight: for reads that matters (a read-index
//! round started before a read arrived could miss a write the reader has
//! already seen acknowledged), and for heartbeats it keeps one call to the
//! leader at a time. Used by the read path (read-index rounds) and by a
//! follower's heartbeat forwarding.
//!
//! Group commit (`group_commit`) has another shape: several rounds in flight
//! at once through a channel, grouped per leader address, so it keeps its
//! own queue.

use std::future::Future;
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

/// Queues items and runs them in rounds; see the module docs.
pub struct Coalescer<I, O> {
    queue: Mutex<Queue<I, O>>,
    max_batch: usize,
}

struct Queue<I, O> {
    waiting: Vec<(I, oneshot::Sender<O>)>,
    running: bool,
}

impl<I, O> Coalescer<I, O>
where
    I: Send + 'static,
    O: Send + 'static,
{
    /// A coalescer whose rounds take at most `max_batch` items.
    pub fn new(max_batch: usize) -> Arc<Self> {
        Arc::new(Coalescer {
            queue: Mutex::new(Queue {
                waiting: Vec::new(),
                running: false,
            }),
            max_batch: max_batch.max(1),
        })
    }

    /// Queues `item` and waits for its output. When no round is running,
    /// this call starts the rounds (on a task of their own, so a caller
    /// that gives up does not stop the others' round) with `round`, which
    /// must answer one output per item, in order. `None` when the item got
    /// no output: the round answered fewer, or the queue's lock was
    /// poisoned.
    pub async fn submit<R, F>(self: &Arc<Self>, item: I, round: R) -> Option<O>
    where
        R: Fn(Vec<I>) -> F + Send + 'static,
        F: Future<Output = Vec<O>> + Send,
    {
        let (tx, rx) = oneshot::channel();
        let start = {
            let mut q = self.queue.lock().ok()?;
            q.waiting.push((item, tx));
            !std::mem::replace(&mut q.running, true)
        };
        if start {
            let this = Arc::clone(self);
            tokio::spawn(async move { this.run_rounds(round).await });
        }
        rx.await.ok()
    }

    async fn run_rounds<R, F>(&self, round: R)
    where
        R: Fn(Vec<I>) -> F,
        F: Future<Output = Vec<O>>,
    {
        loop {
            let batch: Vec<_> = {
                let Ok(mut q) = self.queue.lock() else { return };
                if q.waiting.is_empty() {
                    q.running = false;
                    return;
                }
                let n = q.waiting.len().min(self.max_batch);
                q.waiting.drain(..n).collect()
            };
            let (items, replies): (Vec<I>, Vec<_>) = batch.into_iter().unzip();
            // A short answer leaves the rest without an output (dropped
            // senders), which their callers report as an internal error.
            for (reply, out) in replies.into_iter().zip(round(items).await) {
                let _ = reply.send(out);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[tokio::test]
    async fn items_waiting_during_a_round_share_the_next_one() {
        let c: Arc<Coalescer<u32, (u32, usize)>> = Coalescer::new(100);
        let rounds = Arc::new(AtomicUsize::new(0));
        let round = {
            let rounds = rounds.clone();
            move |items: Vec<u32>| {
                let n = rounds.fetch_add(1, Ordering::SeqCst);
                async move {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    items.into_iter().map(|i| (i * 10, n)).collect()
                }
            }
        };
        let first = {
            let (c, round) = (c.clone(), round.clone());
            tokio::spawn(async move { c.submit(1, round).await })
        };
        // Wait until the first round runs, then queue three more.
        while rounds.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        let later: Vec<_> = (2..5)
            .map(|i| {
                let (c, round) = (c.clone(), round.clone());
                tokio::spawn(async move { c.submit(i, round).await })
            })
            .collect();
        assert_eq!(first.await.unwrap(), Some((10, 0)));
        for (i, h) in (2..5).zip(later) {
            assert_eq!(h.await.unwrap(), Some((i * 10, 1)), "item {i}");
        }
        assert_eq!(rounds.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_round_takes_at_most_the_batch_limit() {
        let c: Arc<Coalescer<u32, usize>> = Coalescer::new(2);
        let sizes = Arc::new(Mutex::new(Vec::new()));
        let gate = Arc::new(tokio::sync::Notify::new());
        let round = {
            let (sizes, gate) = (sizes.clone(), gate.clone());
            move |items: Vec<u32>| {
                sizes.lock().unwrap().push(items.len());
                let (gate, n) = (gate.clone(), items.len());
                async move {
                    gate.notified().await;
                    vec![n; n]
                }
            }
        };
        let calls: Vec<_> = (0..5)
            .map(|i| {
                let (c, round) = (c.clone(), round.clone());
                tokio::spawn(async move { c.submit(i, round).await })
            })
            .collect();
        // Release rounds until every caller has its answer.
        let mut answers = Vec::new();
        for h in calls {
            while !h.is_finished() {
                gate.notify_one();
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            answers.push(h.await.unwrap().expect("an output"));
        }
        let sizes = sizes.lock().unwrap().clone();
        assert!(sizes.iter().all(|&n| n <= 2), "{sizes:?}");
        assert_eq!(sizes.iter().sum::<usize>(), 5, "{sizes:?}");
        assert!(answers.iter().all(|&n| (1..=2).contains(&n)), "{answers:?}");
    }

    #[tokio::test]
    async fn an_item_without_an_output_gets_none() {
        let c: Arc<Coalescer<u32, u32>> = Coalescer::new(10);
        let out = c.submit(7, |_items: Vec<u32>| async { Vec::new() }).await;
        assert_eq!(out, None);
        // The coalescer still works afterwards.
        let out = c.submit(8, |items: Vec<u32>| async move { items }).await;
        assert_eq!(out, Some(8));
    }
}

//! Exit codes and how a failure maps to one (printed on stderr as
//! `error: <code>: <message>`).

use std::process::ExitCode;

use registry_client::{ClientError, WatchError};

/// Exit code: the registry refused the request.
pub(crate) const EXIT_API: u8 = 1;
/// Exit code: bad arguments or input files.
pub(crate) const EXIT_USAGE: u8 = 2;
/// Exit code: no node could be reached or none could serve the request.
pub(crate) const EXIT_UNREACHABLE: u8 = 3;
/// Exit code: `watch` asked for events the registry no longer keeps.
pub(crate) const EXIT_COMPACTED: u8 = 4;

/// A problem with the command line or its input files (exit code 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct UsageError(pub(crate) String);

/// Prints `err` on stderr and picks the exit code.
pub(crate) fn report(err: &anyhow::Error) -> ExitCode {
    if let Some(ce) = err.downcast_ref::<ClientError>() {
        return ExitCode::from(report_client_error(ce));
    }
    if let Some(we) = err.downcast_ref::<WatchError>() {
        return ExitCode::from(report_watch_error(we));
    }
    if err.downcast_ref::<UsageError>().is_some() {
        eprintln!("error: {err:#}");
        return ExitCode::from(EXIT_USAGE);
    }
    eprintln!("error: {err:#}");
    ExitCode::from(EXIT_API)
}

pub(crate) fn report_client_error(err: &ClientError) -> u8 {
    match err {
        ClientError::Api { status, body } => {
            let e = &body.error;
            match &e.field {
                Some(field) => eprintln!(
                    "error: {}: {} (field: {field}, HTTP {status})",
                    e.code, e.message
                ),
                None => eprintln!("error: {}: {} (HTTP {status})", e.code, e.message),
            }
            // A 503 that reached us without fail-over (single node) means the
            // cluster cannot serve.
            if *status == 503 {
                EXIT_UNREACHABLE
            } else {
                EXIT_API
            }
        }
        ClientError::AllNodesFailed { attempts, last } => {
            match last.body() {
                Some(b) => eprintln!(
                    "error: cluster unavailable after {attempts} attempts: {}: {}",
                    b.error.code, b.error.message
                ),
                None => eprintln!("error: cluster unreachable after {attempts} attempts: {last}"),
            }
            EXIT_UNREACHABLE
        }
        ClientError::Transport(m) => {
            eprintln!("error: cluster unreachable: {m}");
            EXIT_UNREACHABLE
        }
        ClientError::Unknown(m) => {
            eprintln!(
                "error: no answer in time; the change may or may not have been applied \
                 (check with `get`): {m}"
            );
            EXIT_UNREACHABLE
        }
        ClientError::Decode(m) => {
            eprintln!("error: unexpected answer from the registry: {m}");
            EXIT_API
        }
        ClientError::InvalidConfig(m) => {
            eprintln!("error: {m}");
            EXIT_USAGE
        }
    }
}

pub(crate) fn report_watch_error(err: &WatchError) -> u8 {
    match err {
        WatchError::Compacted {
            requested,
            current_revision,
        } => {
            eprintln!(
                "error: revision_compacted: events from revision {requested} are no longer kept \
                 (current revision {current_revision}); list the agents again and watch with \
                 --from-revision <the listing's revision + 1>"
            );
            EXIT_COMPACTED
        }
        WatchError::Refused(e) => report_client_error(e),
        WatchError::Unavailable { attempts, last } => {
            eprintln!("error: cluster unavailable: gave up after {attempts} attempts in a row; last error: {last}");
            EXIT_UNREACHABLE
        }
        WatchError::Decode { .. } => {
            eprintln!("error: {err}");
            EXIT_API
        }
        WatchError::InvalidOptions(m) => {
            eprintln!("error: {m}");
            EXIT_USAGE
        }
    }
}

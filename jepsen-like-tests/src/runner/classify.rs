//! What an answer (or its absence) says about an operation: the honest
//! outcome classification, kept pure so tests can pin every case.
//!
//! The server's contract (docs/api.md, "Writes"; crates/types/src/error.rs):
//! a 2xx happened; a 4xx was rejected before anything was proposed; 503
//! `no_leader` means the write was never proposed; 504 `timeout` means it
//! may or may not have been applied. 503 `unavailable` on a write is Unknown
//! here: the server also answers it when Raft stops with a fatal error after
//! the entry may already be in the log. A request that was never sent
//! (connection refused) did not happen; a request cut or timed out after it
//! may have been sent is Unknown. Reads change nothing, so a read without an
//! answer is simply a Fail (it observed nothing).

use crate::history::{OpKind, Outcome, ReadValue};

/// What came back for one request.
#[derive(Clone, Debug, PartialEq)]
pub enum Answer {
    /// An HTTP answer: status, error code if the body has one, and the
    /// pieces of a success body the history keeps.
    Http {
        status: u16,
        code: Option<String>,
        read: Option<ReadValue>,
    },
    /// The connection could not be made: nothing was sent.
    Refused(String),
    /// The client's own timeout fired.
    TimedOut,
    /// The connection broke after the request may have been sent.
    Broken(String),
}

fn is_write(kind: &OpKind) -> bool {
    !matches!(kind, OpKind::Get)
}

/// Classifies the answer to an operation of `kind`.
pub fn classify(kind: &OpKind, answer: Answer) -> Outcome {
    let status = match &answer {
        Answer::Http { status, .. } => *status,
        _ => 0,
    };
    match answer {
        Answer::Http { status, read, .. } if (200..300).contains(&status) => match kind {
            OpKind::Get | OpKind::Heartbeat => Outcome::Ok {
                read,
                existed: None,
            },
            OpKind::Delete => Outcome::Ok {
                read: None,
                existed: Some(true),
            },
            OpKind::Register { .. } => Outcome::Ok {
                read: None,
                existed: None,
            },
        },
        // A definite read of "absent".
        Answer::Http {
            status: 404, code, ..
        } if code.as_deref() == Some("agent_not_found") && matches!(kind, OpKind::Get) => {
            Outcome::Ok {
                read: None,
                existed: None,
            }
        }
        Answer::Http {
            status: 404, code, ..
        } if code.as_deref() == Some("agent_not_found") && matches!(kind, OpKind::Delete) => {
            Outcome::Ok {
                read: None,
                existed: Some(false),
            }
        }
        Answer::Http { code, .. } => {
            let code = code.unwrap_or_else(|| format!("http_{status}"));
            let unknown =
                is_write(kind) && (status == 504 || (status >= 500 && code != "no_leader"));
            if unknown {
                Outcome::Unknown {
                    reason: format!("{status} {code}"),
                }
            } else {
                Outcome::Fail { status, code }
            }
        }
        Answer::Refused(e) => Outcome::Fail {
            status: 0,
            code: format!("connection_refused: {e}"),
        },
        Answer::TimedOut if !is_write(kind) => Outcome::Fail {
            status: 0,
            code: "client_timeout".into(),
        },
        Answer::Broken(e) if !is_write(kind) => Outcome::Fail {
            status: 0,
            code: format!("connection_error: {e}"),
        },
        Answer::TimedOut => Outcome::Unknown {
            reason: "client timeout".into(),
        },
        Answer::Broken(e) => Outcome::Unknown {
            reason: format!("connection error after sending: {e}"),
        },
    }
}

/// Sorts a reqwest error into [`Answer::Refused`] (nothing sent),
/// [`Answer::TimedOut`] or [`Answer::Broken`].
pub fn transport_answer(e: &reqwest::Error) -> Answer {
    if e.is_timeout() {
        Answer::TimedOut
    } else if e.is_connect() {
        // A connect error: the TCP handshake failed, no request bytes left.
        Answer::Refused(root_cause(e))
    } else {
        Answer::Broken(root_cause(e))
    }
}

fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

//! Outcome classification: only a 2xx is Ok, only answers that prove a
//! write was never applied are Fail, everything else is Unknown.

use jepsen_like_tests::history::{OpKind, Outcome, ReadValue};
use jepsen_like_tests::runner::classify::{classify, Answer};

fn http(status: u16, code: Option<&str>) -> Answer {
    Answer::Http {
        status,
        code: code.map(str::to_string),
        read: None,
    }
}

fn register() -> OpKind {
    OpKind::Register { value: "v1".into() }
}

fn is_fail(o: &Outcome) -> bool {
    matches!(o, Outcome::Fail { .. })
}

fn is_unknown(o: &Outcome) -> bool {
    matches!(o, Outcome::Unknown { .. })
}

#[test]
fn success_is_ok() {
    let o = classify(&register(), http(201, None));
    assert_eq!(
        o,
        Outcome::Ok {
            read: None,
            existed: None
        }
    );
    let o = classify(&OpKind::Delete, http(200, None));
    assert_eq!(
        o,
        Outcome::Ok {
            read: None,
            existed: Some(true)
        }
    );
    let read = ReadValue {
        value: "v1".into(),
        status: "active".into(),
        revision: 7,
    };
    let o = classify(
        &OpKind::Get,
        Answer::Http {
            status: 200,
            code: None,
            read: Some(read.clone()),
        },
    );
    assert_eq!(
        o,
        Outcome::Ok {
            read: Some(read),
            existed: None
        }
    );
}

#[test]
fn not_found_is_a_definite_read_of_absent() {
    let o = classify(&OpKind::Get, http(404, Some("agent_not_found")));
    assert_eq!(
        o,
        Outcome::Ok {
            read: None,
            existed: None
        }
    );
    let o = classify(&OpKind::Delete, http(404, Some("agent_not_found")));
    assert_eq!(
        o,
        Outcome::Ok {
            read: None,
            existed: Some(false)
        }
    );
    // A heartbeat for a removed agent did not happen.
    let o = classify(&OpKind::Heartbeat, http(404, Some("agent_not_found")));
    assert_eq!(
        o,
        Outcome::Fail {
            status: 404,
            code: "agent_not_found".into()
        }
    );
    // A route 404 is not a read of anything.
    assert!(is_fail(&classify(
        &OpKind::Get,
        http(404, Some("not_found"))
    )));
}

#[test]
fn rejections_and_no_leader_are_fail() {
    for (status, code) in [
        (400, "invalid_argument"),
        (409, "revision_mismatch"),
        (413, "payload_too_large"),
        (503, "no_leader"),
    ] {
        for kind in [register(), OpKind::Delete, OpKind::Heartbeat, OpKind::Get] {
            let o = classify(&kind, http(status, Some(code)));
            assert_eq!(
                o,
                Outcome::Fail {
                    status,
                    code: code.into()
                },
                "{kind:?} {status}"
            );
        }
    }
}

#[test]
fn timeouts_and_server_errors_on_writes_are_unknown() {
    for kind in [register(), OpKind::Delete, OpKind::Heartbeat] {
        assert!(is_unknown(&classify(&kind, http(504, Some("timeout")))));
        assert!(is_unknown(&classify(&kind, http(503, Some("unavailable")))));
        assert!(is_unknown(&classify(&kind, http(500, Some("internal")))));
        assert!(is_unknown(&classify(&kind, http(502, None))));
        assert!(is_unknown(&classify(&kind, Answer::TimedOut)));
        assert!(is_unknown(&classify(&kind, Answer::Broken("reset".into()))));
    }
}

#[test]
fn nothing_sent_is_fail() {
    for kind in [register(), OpKind::Delete, OpKind::Get] {
        let o = classify(&kind, Answer::Refused("connection refused".into()));
        assert!(
            matches!(o, Outcome::Fail { status: 0, .. }),
            "{kind:?}: {o:?}"
        );
    }
}

#[test]
fn a_read_without_an_answer_observed_nothing() {
    assert!(is_fail(&classify(&OpKind::Get, Answer::TimedOut)));
    assert!(is_fail(&classify(&OpKind::Get, http(504, Some("timeout")))));
    assert!(is_fail(&classify(
        &OpKind::Get,
        http(503, Some("unavailable"))
    )));
}

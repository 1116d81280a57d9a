//! The watcher's server-sent-event parser keeps partial blocks for later.

use jepsen_like_tests::runner::workload::parse_sse;

#[test]
fn complete_blocks_are_parsed_and_the_tail_is_kept() {
    let mut buf = String::from(
        "id: 1\nevent: AGENT_REGISTERED\ndata: {\"revision\":1}\n\n: keep-alive\n\nid: 2\nevent: AGENT_UPD",
    );
    let got = parse_sse(&mut buf);
    assert_eq!(
        got,
        vec![(
            Some("1".into()),
            Some("AGENT_REGISTERED".into()),
            "{\"revision\":1}".into()
        )]
    );
    assert_eq!(buf, "id: 2\nevent: AGENT_UPD");
    buf.push_str("ATED\ndata: {}\n\n");
    let got = parse_sse(&mut buf);
    assert_eq!(
        got,
        vec![(Some("2".into()), Some("AGENT_UPDATED".into()), "{}".into())]
    );
    assert!(buf.is_empty());
}

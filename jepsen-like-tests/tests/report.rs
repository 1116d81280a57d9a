//! The report: summary numbers and the files written.
mod common;

use common::*;
use jepsen_like_tests::checker::{check_all, CheckConfig, Verdict};
use jepsen_like_tests::history::History;
use jepsen_like_tests::report::{check_file, summarize, write_report, Phase};

/// 10 s run, a partition from 2 s to 4 s and a kill from 6 s to 7 s.
fn run() -> History {
    let mut h = history(10_000);
    h.faults.push(fault("partition", 2000, 4000));
    h.faults.push(fault("kill", 6000, 7000));
    ops(&mut h)
        .reg(1, "a", "v1", 0, 10) // before: 10 ms
        .get(1, "a", 100, 130, Some("v1")) // before: 30 ms
        .reg(1, "a", "v2", 2500, 3500) // during: 1000 ms
        .reg_with(2, "a", "v3", 3000, None, unknown()) // during
        .reg(1, "a", "v4", 5000, 5020) // between: 20 ms
        .reg(1, "a", "v5", 8000, 8004); // after: 4 ms
                                        // Leader n1 in term 2, then n2 in term 3 after the partition; all
                                        // nodes agree again at 7.5 s.
    h.samples.push(sample(1, 0, 1000, "leader", 2, Some(1), 5));
    h.samples.push(sample(2, 0, 3000, "leader", 3, Some(2), 6));
    for n in 1..=3 {
        h.samples
            .push(sample(n, 0, 7200, "follower", 3, Some(2), 6 + n));
        h.samples
            .push(sample(n, 0, 7500 + n, "follower", 3, Some(2), 10));
    }
    h
}

#[test]
fn summary_counts_phases_gaps_and_convergence() {
    let h = run();
    let r = check_all(&h, &CheckConfig::default());
    let s = summarize(&h, &r);
    assert_eq!(s.nodes, vec![1, 2, 3]);
    assert_eq!(s.faults_by_kind.get("partition"), Some(&1));
    let reg = &s.ops["register"];
    assert_eq!((reg.invoked, reg.ok, reg.unknown), (5, 4, 1));
    assert_eq!(s.ops["all"].invoked, 6);

    let phase = |p: Phase| s.phases.iter().find(|x| x.phase == p).unwrap();
    let before = phase(Phase::BeforeFaults);
    assert_eq!(
        (before.ok_ops, before.p50_ms, before.p99_ms),
        (2, Some(10.0), Some(30.0))
    );
    assert!((before.duration_s - 2.0).abs() < 1e-9);
    assert_eq!(phase(Phase::DuringFaults).ok_ops, 1);
    assert!((phase(Phase::DuringFaults).duration_s - 3.0).abs() < 1e-9);
    assert_eq!(phase(Phase::BetweenFaults).p50_ms, Some(20.0));
    assert_eq!(phase(Phase::AfterHeal).p99_ms, Some(4.0));

    assert_eq!((s.leaders_seen, s.leader_changes), (2, 1));
    // Ok writes complete at 0.01, 3.5, 5.02, 8.004 s; the run ends at 10 s.
    assert!(
        (s.longest_write_gap.length_s - 3.49).abs() < 1e-9,
        "{:?}",
        s.longest_write_gap
    );
    // Healed at 7 s; the last node reports index 10 at 7.503 s.
    let c = s.convergence_after_heal_s.expect("converged");
    assert!((c - 0.503).abs() < 1e-9, "{c}");
}

#[test]
fn files_are_written_and_readable() {
    let dir = tempfile::tempdir().unwrap();
    let h = run();
    let path = dir.path().join("history.json");
    std::fs::write(&path, serde_json::to_string(&h).unwrap()).unwrap();
    let (back, r) = check_file(&path, &CheckConfig::default()).unwrap();
    assert_eq!(back, h);
    // No final states were recorded: Unknown, never Pass.
    assert_eq!(r.verdict, Verdict::Unknown);

    let out = dir.path().join("report");
    write_report(&out, &h, &r).unwrap();
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(json["summary"]["verdict"], "unknown");
    assert_eq!(json["checks"]["results"].as_array().unwrap().len(), 5);
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(md.starts_with("# Chaos run `test`: UNKNOWN"), "{md}");
    assert!(
        md.contains("| partition | partition n1 | n1 | 2.00–4.00 |"),
        "{md}"
    );
    let svg = std::fs::read_to_string(out.join("latency.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    assert_eq!(
        svg.matches("<circle").count(),
        6 + 3,
        "6 ops and 3 legend marks"
    );
    assert!(svg.contains(">partition</text>") && svg.contains(">kill</text>"));
}

#[test]
fn a_missing_file_is_an_error_not_a_verdict() {
    let err = check_file(
        std::path::Path::new("/nonexistent/history.json"),
        &CheckConfig::default(),
    )
    .unwrap_err();
    assert!(format!("{err:#}").contains("/nonexistent/history.json"));
}

//! The bridge from a recorded history to the checkers and the report
//! (modules `checker` and `report`, written apart from the runner). The
//! runner calls only [`judge`] and [`check_file`], so the checkers' API
//! touches the runner in this one place.

use std::path::Path;

use crate::checker::{check_all, CheckConfig, CheckReport, Verdict};
use crate::history::History;
use crate::report::{self, write_report};

/// What the checkers said about one run.
#[derive(Clone, Debug)]
pub struct Judgement {
    /// `pass`, `fail` or `unknown`.
    pub verdict: String,
    /// One line per anomaly or undecided checker, for the terminal.
    pub findings: Vec<String>,
}

impl Judgement {
    /// Only a pass is a pass: "not checked" must never read as "passed".
    pub fn passed(&self) -> bool {
        self.verdict == "pass"
    }
}

/// Most anomalies printed on the terminal per run (report.md has them all).
const MAX_FINDINGS: usize = 20;

/// Runs every checker on `history` and writes the report into `dir`.
pub fn judge(dir: &Path, history: &History) -> anyhow::Result<Judgement> {
    let report = check_all(history, &CheckConfig::default());
    write_report(dir, history, &report)?;
    Ok(judgement(&report))
}

fn judgement(report: &CheckReport) -> Judgement {
    let mut findings: Vec<String> = report
        .results
        .iter()
        .filter(|r| r.verdict != Verdict::Pass)
        .map(|r| {
            format!(
                "{}: {} ({} anomalies)",
                r.checker.as_str(),
                r.verdict.as_str(),
                r.anomalies.len()
            )
        })
        .collect();
    findings.extend(
        report
            .anomalies()
            .take(MAX_FINDINGS)
            .map(|a| format!("{}/{}: {}", a.checker.as_str(), a.kind.as_str(), a.message)),
    );
    Judgement {
        verdict: report.verdict.as_str().to_string(),
        findings,
    }
}

/// `registry-chaos check history.json`: loads a history, checks it and
/// writes the report next to it.
pub fn check_file(path: &Path) -> anyhow::Result<Judgement> {
    let (history, report) = report::check_file(path, &CheckConfig::default())?;
    let dir = path.parent().unwrap_or(Path::new("."));
    write_report(dir, &history, &report)?;
    Ok(judgement(&report))
}

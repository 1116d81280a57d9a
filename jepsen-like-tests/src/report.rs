//! The report of a chaos run: what was done to the cluster, how it behaved,
//! and what the checkers found.
//!
//! [`summarize`] computes a serializable [`Summary`]; [`write_report`]
//! writes it to a directory as `report.json` (summary plus every checker's
//! full result), `report.md` (short Markdown for humans and CI logs) and
//! `latency.svg` (every operation's latency over time, by outcome, with the
//! fault windows shaded). The SVG is written by hand: it needs no font or
//! plotting library, and a browser renders its text with its own fonts.
//! [`check_file`] is the runner's `check` subcommand: load a `history.json`
//! and run every checker.
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

use crate::checker::{check_all, CheckConfig, CheckReport, Checker, Verdict};
use crate::history::{History, Micros, Op, OpKind, Outcome};

/// Anomaly messages kept per checker in the summary (all are in
/// `report.json`'s `checks`).
const FIRST_MESSAGES: usize = 5;

/// The headline numbers of a run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub seed: u64,
    pub scenario: String,
    pub started_at: String,
    /// Node ids.
    pub nodes: Vec<u64>,
    /// Length of the run, seconds.
    pub duration_s: f64,
    /// The overall verdict of the checkers.
    pub verdict: Verdict,
    /// Every fault injected, in start order.
    pub faults: Vec<FaultSummary>,
    /// Faults injected per nemesis family.
    pub faults_by_kind: BTreeMap<String, u64>,
    /// Per op type (`register`, `get`, `delete`, `heartbeat`) and `all`.
    pub ops: BTreeMap<String, OpCounts>,
    /// Throughput and latency of successful ops per phase of the run.
    pub phases: Vec<PhaseStats>,
    /// Distinct (term, leader) pairs seen in the samples.
    pub leaders_seen: u64,
    /// Leader changes: distinct (term, leader) pairs after the first.
    pub leader_changes: u64,
    /// The longest time without a successful write (Register or Delete
    /// completing Ok), counted between ok write completions and from the
    /// run's start and to its end.
    pub longest_write_gap: WriteGap,
    /// Seconds from the end of the last fault window to the first sample
    /// time at which every node reported the same applied index and the same
    /// known leader; `None` without faults or if that never happened.
    pub convergence_after_heal_s: Option<f64>,
    /// Each checker's verdict and first anomalies.
    pub checks: Vec<CheckSummary>,
}

/// One fault window, in seconds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FaultSummary {
    /// Nemesis family (kill, partition, ...).
    pub kind: String,
    /// What exactly was done, as the runner described it.
    pub detail: String,
    /// The nodes it targeted.
    pub nodes: Vec<u64>,
    /// Seconds since the run's start.
    pub start_s: f64,
    /// Seconds since the run's start (healed).
    pub end_s: f64,
}

/// How many ops of one type were invoked, and how each ended.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct OpCounts {
    pub invoked: u64,
    /// Definitely happened.
    pub ok: u64,
    /// Definitely did not happen.
    pub failed: u64,
    /// May or may not have happened (timeouts, cut connections).
    pub unknown: u64,
}

/// A part of the run, by where an op's invocation falls.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Before the first fault started (the whole run if there were none).
    BeforeFaults,
    /// While at least one fault window was in force.
    DuringFaults,
    /// After the first fault, before the last heal, with no fault in force.
    BetweenFaults,
    /// After the last fault window ended.
    AfterHeal,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::BeforeFaults => "before faults",
            Phase::DuringFaults => "during faults",
            Phase::BetweenFaults => "between faults",
            Phase::AfterHeal => "after heal",
        }
    }
}

/// Successful ops of one phase: how many, how fast, how slow.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PhaseStats {
    pub phase: Phase,
    /// Total length of the phase, seconds.
    pub duration_s: f64,
    /// Ops invoked in the phase that completed Ok.
    pub ok_ops: u64,
    /// `ok_ops / duration_s`.
    pub ok_per_s: f64,
    /// Median latency of those ops (completion - invocation), milliseconds;
    /// `None` without any.
    pub p50_ms: Option<f64>,
    /// 99th percentile (nearest rank), milliseconds.
    pub p99_ms: Option<f64>,
}

/// A stretch of the run without a successful write.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WriteGap {
    /// Start, seconds since the run's start (an ok write's completion, or 0).
    pub from_s: f64,
    /// End, seconds (the next ok write's completion, or the run's end).
    pub to_s: f64,
    /// `to_s - from_s`.
    pub length_s: f64,
}

/// One checker's outcome, shortened for the summary.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CheckSummary {
    pub checker: Checker,
    pub verdict: Verdict,
    /// Items the checker looked at (see its description).
    pub checked: u64,
    pub anomalies: usize,
    /// The first few anomaly messages.
    pub first: Vec<String>,
    /// The checker's named counts (exempted, unverifiable, ...).
    pub counts: BTreeMap<String, u64>,
    /// Why it is Unknown, or other caveats.
    pub notes: Vec<String>,
}

/// What `report.json` holds.
#[derive(Serialize)]
struct ReportFile<'a> {
    summary: &'a Summary,
    checks: &'a CheckReport,
}

fn s(us: Micros) -> f64 {
    us as f64 / 1e6
}

fn op_type(op: &Op) -> &'static str {
    match op.kind {
        OpKind::Register { .. } => "register",
        OpKind::Get => "get",
        OpKind::Delete => "delete",
        OpKind::Heartbeat => "heartbeat",
    }
}

/// The run's length: the recorded duration, or the last recorded instant.
fn run_end(h: &History) -> Micros {
    let last_op = h
        .ops
        .iter()
        .map(|o| o.complete_us.unwrap_or(o.invoke_us))
        .max()
        .unwrap_or(0);
    h.meta.duration_us.max(last_op)
}

/// Computes the summary of a run and its check.
pub fn summarize(h: &History, r: &CheckReport) -> Summary {
    let end = run_end(h);
    let mut faults: Vec<FaultSummary> = h
        .faults
        .iter()
        .map(|f| FaultSummary {
            kind: f.kind.clone(),
            detail: f.detail.clone(),
            nodes: f.nodes.clone(),
            start_s: s(f.start_us),
            end_s: s(f.end_us),
        })
        .collect();
    faults.sort_by(|a, b| a.start_s.total_cmp(&b.start_s));
    let mut faults_by_kind = BTreeMap::new();
    for f in &h.faults {
        *faults_by_kind.entry(f.kind.clone()).or_default() += 1;
    }
    let mut ops: BTreeMap<String, OpCounts> = BTreeMap::new();
    for op in &h.ops {
        for key in [op_type(op), "all"] {
            let c = ops.entry(key.to_owned()).or_default();
            c.invoked += 1;
            match op.outcome {
                Outcome::Ok { .. } => c.ok += 1,
                Outcome::Fail { .. } => c.failed += 1,
                Outcome::Unknown { .. } => c.unknown += 1,
            }
        }
    }
    let (leaders_seen, leader_changes) = leader_changes(h);
    Summary {
        seed: h.meta.seed,
        scenario: h.meta.scenario.clone(),
        started_at: h.meta.started_at.clone(),
        nodes: h.meta.nodes.iter().map(|(id, _)| *id).collect(),
        duration_s: s(end),
        verdict: r.verdict,
        faults,
        faults_by_kind,
        ops,
        phases: phases(h, end),
        leaders_seen,
        leader_changes,
        longest_write_gap: longest_write_gap(h, end),
        convergence_after_heal_s: convergence(h),
        checks: r
            .results
            .iter()
            .map(|c| CheckSummary {
                checker: c.checker,
                verdict: c.verdict,
                checked: c.checked,
                anomalies: c.anomalies.len(),
                first: c
                    .anomalies
                    .iter()
                    .take(FIRST_MESSAGES)
                    .map(|a| a.message.clone())
                    .collect(),
                counts: c.counts.clone(),
                notes: c.notes.clone(),
            })
            .collect(),
    }
}

/// Which phase an instant belongs to.
fn phase_at(h: &History, t: Micros) -> Phase {
    let first = h.faults.iter().map(|f| f.start_us).min();
    let last = h.faults.iter().map(|f| f.end_us).max();
    match (first, last) {
        (None, _) | (_, None) => Phase::BeforeFaults,
        (Some(first), _) if t < first => Phase::BeforeFaults,
        (_, Some(last)) if t >= last => Phase::AfterHeal,
        _ if h.faults.iter().any(|f| f.start_us <= t && t < f.end_us) => Phase::DuringFaults,
        _ => Phase::BetweenFaults,
    }
}

/// How long each phase lasted, µs.
fn phase_lengths(h: &History, end: Micros) -> BTreeMap<Phase, Micros> {
    let mut lengths = BTreeMap::new();
    if h.faults.is_empty() {
        lengths.insert(Phase::BeforeFaults, end);
        return lengths;
    }
    // Sweep the window boundaries: between two consecutive ones the phase
    // is constant.
    let mut cuts: Vec<Micros> = vec![0, end];
    for f in &h.faults {
        cuts.push(f.start_us.min(end));
        cuts.push(f.end_us.min(end));
    }
    cuts.sort_unstable();
    cuts.dedup();
    for w in cuts.windows(2) {
        *lengths.entry(phase_at(h, w[0])).or_default() += w[1] - w[0];
    }
    lengths
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

fn phases(h: &History, end: Micros) -> Vec<PhaseStats> {
    let mut latencies: BTreeMap<Phase, Vec<f64>> = BTreeMap::new();
    for op in &h.ops {
        if let (Outcome::Ok { .. }, Some(c)) = (&op.outcome, op.complete_us) {
            let ms = c.saturating_sub(op.invoke_us) as f64 / 1e3;
            latencies
                .entry(phase_at(h, op.invoke_us))
                .or_default()
                .push(ms);
        }
    }
    phase_lengths(h, end)
        .into_iter()
        .map(|(phase, len)| {
            let mut l = latencies.remove(&phase).unwrap_or_default();
            l.sort_by(f64::total_cmp);
            let duration_s = s(len);
            PhaseStats {
                phase,
                duration_s,
                ok_ops: l.len() as u64,
                ok_per_s: if duration_s > 0.0 {
                    l.len() as f64 / duration_s
                } else {
                    0.0
                },
                p50_ms: percentile(&l, 50.0),
                p99_ms: percentile(&l, 99.0),
            }
        })
        .collect()
}

/// (distinct (term, leader) pairs, changes after the first), in sample
/// time order.
fn leader_changes(h: &History) -> (u64, u64) {
    let mut samples: Vec<_> = h.samples.iter().collect();
    samples.sort_by_key(|s| s.t_us);
    let mut seen: Vec<(u64, u64)> = Vec::new();
    for s in samples {
        let leader = if s.role.eq_ignore_ascii_case("leader") {
            Some(s.node)
        } else {
            s.leader_id
        };
        if let Some(l) = leader {
            if !seen.contains(&(s.term, l)) {
                seen.push((s.term, l));
            }
        }
    }
    let n = seen.len() as u64;
    (n, n.saturating_sub(1))
}

/// The longest stretch without a successful write while the workload was
/// still writing: from the run's start to the last write it invoked (the
/// run's closing phase, final reads and silent-agent polls, writes nothing
/// and is not a gap).
fn longest_write_gap(h: &History, end: Micros) -> WriteGap {
    let last_attempt = h
        .ops
        .iter()
        .filter(|o| matches!(o.kind, OpKind::Register { .. } | OpKind::Delete))
        .map(|o| o.invoke_us)
        .max();
    let end = last_attempt.map_or(end, |t| t.min(end));
    let mut points: Vec<Micros> = h
        .ops
        .iter()
        .filter(|o| matches!(o.kind, OpKind::Register { .. } | OpKind::Delete))
        .filter(|o| matches!(o.outcome, Outcome::Ok { .. }))
        .filter_map(|o| o.complete_us)
        .filter(|&t| t <= end)
        .collect();
    points.push(0);
    points.push(end);
    points.sort_unstable();
    let (a, b) = points
        .windows(2)
        .map(|w| (w[0], w[1]))
        .max_by_key(|(a, b)| b - a)
        .unwrap_or((0, end));
    WriteGap {
        from_s: s(a),
        to_s: s(b),
        length_s: s(b - a),
    }
}

/// From the last heal to the first sample time at which every node's latest
/// sample shows the same applied index and the same known leader.
fn convergence(h: &History) -> Option<f64> {
    let healed = h.faults.iter().map(|f| f.end_us).max()?;
    let mut nodes: Vec<u64> = h.meta.nodes.iter().map(|(id, _)| *id).collect();
    if nodes.is_empty() {
        nodes = h.samples.iter().map(|s| s.node).collect();
        nodes.sort_unstable();
        nodes.dedup();
    }
    let mut after: Vec<_> = h.samples.iter().filter(|s| s.t_us >= healed).collect();
    after.sort_by_key(|s| s.t_us);
    let mut latest = BTreeMap::new();
    for s in after {
        latest.insert(s.node, s);
        let all: Option<Vec<_>> = nodes.iter().map(|n| latest.get(n)).collect();
        let Some(all) = all else { continue };
        let Some(first) = all.first() else { continue };
        let same_index = all.iter().all(|x| x.applied_index == first.applied_index);
        let leader =
            first.leader_id.is_some() && all.iter().all(|x| x.leader_id == first.leader_id);
        if same_index && leader {
            return Some(self::s(s.t_us - healed));
        }
    }
    None
}

/// Writes `report.json`, `report.md` and `latency.svg` into `dir`
/// (created if missing).
pub fn write_report(dir: &Path, h: &History, r: &CheckReport) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let summary = summarize(h, r);
    let json = serde_json::to_string_pretty(&ReportFile {
        summary: &summary,
        checks: r,
    })?;
    let write = |name: &str, body: &str| {
        let path = dir.join(name);
        std::fs::write(&path, body).with_context(|| format!("writing {}", path.display()))
    };
    write("report.json", &json)?;
    write("report.md", &markdown(&summary, r))?;
    write("latency.svg", &latency_svg(h))?;
    Ok(())
}

/// Loads a `history.json` and runs every checker on it.
pub fn check_file(path: &Path, cfg: &CheckConfig) -> anyhow::Result<(History, CheckReport)> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let h: History = serde_json::from_str(&text)
        .with_context(|| format!("parsing {} as a history", path.display()))?;
    let report = check_all(&h, cfg);
    Ok((h, report))
}

fn opt_ms(v: Option<f64>) -> String {
    v.map_or("-".to_owned(), |v| format!("{v:.1}"))
}

/// The short Markdown summary.
pub fn markdown(sum: &Summary, r: &CheckReport) -> String {
    let mut m = String::new();
    let verdict = sum.verdict.as_str().to_uppercase();
    let _ = writeln!(m, "# Chaos run `{}`: {verdict}\n", sum.scenario);
    let nodes: Vec<String> = sum.nodes.iter().map(|n| format!("n{n}")).collect();
    let _ = writeln!(
        m,
        "seed {} · started {} · {:.1} s · nodes {}\n",
        sum.seed,
        sum.started_at,
        sum.duration_s,
        nodes.join(", ")
    );

    let _ = writeln!(m, "## Checks\n");
    let _ = writeln!(m, "| checker | verdict | checked | anomalies |");
    let _ = writeln!(m, "| --- | --- | ---: | ---: |");
    for c in &sum.checks {
        let _ = writeln!(
            m,
            "| {} | {} | {} | {} |",
            c.checker.as_str(),
            c.verdict.as_str(),
            c.checked,
            c.anomalies
        );
    }
    for c in &sum.checks {
        if c.first.is_empty() && c.notes.is_empty() && c.counts.is_empty() {
            continue;
        }
        let _ = writeln!(m, "\n**{}**", c.checker.as_str());
        if let Some(full) = r.result(c.checker) {
            let _ = writeln!(m, "\n_{}_\n", full.description);
        }
        for msg in &c.first {
            let _ = writeln!(m, "- {msg}");
        }
        if c.anomalies > c.first.len() {
            let _ = writeln!(
                m,
                "- … and {} more (see report.json)",
                c.anomalies - c.first.len()
            );
        }
        for note in &c.notes {
            let _ = writeln!(m, "- note: {note}");
        }
        if !c.counts.is_empty() {
            let counts: Vec<String> = c.counts.iter().map(|(k, v)| format!("{k} {v}")).collect();
            let _ = writeln!(m, "- counts: {}", counts.join(", "));
        }
    }

    let _ = writeln!(m, "\n## Faults\n");
    if sum.faults.is_empty() {
        let _ = writeln!(m, "none");
    } else {
        let kinds: Vec<String> = sum
            .faults_by_kind
            .iter()
            .map(|(k, n)| format!("{k} ×{n}"))
            .collect();
        let _ = writeln!(m, "{}\n", kinds.join(", "));
        let _ = writeln!(m, "| kind | detail | nodes | window (s) |");
        let _ = writeln!(m, "| --- | --- | --- | --- |");
        for f in &sum.faults {
            let nodes: Vec<String> = f.nodes.iter().map(|n| format!("n{n}")).collect();
            let _ = writeln!(
                m,
                "| {} | {} | {} | {:.2}–{:.2} |",
                f.kind,
                f.detail.replace('|', "\\|"),
                nodes.join(" "),
                f.start_s,
                f.end_s
            );
        }
    }

    let _ = writeln!(m, "\n## Operations\n");
    let _ = writeln!(m, "| op | invoked | ok | failed | unknown |");
    let _ = writeln!(m, "| --- | ---: | ---: | ---: | ---: |");
    for (k, c) in &sum.ops {
        let _ = writeln!(
            m,
            "| {k} | {} | {} | {} | {} |",
            c.invoked, c.ok, c.failed, c.unknown
        );
    }
    let _ = writeln!(
        m,
        "\n| phase | length (s) | ok ops | ok/s | p50 (ms) | p99 (ms) |"
    );
    let _ = writeln!(m, "| --- | ---: | ---: | ---: | ---: | ---: |");
    for p in &sum.phases {
        let _ = writeln!(
            m,
            "| {} | {:.1} | {} | {:.1} | {} | {} |",
            p.phase.as_str(),
            p.duration_s,
            p.ok_ops,
            p.ok_per_s,
            opt_ms(p.p50_ms),
            opt_ms(p.p99_ms)
        );
    }

    let _ = writeln!(m, "\n## Cluster\n");
    let _ = writeln!(
        m,
        "- leaders: {} (term, leader) pairs seen, {} changes",
        sum.leaders_seen, sum.leader_changes
    );
    let g = &sum.longest_write_gap;
    let _ = writeln!(
        m,
        "- longest time without a successful write: {:.2} s ({:.2}–{:.2} s)",
        g.length_s, g.from_s, g.to_s
    );
    let _ = writeln!(
        m,
        "- converged after the last heal: {}",
        sum.convergence_after_heal_s
            .map_or("never (or no faults)".to_owned(), |v| format!("{v:.2} s"))
    );
    let _ = writeln!(m, "\nLatency over time: `latency.svg`.");
    m
}

/// Escapes text for an SVG (XML) text node or attribute.
fn xml(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Most points drawn per outcome; beyond it ok ops are thinned evenly (the
/// fails and unknowns, the interesting ones, are always all drawn).
const MAX_OK_POINTS: usize = 20_000;

/// Every op's latency over time, by outcome, fault windows shaded.
pub fn latency_svg(h: &History) -> String {
    const W: f64 = 1100.0;
    const H: f64 = 480.0;
    const LEFT: f64 = 70.0;
    const RIGHT: f64 = 20.0;
    const TOP: f64 = 70.0;
    const BOTTOM: f64 = 50.0;
    let end = run_end(h).max(1);
    let end_s = s(end);
    // (t seconds, latency ms or None when never answered, outcome 0 ok /
    // 1 fail / 2 unknown)
    let mut points: Vec<(f64, Option<f64>, usize)> = h
        .ops
        .iter()
        .map(|o| {
            let ms = o
                .complete_us
                .map(|done| (done.saturating_sub(o.invoke_us) as f64 / 1e3).max(0.01));
            let outcome = match o.outcome {
                Outcome::Ok { .. } => 0,
                Outcome::Fail { .. } => 1,
                Outcome::Unknown { .. } => 2,
            };
            (s(o.invoke_us), ms, outcome)
        })
        .collect();
    let ok = points.iter().filter(|p| p.2 == 0).count();
    if ok > MAX_OK_POINTS {
        let stride = ok.div_ceil(MAX_OK_POINTS);
        let mut k = 0usize;
        points.retain(|p| {
            if p.2 != 0 {
                return true;
            }
            k += 1;
            k % stride == 0
        });
    }
    let answered: Vec<f64> = points.iter().filter_map(|p| p.1).collect();
    let (lo, hi) = answered
        .iter()
        .fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(*v), hi.max(*v)));
    let (lo_exp, hi_exp) = if answered.is_empty() {
        (-1, 3)
    } else {
        let a = lo.log10().floor() as i32;
        let b = (hi.log10().ceil() as i32).max(a + 1);
        (a, b)
    };
    let pw = W - LEFT - RIGHT;
    let ph = H - TOP - BOTTOM;
    let x = |t: f64| LEFT + (t / end_s).clamp(0.0, 1.0) * pw;
    // Ops never answered sit on the top edge.
    let y = |ms: Option<f64>| match ms {
        Some(ms) => {
            let f = (ms.log10() - lo_exp as f64) / (hi_exp - lo_exp) as f64;
            TOP + (1.0 - f.clamp(0.0, 1.0)) * ph
        }
        None => TOP + 2.0,
    };

    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(svg, r#"<rect width="{W}" height="{H}" fill="white"/>"#);
    let _ = writeln!(
        svg,
        r#"<text x="{LEFT}" y="18" font-size="14" font-weight="bold">{}</text>"#,
        xml(&format!(
            "Latency of each operation — {} (seed {})",
            h.meta.scenario, h.meta.seed
        ))
    );
    // Fault windows, labels staggered over three rows so neighbours do not
    // overlap.
    let palette = [
        "#f4a261", "#e9c46a", "#8ecae6", "#cdb4db", "#ffafcc", "#b7e4c7",
    ];
    let mut kinds: Vec<&str> = h.faults.iter().map(|f| f.kind.as_str()).collect();
    kinds.sort_unstable();
    kinds.dedup();
    let mut faults: Vec<_> = h.faults.iter().collect();
    faults.sort_by_key(|f| f.start_us);
    for (i, f) in faults.iter().enumerate() {
        let color = palette[kinds.iter().position(|k| *k == f.kind).unwrap_or(0) % palette.len()];
        let (x0, x1) = (x(s(f.start_us)), x(s(f.end_us)));
        let _ = writeln!(
            svg,
            r#"<rect x="{x0:.1}" y="{TOP}" width="{:.1}" height="{ph}" fill="{color}" fill-opacity="0.35"><title>{}</title></rect>"#,
            (x1 - x0).max(1.0),
            xml(&format!(
                "{}: {} ({:.2}–{:.2} s)",
                f.kind,
                f.detail,
                s(f.start_us),
                s(f.end_us)
            ))
        );
        let row = (i % 3) as f64;
        let _ = writeln!(
            svg,
            r##"<text x="{x0:.1}" y="{:.1}" font-size="10" fill="#555">{}</text>"##,
            TOP - 6.0 - row * 12.0,
            xml(&f.kind)
        );
    }
    // Axes and grid.
    for e in lo_exp..=hi_exp {
        let ms = 10f64.powi(e);
        let yy = y(Some(ms));
        let label = if ms >= 1.0 {
            format!("{ms:.0}")
        } else {
            format!("{ms}")
        };
        let _ = writeln!(
            svg,
            r##"<line x1="{LEFT}" x2="{:.1}" y1="{yy:.1}" y2="{yy:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{label}</text>"##,
            LEFT + pw,
            LEFT - 6.0,
            yy + 4.0
        );
    }
    let step = nice_step(end_s / 10.0);
    let mut t = 0.0;
    while t <= end_s + 1e-9 {
        let xx = x(t);
        let _ = writeln!(
            svg,
            r##"<line x1="{xx:.1}" x2="{xx:.1}" y1="{TOP}" y2="{:.1}" stroke="#eee"/><text x="{xx:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
            TOP + ph,
            TOP + ph + 16.0,
            trim_float(t)
        );
        t += step;
    }
    let _ = writeln!(
        svg,
        r##"<rect x="{LEFT}" y="{TOP}" width="{pw}" height="{ph}" fill="none" stroke="#333"/>"##
    );
    let _ = writeln!(
        svg,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">time since start (s)</text>"#,
        LEFT + pw / 2.0,
        H - 10.0
    );
    let _ = writeln!(
        svg,
        r#"<text transform="translate(16 {:.1}) rotate(-90)" text-anchor="middle">latency (ms, log scale)</text>"#,
        TOP + ph / 2.0
    );
    // Points: ok first so fails and unknowns stay visible on top.
    let colors = ["#2a9d8f", "#e76f51", "#7b2cbf"];
    for (outcome, color) in colors.iter().enumerate() {
        let _ = writeln!(svg, r#"<g fill="{color}" fill-opacity="0.7">"#);
        for p in points.iter().filter(|p| p.2 == outcome) {
            let _ = writeln!(
                svg,
                r#"<circle cx="{:.1}" cy="{:.1}" r="1.8"/>"#,
                x(p.0),
                y(p.1)
            );
        }
        let _ = writeln!(svg, "</g>");
    }
    // Legend.
    let names = ["ok", "fail", "unknown (never answered: on the top edge)"];
    let mut lx = W - RIGHT - 420.0;
    for (i, name) in names.iter().enumerate() {
        let _ = writeln!(
            svg,
            r#"<circle cx="{lx:.1}" cy="14" r="4" fill="{}"/><text x="{:.1}" y="18">{}</text>"#,
            colors[i],
            lx + 8.0,
            xml(name)
        );
        lx += if i == 2 { 0.0 } else { 60.0 };
    }
    let _ = writeln!(svg, "</svg>");
    svg
}

/// A round tick step (1, 2 or 5 × 10^k) near `raw`.
fn nice_step(raw: f64) -> f64 {
    if raw <= 0.0 || !raw.is_finite() {
        return 1.0;
    }
    let mag = 10f64.powf(raw.log10().floor());
    let f = raw / mag;
    let nice = if f <= 1.0 {
        1.0
    } else if f <= 2.0 {
        2.0
    } else if f <= 5.0 {
        5.0
    } else {
        10.0
    };
    nice * mag
}

fn trim_float(v: f64) -> String {
    let s = format!("{v:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), Some(50.0));
        assert_eq!(percentile(&v, 99.0), Some(99.0));
        assert_eq!(percentile(&[7.0], 99.0), Some(7.0));
        assert_eq!(percentile(&[], 50.0), None);
    }

    #[test]
    fn tick_steps_are_round() {
        assert_eq!(nice_step(0.7), 1.0);
        assert_eq!(nice_step(3.2), 5.0);
        assert_eq!(nice_step(12.0), 20.0);
        assert_eq!(trim_float(2.50), "2.5");
        assert_eq!(trim_float(3.0), "3");
    }
}

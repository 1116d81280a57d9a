//! Output of a comparison run: a markdown table and an SVG bar chart, both
//! built from the [`Row`]s of every scenario that ran.

use std::fmt::Write as _;

use super::compare::Row;

fn fmt_num(v: Option<f64>) -> String {
    match v {
        None => "–".into(),
        Some(v) if v.abs() >= 100.0 => {
            // Thousands separators for the big figures.
            let s = format!("{:.0}", v);
            let (sign, digits) = s.split_at(usize::from(s.starts_with('-')));
            let mut out = String::new();
            for (i, ch) in digits.chars().enumerate() {
                if i > 0 && (digits.len() - i) % 3 == 0 {
                    out.push(',');
                }
                out.push(ch);
            }
            format!("{sign}{out}")
        }
        Some(v) if v.abs() >= 10.0 => format!("{v:.1}"),
        Some(v) => format!("{v:.2}"),
    }
}

fn lat(r: &Row, registry: bool) -> String {
    let s = if registry {
        &r.registry_latency
    } else {
        &r.etcd_latency
    };
    match s {
        Some(s) => format!("{:.1} / {:.1}", s.p50_ms, s.p99_ms),
        None => "".into(),
    }
}

/// The figures as a markdown table: both systems, the ratio, the target.
pub fn markdown(rows: &[Row]) -> String {
    let mut out = String::from(
        "| scenario | metric | registry | etcd | registry / etcd | p50 / p99 ms registry | p50 / p99 ms etcd | errors (reg / etcd) | target | met |\n\
         | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |\n",
    );
    for r in rows {
        let errors = match (&r.registry_latency, &r.etcd_latency) {
            (Some(a), Some(b)) => format!("{} / {}", a.errors, b.errors),
            _ => "".into(),
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} {} | {} {} | {} | {} | {} | {} | {} | {} |",
            r.scenario,
            r.metric,
            fmt_num(r.registry),
            r.unit,
            fmt_num(r.etcd),
            r.unit,
            r.ratio.map_or("–".into(), |q| format!("{q:.2}×")),
            lat(r, true),
            lat(r, false),
            errors,
            r.target.as_deref().unwrap_or(""),
            match r.met {
                Some(true) => "yes",
                Some(false) => "**no**",
                None => "",
            }
        );
    }
    out
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A horizontal bar chart: per line, the registry and etcd bars scaled to
/// the larger of the two (units differ between lines), the figures and the
/// ratio written next to them.
pub fn svg(rows: &[Row], title: &str) -> String {
    const W: f64 = 980.0;
    const LABEL: f64 = 430.0;
    const BAR: f64 = 360.0;
    const ROW_H: f64 = 46.0;
    let h = 70.0 + ROW_H * rows.len() as f64 + 20.0;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{h}" viewBox="0 0 {W} {h}" font-family="sans-serif" font-size="12">"##
    );
    let _ = writeln!(s, r##"<rect width="100%" height="100%" fill="#ffffff"/>"##);
    let _ = writeln!(
        s,
        r##"<text x="10" y="22" font-size="15" font-weight="bold">{}</text>"##,
        esc(title)
    );
    let _ = writeln!(
        s,
        r##"<rect x="10" y="34" width="12" height="12" fill="#2b6cb0"/><text x="27" y="44">registry</text><rect x="100" y="34" width="12" height="12" fill="#dd6b20"/><text x="117" y="44">etcd</text><text x="180" y="44" fill="#555">bars scaled per line (units differ); ↑ higher is better, ↓ lower is better</text>"##
    );
    for (i, r) in rows.iter().enumerate() {
        let y = 62.0 + ROW_H * i as f64;
        let arrow = if r.higher_is_better { "↑" } else { "↓" };
        let _ = writeln!(
            s,
            r##"<text x="10" y="{:.0}">{} {}</text><text x="10" y="{:.0}" fill="#555" font-size="11">{}</text>"##,
            y + 14.0,
            arrow,
            esc(&r.scenario),
            y + 29.0,
            esc(&truncate(&r.metric, 70))
        );
        let max = r
            .registry
            .unwrap_or(0.0)
            .max(r.etcd.unwrap_or(0.0))
            .max(1e-12);
        for (j, (v, color)) in [(r.registry, "#2b6cb0"), (r.etcd, "#dd6b20")]
            .into_iter()
            .enumerate()
        {
            let by = y + 4.0 + 17.0 * j as f64;
            let w = v.map_or(0.0, |v| (v / max).max(0.0) * BAR);
            let _ = writeln!(
                s,
                r##"<rect x="{LABEL}" y="{by:.0}" width="{w:.1}" height="14" fill="{color}"/><text x="{:.1}" y="{:.0}">{} {}</text>"##,
                LABEL + w + 4.0,
                by + 11.0,
                fmt_num(v),
                esc(&r.unit)
            );
        }
        if let Some(q) = r.ratio {
            let mark = match r.met {
                Some(true) => " ✓",
                Some(false) => " ✗",
                None => "",
            };
            let _ = writeln!(
                s,
                r##"<text x="{:.0}" y="{:.0}" font-weight="bold">{q:.2}×{mark}</text>"##,
                W - 95.0,
                y + 24.0
            );
        }
    }
    s.push_str("</svg>\n");
    s
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let t: String = s.chars().take(n - 1).collect();
        format!("{t}…")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn big_numbers_get_separators() {
        assert_eq!(fmt_num(Some(1234567.4)), "1,234,567");
        assert_eq!(fmt_num(Some(999.0)), "999");
        assert_eq!(fmt_num(Some(-1234.0)), "-1,234");
        assert_eq!(fmt_num(Some(12.34)), "12.3");
        assert_eq!(fmt_num(None), "–");
    }
}

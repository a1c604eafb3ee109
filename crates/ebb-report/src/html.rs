//! The index page: summary table, charts side by side, scaling decisions.
//! Everything is inline (styles and SVG), so the file opens offline and can
//! be mailed on its own.

use std::fmt::Write as _;

use crate::plot::Chart;
use crate::series::Run;
use crate::summary::SharedData;

/// Scaling decisions listed per run; past it the table says how many more.
pub const MAX_LISTED_EVENTS: usize = 200;

/// Escapes text for HTML element content and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// An SVG document as an element to inline (without an XML declaration).
fn inline_svg(svg: &str) -> &str {
    match svg.find("<svg") {
        Some(i) => &svg[i..],
        None => svg,
    }
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:2em;color:#222}\
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:right}\
th:first-child,td:first-child{text-align:left}.row{display:flex;flex-wrap:wrap;gap:1em}\
.cell{flex:1 1 640px;max-width:660px}.cell h3{margin:.3em 0;font-size:1em}svg{max-width:100%;height:auto}\
.events td{font-family:monospace;font-size:.85em}";

/// The page for `runs`, whose charts are `charts[i]` for `runs[i]`, plus
/// the overlays of a comparison.
pub fn page(title: &str, runs: &[&Run], charts: &[Vec<Chart>], compare: &[Chart]) -> String {
    let mut h = String::new();
    // Writing to a String cannot fail; the results are ignored below.
    let _ = write!(
        h,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title><style>{STYLE}</style></head><body><h1>{}</h1>",
        escape(title),
        escape(title)
    );
    summary_table(&mut h, runs);
    if !compare.is_empty() {
        h.push_str("<h2>Side by side</h2><div class=\"row\">");
        for c in compare {
            let _ = write!(h, "<div class=\"cell\">{}</div>", inline_svg(&c.svg));
        }
        h.push_str("</div>");
    }
    let kinds = charts.first().map(Vec::len).unwrap_or(0);
    for k in 0..kinds {
        let title = charts[0][k].title.as_str();
        let _ = write!(h, "<h2>{}</h2><div class=\"row\">", escape(title));
        for (run, cs) in runs.iter().zip(charts) {
            if let Some(c) = cs.get(k) {
                let _ = write!(
                    h,
                    "<div class=\"cell\"><h3>{}</h3>{}</div>",
                    escape(&run.label),
                    inline_svg(&c.svg)
                );
            }
        }
        h.push_str("</div>");
    }
    h.push_str("<h2>Scaling decisions</h2><div class=\"row\">");
    for run in runs {
        events_table(&mut h, run);
    }
    h.push_str("</div><p>Files: <code>summary.json</code> (numbers), <code>*.svg</code> (charts), <code>*-timeline.csv</code> (per-second series).</p></body></html>\n");
    h
}

fn summary_table(h: &mut String, runs: &[&Run]) {
    h.push_str("<table><tr><th></th>");
    for r in runs {
        let _ = write!(h, "<th>{}</th>", escape(&r.label));
    }
    h.push_str("</tr>");
    type Field = (&'static str, fn(&Run) -> String);
    let rows: [Field; 17] = [
        ("policy", |r| r.summary.policy.clone()),
        ("node kind", |r| r.summary.kind.clone()),
        ("trace", |r| r.summary.trace.clone()),
        ("seconds", |r| format!("{:.0}", r.summary.duration_secs)),
        ("objective (ms)", |r| {
            format!("{:.0}", r.summary.objective_ms)
        }),
        ("requests", |r| r.summary.requests.to_string()),
        ("ok", |r| r.summary.ok.to_string()),
        ("overloaded", |r| r.summary.overloaded.to_string()),
        ("deadline exceeded", |r| {
            r.summary.deadline_exceeded.to_string()
        }),
        ("other errors", |r| r.summary.other_errors.to_string()),
        ("other errors by kind", |r| {
            let kinds = &r.summary.other_errors_by_kind;
            let list: Vec<String> = kinds.iter().map(|(k, n)| format!("{k} {n}")).collect();
            list.join(", ")
        }),
        ("objective misses", |r| {
            format!("{:.2}%", 100.0 * r.summary.slo_miss_fraction)
        }),
        ("p50 (ms)", |r| format!("{:.1}", r.summary.p50_ms)),
        ("p99 (ms)", |r| format!("{:.1}", r.summary.p99_ms)),
        ("node-seconds", |r| format!("{:.0}", r.summary.node_seconds)),
        ("nodes min / mean / max", |r| {
            format!(
                "{} / {:.1} / {}",
                r.summary.min_nodes, r.summary.mean_nodes, r.summary.max_nodes
            )
        }),
        ("scale actions", |r| r.summary.scale_actions.to_string()),
    ];
    for (name, f) in rows {
        let _ = write!(h, "<tr><td>{name}</td>");
        for r in runs {
            let _ = write!(h, "<td>{}</td>", escape(&f(r)));
        }
        h.push_str("</tr>");
    }
    if runs.iter().any(|r| r.summary.shared_data.is_some()) {
        type Shared = (&'static str, fn(&SharedData) -> String);
        let shared: [Shared; 4] = [
            ("gets ok / sent", |d| format!("{} / {}", d.gets_ok, d.gets)),
            ("puts ok / sent", |d| format!("{} / {}", d.puts_ok, d.puts)),
            ("origin reads / writes", |d| {
                format!("{} / {}", d.origin_reads, d.origin_writes)
            }),
            ("gets served from node caches", |d| {
                format!("{}", d.served_from_cache)
            }),
        ];
        for (name, f) in shared {
            let _ = write!(h, "<tr><td>{name}</td>");
            for r in runs {
                let cell = r.summary.shared_data.as_ref().map_or(String::new(), f);
                let _ = write!(h, "<td>{}</td>", escape(&cell));
            }
            h.push_str("</tr>");
        }
    }
    h.push_str("</table>");
}

fn events_table(h: &mut String, run: &Run) {
    let _ = write!(
        h,
        "<div class=\"cell\"><h3>{}</h3><table class=\"events\"><tr><th>s</th><th>nodes</th><th>reason</th><th>inputs</th></tr>",
        escape(&run.label)
    );
    for e in run.events.iter().take(MAX_LISTED_EVENTS) {
        let _ = write!(
            h,
            "<tr><td>{:.1}</td><td>{} → {}</td><td>{}</td><td>{}</td></tr>",
            e.t_secs,
            e.from,
            e.to,
            escape(&e.reason),
            escape(&e.detail)
        );
    }
    if run.events.len() > MAX_LISTED_EVENTS {
        let _ = write!(
            h,
            "<tr><td colspan=\"4\">… {} more in summary.json</td></tr>",
            run.events.len() - MAX_LISTED_EVENTS
        );
    }
    h.push_str("</table></div>");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(
            escape("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}

//! A small SVG line-chart writer: enough for "response time against load,
//! one line per policy, theory dashed", with no plotting dependency.

use std::fmt::Write;

const PANEL_W: f64 = 560.0;
const PANEL_H: f64 = 420.0;
const MARGIN_L: f64 = 70.0;
const MARGIN_R: f64 = 20.0;
const MARGIN_T: f64 = 40.0;
const MARGIN_B: f64 = 55.0;
/// Colour-blind-safe palette (Okabe–Ito), cycled by series colour index.
const PALETTE: [&str; 8] = [
    "#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442",
];

/// One line.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    pub label: String,
    pub points: Vec<(f64, f64)>,
    /// Index into the palette; a policy and its theory share a colour.
    pub color: usize,
    /// Dashed lines are theory, solid ones simulation.
    pub dashed: bool,
}

/// One chart.
#[derive(Clone, Debug, PartialEq)]
pub struct Panel {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    /// Logarithmic y axis (response times near saturation span decades).
    pub log_y: bool,
    pub series: Vec<Series>,
}

/// Panels side by side in one SVG document.
pub fn svg(panels: &[Panel]) -> String {
    let w = PANEL_W * panels.len().max(1) as f64;
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{PANEL_H}" viewBox="0 0 {w} {PANEL_H}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(
        out,
        r#"<rect width="{w}" height="{PANEL_H}" fill="white"/>"#
    );
    for (i, p) in panels.iter().enumerate() {
        panel(&mut out, p, i as f64 * PANEL_W);
    }
    out.push_str("</svg>\n");
    out
}

fn panel(out: &mut String, p: &Panel, x0: f64) {
    let pts = p.series.iter().flat_map(|s| s.points.iter());
    let finite: Vec<(f64, f64)> = pts
        .filter(|(x, y)| x.is_finite() && y.is_finite() && (!p.log_y || *y > 0.0))
        .copied()
        .collect();
    if finite.is_empty() {
        return;
    }
    let (mut xmin, mut xmax) = min_max(finite.iter().map(|p| p.0));
    let (mut ymin, mut ymax) = min_max(finite.iter().map(|p| p.1));
    if xmax <= xmin {
        xmax = xmin + 1.0;
        xmin -= 1.0;
    }
    if p.log_y {
        // 10% headroom, then out to the next 1-2-5 value, so a line sitting
        // on its minimum stays visible.
        ymin = nice_log_bound(ymin * 0.9, false);
        ymax = nice_log_bound(ymax * 1.1, true);
        if ymax <= ymin {
            ymax = ymin * 10.0;
        }
    } else {
        ymin = ymin.min(0.0);
        if ymax <= ymin {
            ymax = ymin + 1.0;
        }
    }
    let (l, r) = (x0 + MARGIN_L, x0 + PANEL_W - MARGIN_R);
    let (t, b) = (MARGIN_T, PANEL_H - MARGIN_B);
    let sx = |x: f64| l + (x - xmin) / (xmax - xmin) * (r - l);
    let sy = |y: f64| {
        let f = if p.log_y {
            (y.log10() - ymin.log10()) / (ymax.log10() - ymin.log10())
        } else {
            (y - ymin) / (ymax - ymin)
        };
        b - f * (b - t)
    };
    let _ = writeln!(
        out,
        r#"<text x="{}" y="22" text-anchor="middle" font-size="14" font-weight="bold">{}</text>"#,
        (l + r) / 2.0,
        esc(&p.title)
    );
    // Grid and ticks.
    for x in nice_ticks(xmin, xmax) {
        let px = sx(x);
        let _ = writeln!(
            out,
            r##"<line x1="{px:.1}" y1="{t}" x2="{px:.1}" y2="{b}" stroke="#ddd"/><text x="{px:.1}" y="{}" text-anchor="middle">{}</text>"##,
            b + 16.0,
            fmt_tick(x)
        );
    }
    let yticks = if p.log_y {
        log_ticks(ymin, ymax)
    } else {
        nice_ticks(ymin, ymax)
    };
    for y in yticks {
        let py = sy(y);
        let _ = writeln!(
            out,
            r##"<line x1="{l}" y1="{py:.1}" x2="{r}" y2="{py:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end">{}</text>"##,
            l - 6.0,
            py + 4.0,
            fmt_tick(y)
        );
    }
    let _ = writeln!(
        out,
        r##"<rect x="{l}" y="{t}" width="{}" height="{}" fill="none" stroke="#333"/>"##,
        r - l,
        b - t
    );
    let _ = writeln!(
        out,
        r#"<text x="{}" y="{}" text-anchor="middle">{}</text>"#,
        (l + r) / 2.0,
        PANEL_H - 15.0,
        esc(&p.x_label)
    );
    let _ = writeln!(
        out,
        r#"<text transform="translate({},{}) rotate(-90)" text-anchor="middle">{}</text>"#,
        x0 + 18.0,
        (t + b) / 2.0,
        esc(&p.y_label)
    );
    // Lines, then the legend on top.
    for s in &p.series {
        let d: Vec<String> = s
            .points
            .iter()
            .filter(|(x, y)| x.is_finite() && y.is_finite() && (!p.log_y || *y > 0.0))
            .map(|(x, y)| format!("{:.1},{:.1}", sx(*x), sy(y.clamp(ymin, ymax))))
            .collect();
        if d.is_empty() {
            continue;
        }
        let dash = if s.dashed {
            r#" stroke-dasharray="6,4""#
        } else {
            ""
        };
        let _ = writeln!(
            out,
            r#"<polyline points="{}" fill="none" stroke="{}" stroke-width="1.8"{dash}/>"#,
            d.join(" "),
            PALETTE[s.color % PALETTE.len()]
        );
    }
    let widest = p.series.iter().map(|s| s.label.chars().count()).max();
    let _ = writeln!(
        out,
        r#"<rect x="{}" y="{}" width="{:.0}" height="{}" fill="white" fill-opacity="0.85"/>"#,
        l + 4.0,
        t + 4.0,
        44.0 + 7.0 * widest.unwrap_or(0) as f64,
        16.0 * p.series.len() as f64 + 6.0
    );
    for (i, s) in p.series.iter().enumerate() {
        let y = t + 16.0 + 16.0 * i as f64;
        let dash = if s.dashed {
            r#" stroke-dasharray="6,4""#
        } else {
            ""
        };
        let _ = writeln!(
            out,
            r#"<line x1="{}" y1="{y}" x2="{}" y2="{y}" stroke="{}" stroke-width="2"{dash}/><text x="{}" y="{}">{}</text>"#,
            l + 10.0,
            l + 36.0,
            PALETTE[s.color % PALETTE.len()],
            l + 42.0,
            y + 4.0,
            esc(&s.label)
        );
    }
}

fn min_max(xs: impl Iterator<Item = f64>) -> (f64, f64) {
    xs.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| {
        (a.min(x), b.max(x))
    })
}

/// About six round-numbered ticks covering [lo, hi].
fn nice_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let raw = (hi - lo) / 6.0;
    let e = raw.log10().floor() as i32;
    // Scale by an exact power of ten so 6 × 0.1 prints as 0.6.
    let scale = |v: f64| {
        if e < 0 {
            v / 10f64.powi(-e)
        } else {
            v * 10f64.powi(e)
        }
    };
    let m = [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .find(|m| scale(*m) >= raw)
        .unwrap_or(10.0);
    let step = scale(m);
    let first = (lo / step).ceil() as i64;
    let last = (hi / step).floor() as i64;
    (first..=last).map(|i| scale(i as f64 * m)).collect()
}

/// The nearest 1-2-5 value at or below `v` (or at or above it, if `up`).
fn nice_log_bound(v: f64, up: bool) -> f64 {
    let decade = 10f64.powf(v.log10().floor());
    let steps = [1.0, 2.0, 5.0, 10.0];
    if up {
        steps.iter().map(|m| m * decade).find(|x| *x >= v * 0.9999)
    } else {
        steps
            .iter()
            .rev()
            .map(|m| m * decade)
            .find(|x| *x <= v * 1.0001)
    }
    .unwrap_or(decade)
}

/// 1, 2, 5 per decade.
fn log_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let mut out = Vec::new();
    let mut decade = 10f64.powf(lo.log10().floor());
    while decade <= hi * 1.0001 {
        for m in [1.0, 2.0, 5.0] {
            let v = decade * m;
            if v >= lo * 0.9999 && v <= hi * 1.0001 {
                out.push(v);
            }
        }
        decade *= 10.0;
    }
    out
}

fn fmt_tick(v: f64) -> String {
    let s = format!("{v:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s.is_empty() || s == "-" {
        "0".into()
    } else {
        s.into()
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_one_polyline_per_series_and_escapes_labels() {
        let p = Panel {
            title: "mean <response>".into(),
            x_label: "load".into(),
            y_label: "time".into(),
            log_y: true,
            series: vec![
                Series {
                    label: "random".into(),
                    points: vec![(0.5, 2.0), (0.9, 10.0)],
                    color: 0,
                    dashed: false,
                },
                Series {
                    label: "M/M/1".into(),
                    points: vec![(0.5, 2.0), (0.9, 10.0), (0.95, f64::NAN)],
                    color: 0,
                    dashed: true,
                },
            ],
        };
        let s = svg(&[p.clone(), p]);
        assert_eq!(s.matches("<polyline").count(), 4);
        assert!(s.contains("mean &lt;response&gt;"));
        assert!(s.starts_with("<svg") && s.trim_end().ends_with("</svg>"));
    }

    #[test]
    fn ticks_are_round() {
        assert_eq!(nice_ticks(0.5, 1.0), vec![0.5, 0.6, 0.7, 0.8, 0.9, 1.0]);
        assert_eq!(
            log_ticks(1.0, 100.0),
            vec![1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0]
        );
    }
}

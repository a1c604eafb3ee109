//! The charts, each an SVG document in a string.
//!
//! plotters' SVG backend writes text as `<text>` elements and sizes it with
//! its built-in estimate, so no font file is read and a chart is the same on
//! every machine.

use plotters::prelude::*;

use crate::series::{Run, Sample, ScaleEvent};

/// Chart size in SVG pixels: two fit side by side on a laptop screen.
pub const CHART_WIDTH_PX: u32 = 640;
pub const CHART_HEIGHT_PX: u32 = 320;

#[derive(Debug, thiserror::Error)]
#[error("cannot draw chart {chart}: {message}")]
pub struct PlotError {
    pub chart: String,
    pub message: String,
}

/// One line of a chart. Points with no value (`None`) break the line.
pub struct Line {
    pub label: String,
    pub color: RGBColor,
    pub points: Vec<(f64, Option<f64>)>,
}

impl Line {
    fn from_samples(label: &str, color: RGBColor, s: &[Sample], f: fn(&Sample) -> f64) -> Line {
        Line {
            label: label.to_string(),
            color,
            points: s.iter().map(|x| (x.t_secs, Some(f(x)))).collect(),
        }
    }

    fn max(&self) -> f64 {
        self.points.iter().filter_map(|p| p.1).fold(0.0, f64::max)
    }

    /// Runs of consecutive defined points.
    fn segments(&self) -> Vec<Vec<(f64, f64)>> {
        let mut out: Vec<Vec<(f64, f64)>> = Vec::new();
        let mut cur = Vec::new();
        for &(x, y) in &self.points {
            match y {
                Some(y) if y.is_finite() => cur.push((x, y)),
                _ if !cur.is_empty() => out.push(std::mem::take(&mut cur)),
                _ => {}
            }
        }
        if !cur.is_empty() {
            out.push(cur);
        }
        out
    }
}

const UP: RGBColor = RGBColor(0x2c, 0xa0, 0x2c);
const DOWN: RGBColor = RGBColor(0xd6, 0x27, 0x28);
/// Colours of successive lines (matplotlib's tab10, readable on white).
pub const PALETTE: [RGBColor; 6] = [
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0xff, 0x7f, 0x0e),
    RGBColor(0x94, 0x67, 0xbd),
    RGBColor(0x8c, 0x56, 0x4b),
    RGBColor(0x17, 0xbe, 0xcf),
    RGBColor(0x7f, 0x7f, 0x7f),
];

/// A line chart over seconds, with scaling events as vertical marks
/// (green: out, red: in).
pub fn line_chart(
    title: &str,
    y_desc: &str,
    lines: &[Line],
    events: &[ScaleEvent],
    x_max: f64,
) -> Result<String, PlotError> {
    let err = |e: &dyn std::fmt::Display| PlotError {
        chart: title.to_string(),
        message: e.to_string(),
    };
    let y_max = lines.iter().map(Line::max).fold(0.0, f64::max);
    // Headroom so the top line is not drawn on the frame; 1 for an all-zero chart.
    let y_top = if y_max > 0.0 { y_max * 1.1 } else { 1.0 };
    let x_top = if x_max > 0.0 { x_max } else { 1.0 };
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (CHART_WIDTH_PX, CHART_HEIGHT_PX))
            .into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(&e))?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(55)
            .build_cartesian_2d(0f64..x_top, 0f64..y_top)
            .map_err(|e| err(&e))?;
        chart
            .configure_mesh()
            .x_desc("seconds")
            .y_desc(y_desc)
            .light_line_style(WHITE.mix(0.0))
            .draw()
            .map_err(|e| err(&e))?;
        for mark in [(true, "scaled out"), (false, "scaled in")] {
            let color = if mark.0 { UP } else { DOWN };
            let mut labelled = false;
            for e in events.iter().filter(|e| e.is_up() == mark.0) {
                let series = chart
                    .draw_series(LineSeries::new(
                        [(e.t_secs, 0.0), (e.t_secs, y_top)],
                        color.mix(0.35).stroke_width(1),
                    ))
                    .map_err(|e| err(&e))?;
                if !labelled {
                    series.label(mark.1).legend(move |(x, y)| {
                        PathElement::new([(x, y), (x + 16, y)], color.mix(0.6))
                    });
                    labelled = true;
                }
            }
        }
        for line in lines {
            let color = line.color;
            for (i, seg) in line.segments().into_iter().enumerate() {
                let series = chart
                    .draw_series(LineSeries::new(seg, color.stroke_width(2)))
                    .map_err(|e| err(&e))?;
                if i == 0 {
                    series
                        .label(line.label.clone())
                        .legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], color));
                }
            }
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.3))
            .label_font(("sans-serif", 12))
            .draw()
            .map_err(|e| err(&e))?;
        root.present().map_err(|e| err(&e))?;
    }
    Ok(svg)
}

/// A named chart of one run.
pub struct Chart {
    /// File-name part (`load`, `nodes`, ...).
    pub name: &'static str,
    pub title: String,
    pub svg: String,
}

fn x_max(runs: &[&Run]) -> f64 {
    runs.iter()
        .filter_map(|r| r.samples.last())
        .map(|s| s.t_secs + 1.0)
        .fold(0.0, f64::max)
}

/// The four charts of one run.
pub fn run_charts(run: &Run) -> Result<Vec<Chart>, PlotError> {
    let s = &run.samples;
    let x = x_max(&[run]);
    let ev = &run.events;
    let [c0, c1, c2, c3, c4, c5] = PALETTE;
    let objective = run.summary.objective_ms;
    let mut latency = vec![
        Line {
            label: "p50".into(),
            color: c0,
            points: s.iter().map(|x| (x.t_secs, x.p50_ms)).collect(),
        },
        Line {
            label: "p99".into(),
            color: c1,
            points: s.iter().map(|x| (x.t_secs, x.p99_ms)).collect(),
        },
    ];
    if objective > 0.0 {
        latency.push(Line {
            label: "objective".into(),
            color: c5,
            points: s.iter().map(|x| (x.t_secs, Some(objective))).collect(),
        });
    }
    let charts = [
        (
            "load",
            "Offered load and throughput",
            "requests / s",
            vec![
                Line::from_samples("offered", c0, s, |x| x.offered as f64),
                Line::from_samples("answered ok", c1, s, |x| x.ok as f64),
            ],
        ),
        (
            "nodes",
            "Nodes by state",
            "nodes",
            vec![
                // Drawn first so the states, drawn over it, stay visible
                // where one of them is all there is.
                Line::from_samples("all (paid for)", c5, s, |x| f64::from(x.nodes())),
                Line::from_samples("ready", c0, s, |x| f64::from(x.ready)),
                Line::from_samples("booting", c1, s, |x| f64::from(x.booting)),
                Line::from_samples("draining", c2, s, |x| f64::from(x.draining)),
            ],
        ),
        ("latency", "Latency of successful calls", "ms", latency),
        (
            "misses",
            "Refusals and objective misses",
            "requests / s",
            vec![
                Line::from_samples("overloaded (refused)", c0, s, |x| x.overloaded as f64),
                Line::from_samples("deadline exceeded", c1, s, |x| x.deadline_exceeded as f64),
                Line::from_samples("ok but slower than objective", c3, s, |x| x.slow as f64),
                Line::from_samples("other errors", c4, s, |x| x.other_errors as f64),
            ],
        ),
    ];
    charts
        .into_iter()
        .map(|(name, title, y, lines)| {
            Ok(Chart {
                name,
                title: title.to_string(),
                svg: line_chart(title, y, &lines, ev, x)?,
            })
        })
        .collect()
}

/// Charts that overlay several runs: nodes paid for, and p99.
pub fn compare_charts(runs: &[&Run]) -> Result<Vec<Chart>, PlotError> {
    let x = x_max(runs);
    let lines = |f: fn(&Sample) -> Option<f64>| -> Vec<Line> {
        runs.iter()
            .zip(PALETTE.iter().cycle())
            .map(|(r, &color)| Line {
                label: r.label.clone(),
                color,
                points: r.samples.iter().map(|s| (s.t_secs, f(s))).collect(),
            })
            .collect()
    };
    Ok(vec![
        Chart {
            name: "compare-nodes",
            title: "Nodes paid for, by policy".into(),
            svg: line_chart(
                "Nodes paid for, by policy",
                "nodes",
                &lines(|s| Some(f64::from(s.nodes()))),
                &[],
                x,
            )?,
        },
        Chart {
            name: "compare-p99",
            title: "p99 latency, by policy".into(),
            svg: line_chart("p99 latency, by policy", "ms", &lines(|s| s.p99_ms), &[], x)?,
        },
        Chart {
            name: "compare-misses",
            title: "Objective misses per second, by policy".into(),
            svg: line_chart(
                "Objective misses per second, by policy",
                "requests / s",
                &lines(|s| Some(s.misses() as f64)),
                &[],
                x,
            )?,
        },
    ])
}

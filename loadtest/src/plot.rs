//! Latency by percentile, one line per run, as a PNG (plotters, bitmap backend).
//!
//! The x axis is the percentile on a "nines" scale, x = -log10(1 - p/100), so 90 %,
//! 99 %, 99.9 % and 99.99 % are evenly spaced and the tail, where brokers differ, gets
//! most of the width; the y axis is latency in µs, logarithmic. The text is drawn
//! with a bundled font (ab_glyph), so plotting needs no system fonts, fontconfig or
//! freetype.

use std::path::Path;
use std::sync::Once;

use anyhow::{bail, Context};
use plotters::prelude::*;
use plotters::style::FontStyle;
use serde::Deserialize;

use crate::report::{Percentile, Report};

/// DejaVu Sans cut down to Latin-1 (with arrows for "1→1000"): see `assets/DejaVuSans-LICENSE.txt`.
const FONT: &[u8] = include_bytes!("../assets/DejaVuSans-subset.ttf");
const FONT_FAMILY: &str = "sans-serif";
const SIZE: (u32, u32) = (1200, 700);
const COLORS: [RGBColor; 8] = [
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0xff, 0x7f, 0x0e),
    RGBColor(0x94, 0x67, 0xbd),
    RGBColor(0x8c, 0x56, 0x4b),
    RGBColor(0xe3, 0x77, 0xc2),
    RGBColor(0x17, 0xbe, 0xcf),
];

/// One line of the chart.
#[derive(Debug, Clone)]
pub struct Run {
    /// Its legend entry.
    pub label: String,
    pub percentiles: Vec<Percentile>,
    /// Messages measured: where the 100th percentile (the maximum) is drawn, since
    /// its "nines" are infinite; one message in N is as fine as the data resolves.
    pub count: u64,
}

/// What a `--json` file must hold for plotting; everything else in it is ignored.
#[derive(Deserialize)]
struct RunFile {
    percentiles: Option<Vec<Percentile>>,
    #[serde(default)]
    received: u64,
    #[serde(default)]
    scenario: Option<String>,
}

impl Run {
    /// The run just measured.
    pub fn of(report: &Report, label: String) -> Run {
        Run {
            label,
            percentiles: report.percentiles.clone(),
            count: report.received,
        }
    }

    /// A run saved with `--json`, labelled by its file name; also its scenario.
    pub fn load(path: &Path) -> anyhow::Result<(Run, Option<String>)> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("{}: cannot read", path.display()))?;
        let file: RunFile = serde_json::from_str(&text)
            .with_context(|| format!("{}: not a loadtest --json file", path.display()))?;
        let Some(percentiles) = file.percentiles else {
            bail!(
                "{}: no `percentiles` in it (written by an older loadtest?); run again with --json",
                path.display()
            );
        };
        let label = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| path.display().to_string());
        let run = Run {
            label,
            percentiles,
            count: file.received,
        };
        Ok((run, file.scenario))
    }

    /// (nines, µs) points; latencies below 1 µs are drawn at 1 (log axis).
    fn points(&self) -> Vec<(f64, f64)> {
        let last = self
            .percentiles
            .iter()
            .map(|p| p.percentile)
            .filter(|&p| p < 100.0);
        let finest = last.map(nines).fold(0.0, f64::max);
        let top = (self.count.max(1) as f64).log10().max(finest + 0.25);
        self.percentiles
            .iter()
            .map(|p| {
                let x = if p.percentile >= 100.0 {
                    top
                } else {
                    nines(p.percentile)
                };
                (x, p.latency_us.max(1) as f64)
            })
            .collect()
    }
}

/// How many nines: 0 at 0 %, 1 at 90 %, 2 at 99 %.
fn nines(percentile: f64) -> f64 {
    -(1.0 - percentile / 100.0).log10()
}

fn percentile_label(x: f64) -> String {
    let p = 100.0 * (1.0 - 10f64.powf(-x));
    let text = format!("{p:.6}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    format!("{text}%")
}

fn latency_label(us: f64) -> String {
    match us {
        u if u >= 1e6 => format!("{} s", u / 1e6),
        u if u >= 1e3 => format!("{} ms", u / 1e3),
        u => format!("{u} µs"),
    }
}

fn register_font() -> anyhow::Result<()> {
    static REGISTER: Once = Once::new();
    let mut result = Ok(());
    REGISTER.call_once(|| {
        result = plotters::style::register_font(FONT_FAMILY, FontStyle::Normal, FONT)
            .map_err(|_| anyhow::anyhow!("the bundled font does not load"));
    });
    result
}

/// Draws `runs` into the PNG `out`.
pub fn draw(runs: &[Run], out: &Path, title: &str) -> anyhow::Result<()> {
    let runs: Vec<&Run> = runs.iter().filter(|r| !r.percentiles.is_empty()).collect();
    if runs.is_empty() {
        bail!("nothing to plot: no run has latencies (did any message arrive?)");
    }
    register_font()?;
    let lines: Vec<Vec<(f64, f64)>> = runs.iter().map(|r| r.points()).collect();
    let x_max = lines
        .iter()
        .flatten()
        .map(|p| p.0)
        .fold(1.0, f64::max)
        .ceil();
    let y_max = lines.iter().flatten().map(|p| p.1).fold(10.0, f64::max);
    let y_min = lines.iter().flatten().map(|p| p.1).fold(f64::MAX, f64::min);
    let y_range = (y_min / 2.0).max(1.0)..y_max * 2.0;

    let root = BitMapBackend::new(out, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(plot_error)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, (FONT_FAMILY, 28))
        .margin(20)
        // Room for the last x label, centred on the right edge.
        .margin_right(60)
        .x_label_area_size(50)
        .y_label_area_size(90)
        .build_cartesian_2d(0.0..x_max, y_range.log_scale())
        .map_err(plot_error)?;
    chart
        .configure_mesh()
        // One label per nine: 0 %, 90 %, 99 %, 99.9 %...
        .x_labels(x_max as usize + 1)
        .x_desc("percentile")
        .y_desc("latency from intended send time")
        .x_label_formatter(&|x| percentile_label(*x))
        .y_label_formatter(&|y| latency_label(*y))
        .label_style((FONT_FAMILY, 16))
        .axis_desc_style((FONT_FAMILY, 18))
        .draw()
        .map_err(plot_error)?;
    for (i, (run, line)) in runs.iter().zip(lines).enumerate() {
        let color = COLORS[i % COLORS.len()];
        chart
            .draw_series(LineSeries::new(line, color.stroke_width(2)))
            .map_err(plot_error)?
            .label(run.label.as_str())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 24, y)], color.stroke_width(3))
            });
    }
    chart
        .configure_series_labels()
        // Latency curves climb to the right: the lower right is the emptiest corner.
        .position(SeriesLabelPosition::LowerRight)
        .label_font((FONT_FAMILY, 16))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(plot_error)?;
    root.present()
        .with_context(|| format!("{}: cannot write the plot", out.display()))?;
    Ok(())
}

/// plotters' errors borrow the backend's error type; keep the message.
fn plot_error<E: std::error::Error + Send + Sync>(e: DrawingAreaErrorKind<E>) -> anyhow::Error {
    anyhow::anyhow!("cannot draw the plot: {e}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_x_axis_counts_nines() {
        assert_eq!(nines(0.0), 0.0);
        assert!((nines(90.0) - 1.0).abs() < 1e-9);
        assert!((nines(99.9) - 3.0).abs() < 1e-9);
        assert_eq!(percentile_label(nines(50.0)), "50%");
        assert_eq!(percentile_label(nines(99.99)), "99.99%");
        assert_eq!(percentile_label(0.0), "0%");
        assert_eq!(latency_label(1500.0), "1.5 ms");
        assert_eq!(latency_label(20.0), "20 µs");
    }

    #[test]
    fn the_maximum_is_drawn_past_the_finest_percentile() {
        let run = Run {
            label: "a".into(),
            percentiles: vec![
                Percentile {
                    percentile: 50.0,
                    latency_us: 10,
                },
                Percentile {
                    percentile: 99.0,
                    latency_us: 0,
                },
                Percentile {
                    percentile: 100.0,
                    latency_us: 90,
                },
            ],
            count: 1000,
        };
        let points = run.points();
        assert_eq!(points[1], (nines(99.0), 1.0));
        assert_eq!(points[2], (3.0, 90.0));
    }
}

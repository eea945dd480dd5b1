//! The benchmarks' SVG charts, one horizontal bar per row: [`log_bars`] (`cargo xtask bench`:
//! durations on a log scale, coloured by series) and [`ratios`] (`bench blk` and `bench net`:
//! Parapet's result over its reference, the host or the network ceiling, on a linear scale,
//! with the row's goal marked).

use std::path::Path;

use anyhow::{Context, Result};

use super::report::fmt_ns;

/// A bar of [`log_bars`].
#[derive(Clone, Debug)]
pub struct LogBar {
    pub label: String,
    /// Nanoseconds (positive and finite).
    pub ns: f64,
    /// Its series: an index into the series given.
    pub series: usize,
}

/// A series of [`log_bars`]: its name in the legend and its colour.
#[derive(Clone, Copy, Debug)]
pub struct Series {
    pub name: &'static str,
    pub rgb: (u8, u8, u8),
}

/// Draws `bars` (durations, log scale) into an SVG file at `path`, each series in its colour
/// with a legend entry (in the order given, drawn or not).
pub fn log_bars(
    path: &Path,
    title: &str,
    x_desc: &str,
    bars: &[LogBar],
    series: &[Series],
) -> Result<()> {
    use plotters::coord::ranged1d::SegmentValue;
    use plotters::prelude::*;

    let n = bars.len().max(1);
    let (lo, hi) = bars.iter().fold((f64::INFINITY, 0f64), |(lo, hi), b| {
        (lo.min(b.ns), hi.max(b.ns))
    });
    let lo = if lo.is_finite() { lo / 2.0 } else { 1.0 }.max(1.0);
    let hi = (hi * 4.0).max(lo * 10.0);
    let height = 90 + 18 * n as u32;
    let root = SVGBackend::new(path, (1100, height)).into_drawing_area();
    let draw = |e: &dyn std::fmt::Display| anyhow::anyhow!("drawing the chart: {e}");
    root.fill(&WHITE).map_err(|e| draw(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(30)
        .y_label_area_size(360)
        .build_cartesian_2d((lo..hi).log_scale(), (0..n).into_segmented())
        .map_err(|e| draw(&e))?;
    let labels: Vec<&str> = bars.iter().map(|b| b.label.as_str()).collect();
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(n)
        .y_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) if *i < labels.len() => labels[labels.len() - 1 - *i].into(),
            _ => String::new(),
        })
        .x_desc(x_desc)
        .x_label_formatter(&|x| fmt_ns(*x))
        .label_style(("sans-serif", 11))
        .draw()
        .map_err(|e| draw(&e))?;
    for (k, s) in series.iter().enumerate() {
        let c = RGBColor(s.rgb.0, s.rgb.1, s.rgb.2);
        let drawn = bars
            .iter()
            .enumerate()
            .filter(|(_, b)| b.series == k)
            .map(|(i, b)| {
                let y = n - 1 - i;
                let mut bar = Rectangle::new(
                    [
                        (lo, SegmentValue::Exact(y)),
                        (b.ns, SegmentValue::Exact(y + 1)),
                    ],
                    c.filled(),
                );
                bar.set_margin(2, 2, 0, 0);
                bar
            });
        chart
            .draw_series(drawn)
            .map_err(|e| draw(&e))?
            .label(s.name)
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], c.filled()));
    }
    chart
        .draw_series(bars.iter().enumerate().map(|(i, b)| {
            Text::new(
                fmt_ns(b.ns),
                (b.ns * 1.08, SegmentValue::CenterOf(n - 1 - i)),
                ("sans-serif", 10).into_font(),
            )
        }))
        .map_err(|e| draw(&e))?;
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()
        .map_err(|e| draw(&e))?;
    root.present()
        .map_err(|e| draw(&e))
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// A bar of [`ratios`].
#[derive(Clone, Debug)]
pub struct Bar {
    pub label: String,
    /// Parapet / reference.
    pub ratio: f64,
    /// The goal for the ratio, if the issue set one.
    pub goal: Option<f64>,
}

/// Draws `bars` (ratios, linear scale) into an SVG file at `path`.
pub fn ratios(path: &Path, title: &str, bars: &[Bar]) -> Result<()> {
    use plotters::coord::ranged1d::SegmentValue;
    use plotters::prelude::*;

    let n = bars.len().max(1);
    let hi = bars
        .iter()
        .flat_map(|b| [b.ratio, b.goal.unwrap_or(0.0)])
        .filter(|x| x.is_finite())
        .fold(1.0f64, f64::max)
        * 1.15;
    let height = 100 + 26 * n as u32;
    let root = SVGBackend::new(path, (1000, height)).into_drawing_area();
    let draw = |e: &dyn std::fmt::Display| anyhow::anyhow!("drawing the chart: {e}");
    root.fill(&WHITE).map_err(|e| draw(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 16))
        .margin(12)
        .x_label_area_size(30)
        .y_label_area_size(420)
        .build_cartesian_2d(0.0..hi, (0..n).into_segmented())
        .map_err(|e| draw(&e))?;
    let labels: Vec<String> = bars.iter().map(|b| b.label.clone()).collect();
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(n)
        .y_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) if *i < labels.len() => labels[labels.len() - 1 - *i].clone(),
            _ => String::new(),
        })
        .x_desc("Parapet / reference (1.0 = as fast as the reference); black mark: goal")
        .x_label_formatter(&|x| format!("{x:.1}"))
        .label_style(("sans-serif", 11))
        .draw()
        .map_err(|e| draw(&e))?;
    let row = |i: usize| n - 1 - i;
    chart
        .draw_series(bars.iter().enumerate().map(|(i, b)| {
            let met = b.goal.is_none_or(|g| b.ratio >= g);
            let colour = if met {
                RGBColor(46, 139, 87)
            } else {
                RGBColor(200, 50, 50)
            };
            let mut bar = Rectangle::new(
                [
                    (0.0, SegmentValue::Exact(row(i))),
                    (b.ratio.max(0.0), SegmentValue::Exact(row(i) + 1)),
                ],
                colour.filled(),
            );
            bar.set_margin(4, 4, 0, 0);
            bar
        }))
        .map_err(|e| draw(&e))?;
    chart
        .draw_series(bars.iter().enumerate().filter_map(|(i, b)| {
            let g = b.goal?;
            Some(PathElement::new(
                vec![
                    (g, SegmentValue::Exact(row(i))),
                    (g, SegmentValue::Exact(row(i) + 1)),
                ],
                BLACK.stroke_width(3),
            ))
        }))
        .map_err(|e| draw(&e))?;
    chart
        .draw_series(bars.iter().enumerate().map(|(i, b)| {
            Text::new(
                format!("{:.3}", b.ratio),
                (b.ratio.max(0.0) + hi * 0.01, SegmentValue::CenterOf(row(i))),
                ("sans-serif", 11).into_font(),
            )
        }))
        .map_err(|e| draw(&e))?;
    root.present()
        .map_err(|e| draw(&e))
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_bars_and_goals() {
        let dir = std::env::temp_dir().join(format!("xtask-ratio-chart-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("c.svg");
        let bars = [
            Bar {
                label: "a".into(),
                ratio: 0.25,
                goal: Some(0.5),
            },
            Bar {
                label: "b".into(),
                ratio: 1.3,
                goal: None,
            },
        ];
        ratios(&path, "t", &bars).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("0.250") && svg.contains("1.300"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

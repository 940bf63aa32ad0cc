//! SVG charts for the HTML report (plotters' SVG backend, no fonts needed: the
//! browser renders the text).

use plotters::prelude::*;

/// One line of a chart.
#[derive(Clone, Debug)]
pub struct Series<'a> {
    /// Legend label.
    pub label: &'a str,
    /// Points `(x, y)`.
    pub points: Vec<(f64, f64)>,
    /// Colour.
    pub color: RGBColor,
}

const WIDTH: u32 = 760;
const HEIGHT: u32 = 300;

/// Blue, orange, green, red: distinguishable, and readable on white.
pub const COLORS: [RGBColor; 4] = [
    RGBColor(31, 119, 180),
    RGBColor(230, 120, 20),
    RGBColor(44, 160, 44),
    RGBColor(200, 40, 40),
];

/// The largest `x` and `y` of `points` (at least 0 and 1).
pub fn bounds<'a>(points: impl Iterator<Item = &'a (f64, f64)>) -> (f64, f64) {
    points.fold((0.0f64, 1.0f64), |(x, y), (px, py)| {
        (x.max(*px), y.max(*py))
    })
}

/// The frame every chart shares: caption, margins, room for the axis labels.
fn frame<'a, 'b, 'c>(
    root: &'a DrawingArea<SVGBackend<'c>, plotters::coord::Shift>,
    title: &str,
) -> ChartBuilder<'a, 'b, SVGBackend<'c>> {
    let mut builder = ChartBuilder::on(root);
    builder
        .caption(title, ("sans-serif", 18))
        .margin(10)
        .x_label_area_size(36)
        .y_label_area_size(56);
    builder
}

/// A line chart over time, on axes up to `scale` (`x_max`, `y_max`; without it,
/// its own points': charts of runs shown side by side share one).
pub fn lines(
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series<'_>],
    scale: Option<(f64, f64)>,
) -> String {
    if series.iter().all(|s| s.points.is_empty()) {
        return svg_error(title);
    }
    let mut svg = String::new();
    {
        let (x_max, y_max) =
            scale.unwrap_or_else(|| bounds(series.iter().flat_map(|s| s.points.iter())));
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        let _ = root.fill(&WHITE);
        let chart = frame(&root, title).build_cartesian_2d(0.0..x_max.max(1.0), 0.0..y_max * 1.1);
        let Ok(mut chart) = chart else {
            return svg_error(title);
        };
        let _ = chart
            .configure_mesh()
            .x_desc(x_label)
            .y_desc(y_label)
            .light_line_style(WHITE.mix(0.0))
            .draw();
        for s in series {
            let color = s.color;
            if let Ok(drawn) = chart.draw_series(LineSeries::new(
                s.points.iter().copied(),
                color.stroke_width(2),
            )) {
                drawn.label(s.label).legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
                });
            }
        }
        let _ = chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.3))
            .position(SeriesLabelPosition::UpperRight)
            .draw();
        let _ = root.present();
    }
    svg
}

/// A histogram of `values` in `bins` equal bins from 0 to `x_max` (without it, the
/// largest value).
pub fn histogram(
    title: &str,
    x_label: &str,
    values: &[f64],
    bins: usize,
    x_max: Option<f64>,
) -> String {
    if values.is_empty() {
        return svg_error(title);
    }
    let mut svg = String::new();
    {
        let max = x_max
            .unwrap_or_else(|| values.iter().copied().fold(0.0f64, f64::max))
            .max(1.0);
        let width = max / bins as f64;
        let mut counts = vec![0u32; bins];
        for v in values {
            counts[((v / width) as usize).min(bins - 1)] += 1;
        }
        let top = counts.iter().copied().max().unwrap_or(1).max(1);
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        let _ = root.fill(&WHITE);
        let chart = frame(&root, title).build_cartesian_2d(0.0..max, 0u32..top + top / 10 + 1);
        let Ok(mut chart) = chart else {
            return svg_error(title);
        };
        let _ = chart
            .configure_mesh()
            .x_desc(x_label)
            .y_desc("visitors")
            .draw();
        let _ = chart.draw_series(counts.iter().enumerate().map(|(i, c)| {
            let x0 = i as f64 * width;
            Rectangle::new([(x0, 0), (x0 + width, *c)], COLORS[0].filled())
        }));
        let _ = root.present();
    }
    svg
}

fn svg_error(title: &str) -> String {
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"40\"><text x=\"10\" y=\"25\">{title}: no data</text></svg>"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charts_are_svg_with_lines_and_bars() {
        let svg = lines(
            "arrivals",
            "s",
            "per second",
            &[Series {
                label: "arrivals",
                points: vec![(0.0, 1.0), (1.0, 5.0), (2.0, 3.0)],
                color: COLORS[0],
            }],
            None,
        );
        assert!(
            svg.starts_with("<svg") && svg.contains("<polyline"),
            "{svg}"
        );
        assert!(svg.contains("arrivals"));
        let h = histogram("waits", "s", &[1.0, 2.0, 2.5, 9.0], 10, None);
        assert!(h.matches("<rect").count() >= 10, "{h}");
        assert!(histogram("waits", "s", &[], 10, None).contains("no data"));
    }
}

//! The report's charts, drawn by plotters into SVG that the HTML inlines.
//!
//! Every SVG has a `viewBox`, so the page's CSS scales it to its column. Text
//! is in the generic `sans-serif` family, sized by plotters' estimate (no font
//! is read), and the page's CSS recolours text and axes for its colour scheme.
//! The only numbers drawn are values of the report itself (bar values, the
//! peak hour's total) and the hours of the day.

use chrono::Timelike;
use plotters::coord::combinators::BindKeyPoints;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::numbers;
use crate::report::{Hour, Traffic};

/// A chart plotters could not draw.
#[derive(Debug, thiserror::Error)]
#[error("drawing the {chart} chart: {why}")]
pub struct ChartError {
    /// Which chart.
    pub chart: &'static str,
    /// What plotters said.
    pub why: String,
}

/// A colour of the charts, shared with the HTML legends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Swatch(pub u8, pub u8, pub u8);

impl Swatch {
    /// The colour as CSS: `#rrggbb`.
    pub fn css(self) -> String {
        format!("#{:02x}{:02x}{:02x}", self.0, self.1, self.2)
    }

    fn rgb(self) -> RGBColor {
        RGBColor(self.0, self.1, self.2)
    }
}

/// Colours picked to read on both a light and a dark page.
pub mod palette {
    use super::Swatch;

    /// WAF action `ALLOW`.
    pub const ALLOWED: Swatch = Swatch(0x2a, 0x9d, 0x8f);
    /// WAF action `BLOCK`, and the blocked part of a bar.
    pub const BLOCKED: Swatch = Swatch(0xe0, 0x4f, 0x5f);
    /// WAF action `COUNT`.
    pub const COUNTED: Swatch = Swatch(0xe9, 0xa8, 0x20);
    /// WAF action `CAPTCHA`.
    pub const CAPTCHA: Swatch = Swatch(0x8e, 0x7d, 0xd6);
    /// WAF action `CHALLENGE`.
    pub const CHALLENGE: Swatch = Swatch(0x3d, 0x8b, 0xe8);
    /// Bars with no meaning of their own (requests, hits).
    pub const NEUTRAL: Swatch = Swatch(0x5b, 0x8d, 0xc9);
    /// Threat level `critical`; Falco `Critical`, `Alert` and `Emergency`.
    pub const SEVERE: Swatch = Swatch(0xd6, 0x28, 0x39);
    /// Threat level `high`; Falco `Error`.
    pub const HIGH: Swatch = Swatch(0xf0, 0x7a, 0x2a);
    /// Threat level `medium`; Falco `Warning`.
    pub const MEDIUM: Swatch = Swatch(0xe9, 0xb4, 0x20);
    /// Threat level `low`; Falco `Notice`.
    pub const LOW: Swatch = Swatch(0x3d, 0x8b, 0xe8);
    /// Anything else (Falco `Informational`, `Debug`, unknown names).
    pub const MUTED: Swatch = Swatch(0x8a, 0x94, 0xa3);
}

/// Text sizes in pixels at the chart's own width. Charts shrink to fit a
/// phone's column, so these are larger than the page's text.
const TIMELINE_TEXT_PX: f64 = 17.0;
const BARS_TEXT_PX: f64 = 16.0;
/// Plotters writes `font-size` as the size given divided by this.
const PLOTTERS_FONT_SCALE: f64 = 1.24;
/// A generous average glyph width, as a fraction of the text size.
const GLYPH_EM: f64 = 0.62;
/// Axis and grid grey; the page's CSS overrides it in dark mode.
const AXIS: RGBColor = RGBColor(0x9a, 0xa3, 0xad);
/// Longest category label drawn; the tables hold the full text.
const LABEL_CHARS: usize = 24;

/// One series of the timeline: its name, colour, and value in an hour and
/// in the whole day.
pub struct Series {
    /// Shown in the legend.
    pub name: &'static str,
    pub color: Swatch,
    pub hour: fn(&Hour) -> u64,
    pub day: fn(&Traffic) -> u64,
}

/// The WAF actions, in stacking order (bottom first).
pub const ACTIONS: [Series; 5] = [
    Series {
        name: "Allowed",
        color: palette::ALLOWED,
        hour: |h| h.allowed,
        day: |t| t.allowed,
    },
    Series {
        name: "Blocked",
        color: palette::BLOCKED,
        hour: |h| h.blocked,
        day: |t| t.blocked,
    },
    Series {
        name: "Counted",
        color: palette::COUNTED,
        hour: |h| h.counted,
        day: |t| t.counted,
    },
    Series {
        name: "CAPTCHA",
        color: palette::CAPTCHA,
        hour: |h| h.captcha,
        day: |t| t.captcha,
    },
    Series {
        name: "Challenge",
        color: palette::CHALLENGE,
        hour: |h| h.challenge,
        day: |t| t.challenge,
    },
];

/// One bar of a horizontal bar chart.
#[derive(Debug, Clone)]
pub struct Bar {
    /// The category, shortened if long.
    pub label: String,
    pub value: u64,
    pub color: Swatch,
    /// A part of `value` drawn over the bar from its start, in its own colour
    /// (the blocked part of the requests).
    pub part: Option<(u64, Swatch)>,
}

/// Requests per hour, stacked by WAF action, with the peak hour's total as
/// the one gridline. `None` when the day has no request.
pub fn timeline(hours: &[Hour], aria_label: &'static str) -> Result<Option<String>, ChartError> {
    let Some(peak) = hours.iter().map(|h| h.total).max().filter(|&p| p > 0) else {
        return Ok(None);
    };
    let err = |e: &dyn std::fmt::Display| ChartError {
        chart: "timeline",
        why: e.to_string(),
    };
    let px = TIMELINE_TEXT_PX;
    let size = (600, 300);
    let n = u32::try_from(hours.len()).map_err(|e| err(&e))?;
    // Label every third hour at its start, by the clock (DST days included).
    let ticks: Vec<u32> = (0u32..)
        .zip(hours)
        .filter(|(_, h)| h.start.hour() % 3 == 0)
        .map(|(i, _)| i)
        .collect();
    let peak_label = numbers::count(peak);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
        let mut chart = ChartBuilder::on(&root)
            .margin(8)
            .margin_top(px)
            .margin_right(24)
            .x_label_area_size(px * 2.0)
            .y_label_area_size(text_width(&peak_label, px) + 12.0)
            .build_cartesian_2d(
                (0..n).with_key_points(ticks),
                (0..peak).with_key_points(vec![peak]),
            )
            .map_err(|e| err(&e))?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .light_line_style(TRANSPARENT)
            .bold_line_style(AXIS.mix(0.5))
            .axis_style(AXIS)
            .label_style(text_style(px))
            .x_label_formatter(&|x| {
                hours
                    .get(*x as usize)
                    .map(|h| h.start.format("%H:%M").to_string())
                    .unwrap_or_default()
            })
            .y_label_formatter(&|_| peak_label.clone())
            .draw()
            .map_err(|e| err(&e))?;
        let mut rects = Vec::new();
        for (i, hour) in (0u32..).zip(hours) {
            let mut base = 0;
            for series in &ACTIONS {
                let v = (series.hour)(hour);
                if v == 0 {
                    continue;
                }
                let mut rect =
                    Rectangle::new([(i, base), (i + 1, base + v)], series.color.rgb().filled());
                rect.set_margin(0, 0, 2, 2);
                rects.push(rect);
                base += v;
            }
        }
        chart.draw_series(rects).map_err(|e| err(&e))?;
        root.present().map_err(|e| err(&e))?;
    }
    Ok(Some(finish(svg, aria_label)))
}

/// Horizontal bars, one per row, largest scale at `max(value)`, each labelled
/// with its category on the left and its value at its end. `None` without
/// rows.
pub fn bars(
    chart: &'static str,
    rows: &[Bar],
    aria_label: &'static str,
) -> Result<Option<String>, ChartError> {
    if rows.is_empty() {
        return Ok(None);
    }
    let err = |e: &dyn std::fmt::Display| ChartError {
        chart,
        why: e.to_string(),
    };
    let px = BARS_TEXT_PX;
    let row_px = 2.2 * px;
    let n = u32::try_from(rows.len()).map_err(|e| err(&e))?;
    let labels: Vec<String> = rows
        .iter()
        .map(|r| shorten(&r.label, LABEL_CHARS))
        .collect();
    let values: Vec<String> = rows.iter().map(|r| numbers::count(r.value)).collect();
    let label_px = labels.iter().map(|l| text_width(l, px)).fold(0.0, f64::max) + 12.0;
    let value_px = values.iter().map(|v| text_width(v, px)).fold(0.0, f64::max) + 16.0;
    let size = (480, (n as f64 * row_px + 16.0).round() as u32);
    let max = rows.iter().map(|r| r.value).max().unwrap_or(0).max(1);
    // Row i spans y from y_of(i) to y_of(i) + 2, so its centre is a whole
    // number for the label's key point; row 0 at the top (y grows upwards).
    let y_of = |i: u32| 2 * (n - 1 - i);
    let centres: Vec<u32> = (0..n).map(|i| y_of(i) + 1).collect();
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
        let mut ctx = ChartBuilder::on(&root)
            .margin(8)
            .margin_right(value_px.round() as u32)
            .y_label_area_size(label_px)
            .build_cartesian_2d(0..max, (0..2 * n).with_key_points(centres))
            .map_err(|e| err(&e))?;
        ctx.configure_mesh()
            .disable_mesh()
            .disable_x_axis()
            .axis_style(AXIS)
            .label_style(text_style(px))
            .y_label_formatter(&|y| {
                let row = n.checked_sub(1 + y / 2);
                row.and_then(|i| labels.get(i as usize))
                    .cloned()
                    .unwrap_or_default()
            })
            .draw()
            .map_err(|e| err(&e))?;
        let band = |i: u32, v: u64, color: Swatch| {
            let mut rect = Rectangle::new([(0, y_of(i)), (v, y_of(i) + 2)], color.rgb().filled());
            rect.set_margin(6, 6, 0, 0);
            rect
        };
        ctx.draw_series(
            (0u32..)
                .zip(rows)
                .filter(|(_, r)| r.value > 0)
                .map(|(i, r)| band(i, r.value, r.color)),
        )
        .map_err(|e| err(&e))?;
        ctx.draw_series((0u32..).zip(rows).filter_map(|(i, r)| {
            r.part
                .filter(|&(v, _)| v > 0)
                .map(|(v, color)| band(i, v.min(r.value), color))
        }))
        .map_err(|e| err(&e))?;
        let value_style = text_style(px).pos(Pos::new(HPos::Left, VPos::Center));
        ctx.draw_series((0u32..).zip(rows.iter().zip(&values)).map(|(i, (r, v))| {
            EmptyElement::at((r.value, y_of(i) + 1))
                + Text::new(v.clone(), (6, 0), value_style.clone())
        }))
        .map_err(|e| err(&e))?;
        root.present().map_err(|e| err(&e))?;
    }
    Ok(Some(finish(svg, aria_label)))
}

fn text_style(px: f64) -> TextStyle<'static> {
    ("sans-serif", px * PLOTTERS_FONT_SCALE)
        .into_font()
        .color(&BLACK)
}

/// Estimated width of `text` in pixels at `px`.
fn text_width(text: &str, px: f64) -> f64 {
    text.chars().count() as f64 * px * GLYPH_EM
}

/// `text` cut to `max` characters, with an ellipsis when cut.
fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_owned()
    } else {
        let mut short: String = text.chars().take(max - 1).collect();
        short.push('…');
        short
    }
}

/// Tags the SVG for the page's CSS and for screen readers. `aria_label` is
/// the report's own text (`'static`), never data.
fn finish(svg: String, aria_label: &'static str) -> String {
    let attrs = format!(r#"<svg class="chart" role="img" aria-label="{aria_label}" "#);
    svg.replacen("<svg ", &attrs, 1)
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, Duration, TimeZone};
    use chrono_tz::America::New_York;

    use super::*;

    /// The 25 hours of New York's fall-back day, `blocked` requests each.
    fn fall_back_day(blocked: u64) -> Vec<Hour> {
        let start = DateTime::parse_from_rfc3339("2026-11-01T04:00:00Z").unwrap();
        (0..25)
            .map(|h| Hour {
                start: New_York
                    .from_utc_datetime(&(start + Duration::hours(h)).naive_utc())
                    .fixed_offset(),
                blocked,
                total: blocked,
                ..Hour::default()
            })
            .collect()
    }

    #[test]
    fn a_day_without_requests_has_no_timeline() {
        assert!(timeline(&fall_back_day(0), "t").unwrap().is_none());
        assert!(bars("b", &[], "b").unwrap().is_none());
    }

    #[test]
    fn the_timeline_labels_hours_by_the_clock_and_only_the_peak_value() {
        let svg = timeline(&fall_back_day(1_500), "t").unwrap().unwrap();
        assert!(svg.starts_with(r#"<svg class="chart" role="img" aria-label="t" "#));
        assert!(svg.contains("viewBox="));
        // Every third hour by the clock, though this day has 01:00 twice.
        let ticks: Vec<&str> = ["00:00", "03:00", "06:00", "21:00"]
            .into_iter()
            .filter(|t| svg.contains(&format!(">\n{t}\n<")))
            .collect();
        assert_eq!(ticks, ["00:00", "03:00", "06:00", "21:00"], "{svg}");
        assert!(svg.contains(">\n1,500\n<"), "the peak labelled");
        assert_eq!(svg.matches("<rect").count(), 25);
    }

    #[test]
    fn bars_escape_their_labels_and_keep_all_zero_rows() {
        let rows = [Bar {
            label: "<b>&".to_owned(),
            value: 0,
            color: palette::NEUTRAL,
            part: None,
        }];
        let svg = bars("b", &rows, "b").unwrap().unwrap();
        assert!(svg.contains("&lt;b&gt;&amp;"), "{svg}");
        assert!(!svg.contains("<b>"));
    }
}

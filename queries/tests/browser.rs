//! The busy day's HTML report in headless Chromium (Debian's `chromium`), at
//! a phone's and a desktop's width, in light and dark: every chart is drawn
//! and inside its box, no text runs out of its block, the page never scrolls
//! sideways (tables scroll inside their own box), and chart text contrasts
//! with the page. Screenshots go to `$CARGO_TARGET_DIR/report-screenshots/`
//! (`cargo test --workspace --test browser -- --nocapture` prints their paths).

mod reports;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use headless_chrome::protocol::cdp::{Emulation, Page};
use headless_chrome::{Browser, LaunchOptions, Tab};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::json;

const CHROMIUM: &str = "/usr/bin/chromium";

struct Screen {
    name: &'static str,
    width: u32,
    height: u32,
    scale: f64,
    mobile: bool,
}

const SCREENS: [Screen; 2] = [
    Screen {
        name: "phone",
        width: 390,
        height: 844,
        scale: 2.0,
        mobile: true,
    },
    Screen {
        name: "desktop",
        width: 1280,
        height: 900,
        scale: 1.0,
        mobile: false,
    },
];

/// What the page's script below finds.
#[derive(Debug, Deserialize)]
struct Layout {
    dark: bool,
    charts: usize,
    problems: Vec<String>,
    height: f64,
    /// `.scroll` boxes whose table is wider than they are.
    scrolling_tables: usize,
    /// Contrast ratio of the charts' text and of their axes with the page.
    text_contrast: f64,
    axis_contrast: f64,
}

/// Measures the laid-out page. Text blocks are the elements that hold text
/// directly; inside a `.scroll` box (a wide table) overflow is the point.
const MEASURE: &str = r#"(() => {
  const problems = [];
  const name = (el) => `${el.tagName.toLowerCase()}${el.className && el.className.baseVal === undefined ? '.' + el.className : ''} "${(el.textContent || '').trim().slice(0, 50)}"`;
  const charts = [...document.querySelectorAll('svg.chart')];
  charts.forEach((svg, i) => {
    const box = svg.getBoundingClientRect();
    if (!(box.width > 0 && box.height > 0)) problems.push(`chart ${i} has an empty box`);
    const drawn = [...svg.querySelectorAll('rect, path, line, polyline, polygon')].filter((s) => {
      const b = s.getBBox();
      return b.width > 0 && b.height > 0;
    });
    if (drawn.length === 0) problems.push(`chart ${i} draws no shape`);
    const view = svg.viewBox.baseVal;
    for (const t of svg.querySelectorAll('text')) {
      const b = t.getBBox();
      if (b.x < view.x - 1 || b.y < view.y - 1 || b.x + b.width > view.x + view.width + 1 || b.y + b.height > view.y + view.height + 1) {
        problems.push(`chart ${i}: text "${t.textContent.trim()}" leaves the chart (${Math.round(b.x)}..${Math.round(b.x + b.width)} of ${view.width})`);
      }
    }
  });
  for (const el of document.body.querySelectorAll('*')) {
    if (el.closest('svg') || el.parentElement.closest('.scroll')) continue;
    const holdsText = [...el.childNodes].some((n) => n.nodeType === Node.TEXT_NODE && n.textContent.trim());
    if (holdsText && el.scrollWidth > el.clientWidth + 1 && getComputedStyle(el).display !== 'inline') {
      problems.push(`text overflows ${name(el)}: ${el.scrollWidth} > ${el.clientWidth}`);
    }
    const box = el.getBoundingClientRect();
    if (box.right > innerWidth + 1 || box.left < -1) problems.push(`${name(el)} spans ${Math.round(box.left)}..${Math.round(box.right)} of ${innerWidth}`);
  }
  if (document.documentElement.scrollWidth > innerWidth) {
    problems.push(`the page scrolls sideways: ${document.documentElement.scrollWidth} > ${innerWidth}`);
  }
  const rgb = (c) => c.match(/[\d.]+/g).slice(0, 3).map(Number);
  const luminance = (c) => {
    const [r, g, b] = rgb(c).map((v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; });
    return 0.2126 * r + 0.7152 * g + 0.0722 * b;
  };
  const contrast = (a, b) => { const [x, y] = [luminance(a), luminance(b)].sort((p, q) => q - p); return (x + 0.05) / (y + 0.05); };
  const page = getComputedStyle(document.body).backgroundColor;
  const card = getComputedStyle(document.querySelector('figure')).backgroundColor;
  const text = getComputedStyle(document.querySelector('svg.chart text')).fill;
  const axis = getComputedStyle(document.querySelector('svg.chart polyline, svg.chart line')).stroke;
  return JSON.stringify({
    dark: matchMedia('(prefers-color-scheme: dark)').matches,
    charts: charts.length,
    problems,
    height: document.documentElement.scrollHeight,
    scrolling_tables: [...document.querySelectorAll('.scroll')].filter((s) => s.scrollWidth > s.clientWidth).length,
    text_contrast: Math.min(contrast(text, card), contrast(text, page)),
    axis_contrast: contrast(axis, card),
  });
})()"#;

#[test]
fn the_report_lays_out_on_phones_and_desktops_in_light_and_dark() {
    if !Path::new(CHROMIUM).exists() {
        if std::env::var_os("CI").is_some() {
            panic!(
                "{CHROMIUM} is missing: run scripts/system-packages to install Debian's chromium"
            );
        }
        eprintln!(
            "note: {CHROMIUM} is missing, so the browser test did not run (scripts/system-packages installs it)"
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("report.html");
    std::fs::write(&page, seclake_queries::render::html(&reports::busy_day())).unwrap();
    let shots = screenshot_dir();
    std::fs::create_dir_all(&shots).unwrap();

    let profile = dir.path().join("profile");
    // The machine has no outside network: nothing may try to reach it.
    let args: Vec<&OsStr> = [
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
    ]
    .iter()
    .map(OsStr::new)
    .collect();
    let browser = Browser::new(LaunchOptions {
        path: Some(PathBuf::from(CHROMIUM)),
        headless: true,
        sandbox: false,
        user_data_dir: Some(profile),
        args,
        ..LaunchOptions::default()
    })
    .unwrap();
    let tab = browser.new_tab().unwrap();
    tab.set_default_timeout(Duration::from_secs(30));

    let mut failures = Vec::new();
    for screen in &SCREENS {
        call::<Emulation::SetDeviceMetricsOverride>(
            &tab,
            json!({
                "width": screen.width,
                "height": screen.height,
                "deviceScaleFactor": screen.scale,
                "mobile": screen.mobile,
            }),
        );
        tab.navigate_to(&format!("file://{}", page.display()))
            .unwrap();
        tab.wait_until_navigated().unwrap();
        for scheme in ["light", "dark"] {
            call::<Emulation::SetEmulatedMedia>(
                &tab,
                json!({ "features": [{ "name": "prefers-color-scheme", "value": scheme }] }),
            );
            let measured = tab.evaluate(MEASURE, false).unwrap();
            let json = measured.value.and_then(|v| v.as_str().map(str::to_owned));
            let layout: Layout = serde_json::from_str(&json.unwrap()).unwrap();
            let at = format!("{} ({} px, {scheme})", screen.name, screen.width);
            assert_eq!(
                layout.dark,
                scheme == "dark",
                "{at}: colour scheme not emulated"
            );
            assert_eq!(layout.charts, 5, "{at}");
            if screen.mobile {
                assert!(
                    layout.scrolling_tables > 0,
                    "{at}: no table scrolls in its box"
                );
            }
            failures.extend(layout.problems.iter().map(|p| format!("{at}: {p}")));
            if layout.text_contrast < 4.5 {
                failures.push(format!(
                    "{at}: chart text contrast {:.1} < 4.5",
                    layout.text_contrast
                ));
            }
            if layout.axis_contrast < 2.0 {
                failures.push(format!(
                    "{at}: chart axis contrast {:.1} < 2",
                    layout.axis_contrast
                ));
            }

            let png = screenshot(&tab, screen.width, layout.height);
            assert!(png.starts_with(b"\x89PNG"), "{at}: not a PNG");
            let path = shots.join(format!("{}-{scheme}.png", screen.name));
            std::fs::write(&path, png).unwrap();
            println!("screenshot: {}", path.display());
        }
    }
    assert!(
        failures.is_empty(),
        "layout problems:\n{}",
        failures.join("\n")
    );
}

/// Calls the CDP method `M` with `params`. The method's parameters are built
/// from JSON so that parameters this test leaves out keep their defaults.
fn call<M>(tab: &Tab, params: serde_json::Value)
where
    M: headless_chrome::protocol::cdp::types::Method
        + serde::Serialize
        + DeserializeOwned
        + std::fmt::Debug,
{
    let method: M = serde_json::from_value(params).unwrap();
    tab.call_method(method).unwrap();
}

/// The whole page, `height` CSS pixels tall, as PNG.
fn screenshot(tab: &Tab, width: u32, height: f64) -> Vec<u8> {
    let capture: Page::CaptureScreenshot = serde_json::from_value(json!({
        "format": "png",
        "captureBeyondViewport": true,
        "clip": { "x": 0, "y": 0, "width": width, "height": height, "scale": 1 },
    }))
    .unwrap();
    let data = tab.call_method(capture).unwrap().data;
    base64_decode(&data)
}

fn base64_decode(text: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .unwrap()
}

/// `$CARGO_TARGET_DIR/report-screenshots`, or beside the test binary's
/// `target/<profile>/deps/`.
fn screenshot_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let exe = std::env::current_exe().unwrap();
            exe.ancestors().nth(3).unwrap().to_path_buf()
        });
    target.join("report-screenshots")
}

//! Plots for `anneal schedule --plot`: one line per schedule, PNG or SVG by extension.
//! Text is drawn with the DejaVu Sans font shipped in `cli/assets`, so plots look the same
//! on machines without system fonts.

use anneal_runtime::atomic;
use anneal_runtime::schedule::Curve;
use plotters::prelude::*;
use std::path::Path;

static FONT: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");

fn register_font() {
    use std::sync::Once;
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // The bytes are a valid TrueType font compiled into the binary.
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT);
    });
}

/// Draws a training run's loss, learning rate and gradient norm, one panel each.
pub fn run(path: &Path, title: &str, panels: &[(&str, Vec<Curve>)]) -> Result<(), String> {
    register_font();
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    // Drawn beside the destination and renamed into place (`atomic`).
    let tmp = atomic::temp_beside(path);
    let size = (
        900,
        if panels.len() <= 1 {
            450
        } else {
            300 * panels.len() as u32
        },
    );
    let result = match ext.as_str() {
        "png" => {
            let root = BitMapBackend::new(&tmp, size).into_drawing_area();
            root.fill(&WHITE).map_err(|e| e.to_string())?;
            let areas = root.split_evenly((panels.len().max(1), 1));
            draw_all(areas, title, panels).and_then(|_| root.present().map_err(|e| e.to_string()))
        }
        "svg" => {
            let root = SVGBackend::new(&tmp, size).into_drawing_area();
            root.fill(&WHITE).map_err(|e| e.to_string())?;
            let areas = root.split_evenly((panels.len().max(1), 1));
            draw_all(areas, title, panels).and_then(|_| root.present().map_err(|e| e.to_string()))
        }
        _ => {
            return Err(format!(
                "cannot plot to {}: the file name must end in .png or .svg",
                path.display()
            ))
        }
    };
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(format!("cannot draw {}: {e}", path.display()));
    }
    atomic::commit(&tmp, path).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// Draws the learning-rate curves to `path` (.png or .svg).
pub fn schedules(path: &Path, title: &str, curves: &[Curve]) -> Result<(), String> {
    run(
        path,
        &format!("recipe {title}"),
        &[("learning rate", curves.to_vec())],
    )
}

fn draw_all<DB: DrawingBackend>(
    areas: Vec<DrawingArea<DB, plotters::coord::Shift>>,
    title: &str,
    panels: &[(&str, Vec<Curve>)],
) -> Result<(), String>
where
    DB::ErrorType: 'static,
{
    for (area, (name, curves)) in areas.into_iter().zip(panels) {
        draw_panel(&area, &format!("{name} — {title}"), name, curves)?;
    }
    Ok(())
}

fn draw_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    caption: &str,
    y_desc: &str,
    curves: &[Curve],
) -> Result<(), String>
where
    DB::ErrorType: 'static,
{
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    let n = curves
        .iter()
        .map(|c| c.values.len())
        .max()
        .unwrap_or(1)
        .max(2);
    let finite = curves
        .iter()
        .flat_map(|c| c.values.iter().copied())
        .filter(|v| v.is_finite());
    let (lo, hi) = finite.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
        (a.min(v), b.max(v))
    });
    let (lo, hi) = if lo.is_finite() { (lo, hi) } else { (0.0, 1.0) };
    let pad = ((hi - lo) * 0.05).max(hi.abs() * 1e-6).max(1e-12);
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 18))
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(80)
        .build_cartesian_2d(0f64..(n - 1) as f64, (lo - pad)..(hi + pad))
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("step")
        .y_desc(y_desc)
        .x_label_formatter(&|v| format!("{v:.0}"))
        .y_label_formatter(&|v| format!("{v:.3e}"))
        .draw()
        .map_err(err)?;
    for (i, c) in curves.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(
                c.values
                    .iter()
                    .enumerate()
                    .filter(|(_, v)| v.is_finite())
                    .map(|(k, v)| (k as f64, *v)),
                color.stroke_width(1),
            ))
            .map_err(err)?
            .label(c.name.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(err)?;
    Ok(())
}

//! Hand-written SVG plots for the model report: a frame with real axis ticks and labels, and
//! lines, points and bars in data coordinates (clipped to the frame). No script, no fonts or
//! styles fetched from anywhere.

use std::fmt::Write as _;

/// Escapes text for XML content and attribute values.
pub fn esc(s: &str) -> String {
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

/// One axis: its data range, title and ticks (position in data units, label).
#[derive(Debug, Clone)]
pub struct Axis {
    pub min: f64,
    pub max: f64,
    pub title: String,
    pub ticks: Vec<(f64, String)>,
}

impl Axis {
    /// A linear axis over `[min, max]` with about `target` ticks at round numbers.
    pub fn linear(min: f64, max: f64, title: &str, target: usize) -> Self {
        let (min, max) = if max > min {
            (min, max)
        } else {
            (min - 0.5, min + 0.5)
        };
        let step = nice_step((max - min) / target.max(1) as f64);
        let decimals = decimals_of(step);
        let mut ticks = Vec::new();
        let mut k = (min / step).ceil();
        while k * step <= max + step * 1e-9 && ticks.len() < 50 {
            let v = k * step;
            let v = if v.abs() < step * 1e-9 { 0.0 } else { v };
            ticks.push((v, format!("{v:.decimals$}")));
            k += 1.0;
        }
        Self {
            min,
            max,
            title: title.to_owned(),
            ticks,
        }
    }

    /// A score axis on the logit scale over `[logit_min, logit_max]`, ticked at round
    /// probabilities of default (labelled in percent).
    pub fn pd_logit(logit_min: f64, logit_max: f64, title: &str) -> Self {
        const PDS: [f64; 17] = [
            0.0001, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.8,
            0.9, 0.95, 0.99,
        ];
        let logit = |p: f64| (p / (1.0 - p)).ln();
        let mut ticks: Vec<(f64, String)> = PDS
            .iter()
            .map(|&p| (logit(p), p))
            .filter(|&(z, _)| z >= logit_min && z <= logit_max)
            .map(|(z, p)| (z, format_percent(p)))
            .collect();
        // Keep ticks at least a ninth of the axis apart.
        let gap = (logit_max - logit_min) / 9.0;
        let mut kept: Vec<(f64, String)> = Vec::new();
        for t in ticks.drain(..) {
            if kept.last().is_none_or(|l| t.0 - l.0 >= gap) {
                kept.push(t);
            }
        }
        Self {
            min: logit_min,
            max: logit_max,
            title: title.to_owned(),
            ticks: kept,
        }
    }
}

fn format_percent(p: f64) -> String {
    let pct = p * 100.0;
    if pct >= 1.0 {
        format!("{pct:.0}%")
    } else {
        let s = format!("{pct:.2}");
        format!("{}%", s.trim_end_matches('0'))
    }
}

/// 1, 2 or 5 times a power of ten, at least `raw`.
pub fn nice_step(raw: f64) -> f64 {
    if !(raw.is_finite() && raw > 0.0) {
        return 1.0;
    }
    let p = 10f64.powf(raw.log10().floor());
    let f = raw / p;
    let m = if f <= 1.0 {
        1.0
    } else if f <= 2.0 {
        2.0
    } else if f <= 5.0 {
        5.0
    } else {
        10.0
    };
    m * p
}

fn decimals_of(step: f64) -> usize {
    if step >= 1.0 {
        0
    } else {
        (-step.log10() - 1e-9).ceil().clamp(0.0, 8.0) as usize
    }
}

/// One plot: a frame with two axes, marks in data coordinates and a legend.
pub struct Plot {
    id: String,
    title: String,
    x: Axis,
    y: Axis,
    width: f64,
    height: f64,
    left: f64,
    right: f64,
    top: f64,
    bottom: f64,
    marks: String,
    legend: Vec<(String, String)>,
}

impl Plot {
    /// `id` must be unique in the page (it names the clip path).
    pub fn new(id: &str, title: &str, x: Axis, y: Axis) -> Self {
        Self {
            id: id.to_owned(),
            title: title.to_owned(),
            x,
            y,
            width: 480.0,
            height: 340.0,
            left: 62.0,
            right: 18.0,
            top: 34.0,
            bottom: 50.0,
            marks: String::new(),
            legend: Vec::new(),
        }
    }

    fn px(&self, x: f64) -> f64 {
        let w = self.width - self.left - self.right;
        self.left + (x - self.x.min) / (self.x.max - self.x.min) * w
    }

    fn py(&self, y: f64) -> f64 {
        let h = self.height - self.top - self.bottom;
        self.top + h - (y - self.y.min) / (self.y.max - self.y.min) * h
    }

    /// A polyline through `points` (non-finite points are skipped).
    pub fn line(&mut self, points: &[(f64, f64)], colour: &str, width: f64, dash: Option<&str>) {
        let coords: Vec<String> = points
            .iter()
            .filter(|(x, y)| x.is_finite() && y.is_finite())
            .map(|&(x, y)| format!("{:.2},{:.2}", self.px(x), self.py(y)))
            .collect();
        if coords.is_empty() {
            return;
        }
        let dash = dash.map_or(String::new(), |d| format!(" stroke-dasharray=\"{d}\""));
        let _ = writeln!(
            self.marks,
            "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"{width}\" stroke-linejoin=\"round\"{dash} points=\"{}\"/>",
            coords.join(" ")
        );
    }

    /// Filled circles at `points`.
    pub fn points(&mut self, points: &[(f64, f64)], colour: &str, radius: f64) {
        for &(x, y) in points {
            if x.is_finite() && y.is_finite() {
                let _ = writeln!(
                    self.marks,
                    "<circle cx=\"{:.2}\" cy=\"{:.2}\" r=\"{radius}\" fill=\"{colour}\"/>",
                    self.px(x),
                    self.py(y)
                );
            }
        }
    }

    /// Bars from `y = 0` (or the axis minimum) to `y` over `[x0, x1]`.
    pub fn bars(&mut self, bars: &[(f64, f64, f64)], colour: &str, opacity: f64) {
        let base = self.py(self.y.min.max(0.0).min(self.y.max));
        for &(x0, x1, y) in bars {
            if !(x0.is_finite() && x1.is_finite() && y.is_finite()) {
                continue;
            }
            let (a, b) = (self.px(x0), self.px(x1));
            let top = self.py(y);
            let _ = writeln!(
                self.marks,
                "<rect x=\"{:.2}\" y=\"{:.2}\" width=\"{:.2}\" height=\"{:.2}\" fill=\"{colour}\" fill-opacity=\"{opacity}\"/>",
                a.min(b),
                top.min(base),
                (b - a).abs().max(0.5),
                (base - top).abs()
            );
        }
    }

    /// A text label at a data position.
    pub fn text(&mut self, x: f64, y: f64, text: &str) {
        let _ = writeln!(
            self.marks,
            "<text x=\"{:.2}\" y=\"{:.2}\" class=\"note\">{}</text>",
            self.px(x) + 4.0,
            self.py(y) - 4.0,
            esc(text)
        );
    }

    pub fn legend(&mut self, colour: &str, label: &str) {
        self.legend.push((colour.to_owned(), label.to_owned()));
    }

    pub fn render(&self) -> String {
        let mut s = String::new();
        let (w, h) = (self.width, self.height);
        let (x0, x1) = (self.left, w - self.right);
        let (y0, y1) = (self.top, h - self.bottom);
        let _ = writeln!(
            s,
            "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"plot\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" role=\"img\" aria-label=\"{}\">",
            esc(&self.title)
        );
        let _ = writeln!(
            s,
            "<clipPath id=\"clip-{}\"><rect x=\"{x0}\" y=\"{y0}\" width=\"{}\" height=\"{}\"/></clipPath>",
            self.id,
            x1 - x0,
            y1 - y0
        );
        let _ = writeln!(
            s,
            "<text x=\"{}\" y=\"20\" class=\"title\">{}</text>",
            x0,
            esc(&self.title)
        );
        // Grid and ticks.
        for (v, label) in &self.x.ticks {
            let x = self.px(*v);
            let _ = writeln!(
                s,
                "<line x1=\"{x:.2}\" y1=\"{y0}\" x2=\"{x:.2}\" y2=\"{y1}\" class=\"grid\"/><line x1=\"{x:.2}\" y1=\"{y1}\" x2=\"{x:.2}\" y2=\"{}\" class=\"axis\"/><text x=\"{x:.2}\" y=\"{}\" class=\"tick\" text-anchor=\"middle\">{}</text>",
                y1 + 5.0,
                y1 + 18.0,
                esc(label)
            );
        }
        for (v, label) in &self.y.ticks {
            let y = self.py(*v);
            let _ = writeln!(
                s,
                "<line x1=\"{x0}\" y1=\"{y:.2}\" x2=\"{x1}\" y2=\"{y:.2}\" class=\"grid\"/><line x1=\"{}\" y1=\"{y:.2}\" x2=\"{x0}\" y2=\"{y:.2}\" class=\"axis\"/><text x=\"{}\" y=\"{:.2}\" class=\"tick\" text-anchor=\"end\">{}</text>",
                x0 - 5.0,
                x0 - 8.0,
                y + 4.0,
                esc(label)
            );
        }
        let _ = writeln!(
            s,
            "<g clip-path=\"url(#clip-{})\">\n{}</g>",
            self.id, self.marks
        );
        let _ = writeln!(
            s,
            "<rect x=\"{x0}\" y=\"{y0}\" width=\"{}\" height=\"{}\" class=\"frame\"/>",
            x1 - x0,
            y1 - y0
        );
        let _ = writeln!(
            s,
            "<text x=\"{:.2}\" y=\"{}\" class=\"axis-title\" text-anchor=\"middle\">{}</text>",
            (x0 + x1) / 2.0,
            h - 10.0,
            esc(&self.x.title)
        );
        let _ = writeln!(
            s,
            "<text transform=\"translate(16 {:.2}) rotate(-90)\" class=\"axis-title\" text-anchor=\"middle\">{}</text>",
            (y0 + y1) / 2.0,
            esc(&self.y.title)
        );
        let mut lx = x0 + 8.0;
        for (colour, label) in &self.legend {
            let _ = writeln!(
                s,
                "<rect x=\"{lx:.1}\" y=\"{}\" width=\"12\" height=\"4\" fill=\"{colour}\"/><text x=\"{:.1}\" y=\"{}\" class=\"legend\">{}</text>",
                y0 + 8.0,
                lx + 16.0,
                y0 + 13.0,
                esc(label)
            );
            lx += 24.0 + 6.5 * label.chars().count() as f64;
        }
        s.push_str("</svg>\n");
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linear_ticks_are_round_numbers_inside_the_range() {
        let a = Axis::linear(0.0, 1.0, "x", 5);
        let labels: Vec<&str> = a.ticks.iter().map(|t| t.1.as_str()).collect();
        assert_eq!(labels, ["0.0", "0.2", "0.4", "0.6", "0.8", "1.0"]);
        let a = Axis::linear(0.712, 0.748, "auc", 4);
        assert!(a.ticks.iter().all(|t| t.0 >= 0.712 && t.0 <= 0.748));
        assert_eq!(a.ticks[0].1, "0.72");
        assert_eq!(nice_step(0.013), 0.02);
        assert_eq!(nice_step(70.0), 100.0);
    }

    #[test]
    fn pd_ticks_sit_at_the_logit_of_their_label() {
        let a = Axis::pd_logit(-6.0, 1.0, "PD");
        assert!(!a.ticks.is_empty());
        for (z, label) in &a.ticks {
            let pct: f64 = label.trim_end_matches('%').parse().unwrap();
            let p = pct / 100.0;
            assert!(((p / (1.0 - p)).ln() - z).abs() < 1e-9, "{label} at {z}");
        }
    }

    #[test]
    fn marks_land_inside_the_frame_and_text_is_escaped() {
        let mut p = Plot::new(
            "t",
            "a <b>",
            Axis::linear(0.0, 1.0, "x", 5),
            Axis::linear(0.0, 1.0, "y", 5),
        );
        p.line(&[(0.0, 0.0), (1.0, 1.0)], "#123456", 2.0, None);
        let svg = p.render();
        assert!(svg.contains("a &lt;b&gt;"));
        // (0,0) is the frame's bottom-left corner, (1,1) its top-right one.
        assert!(
            svg.contains("points=\"62.00,290.00 462.00,34.00\""),
            "{svg}"
        );
    }
}

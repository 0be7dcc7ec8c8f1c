//! Plots as hand-written SVG: delivery over time, the latency distribution and buffer occupancy. Small and
//! dependency-free; they open in any browser.

use std::fmt::Write as _;

use crate::report::Report;

const W: f64 = 720.0;
const H: f64 = 420.0;
const L: f64 = 70.0;
const R: f64 = 20.0;
const T: f64 = 50.0;
const B: f64 = 60.0;

/// One line of a chart.
pub struct Series<'a> {
    /// Legend.
    pub name: &'a str,
    /// Stroke colour.
    pub color: &'a str,
    /// Points.
    pub points: Vec<(f64, f64)>,
}

/// Round tick positions covering `0..=max`.
fn ticks(max: f64) -> (f64, Vec<f64>) {
    let max = if max > 0.0 && max.is_finite() { max } else { 1.0 };
    let raw = max / 5.0;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0].iter().map(|m| m * mag).find(|s| *s >= raw).unwrap_or(10.0 * mag);
    let top = (max / step).ceil() * step;
    let n = (top / step).round() as usize;
    (top, (0..=n).map(|i| i as f64 * step).collect())
}

fn label(v: f64) -> String {
    if v == v.trunc() && v.abs() < 1e9 { format!("{}", v as i64) } else { format!("{v:.1}") }
}

fn frame(o: &mut String, title: &str, xlabel: &str, ylabel: &str, xmax: f64, ymax: f64) -> (f64, f64) {
    let (xtop, xt) = ticks(xmax);
    let (ytop, yt) = ticks(ymax);
    let _ = write!(
        o,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">
<rect width="{W}" height="{H}" fill="white"/>
<text x="{}" y="28" text-anchor="middle" font-size="16" font-weight="bold">{title}</text>
"##,
        W / 2.0
    );
    let (pw, ph) = (W - L - R, H - T - B);
    for v in &yt {
        let y = T + ph - v / ytop * ph;
        let _ = writeln!(o, r##"<line x1="{L}" y1="{y:.1}" x2="{}" y2="{y:.1}" stroke="#e4e4e4"/>"##, L + pw);
        let _ = writeln!(o, r##"<text x="{}" y="{:.1}" text-anchor="end">{}</text>"##, L - 6.0, y + 4.0, label(*v));
    }
    for v in &xt {
        let x = L + v / xtop * pw;
        let _ = writeln!(o, r##"<line x1="{x:.1}" y1="{T}" x2="{x:.1}" y2="{}" stroke="#f0f0f0"/>"##, T + ph);
        let _ = writeln!(o, r##"<text x="{x:.1}" y="{}" text-anchor="middle">{}</text>"##, T + ph + 18.0, label(*v));
    }
    let _ = writeln!(o, r##"<rect x="{L}" y="{T}" width="{pw}" height="{ph}" fill="none" stroke="#444"/>"##);
    let _ = writeln!(o, r##"<text x="{}" y="{}" text-anchor="middle">{xlabel}</text>"##, L + pw / 2.0, H - 14.0);
    let _ = writeln!(
        o,
        r##"<text x="18" y="{}" text-anchor="middle" transform="rotate(-90 18 {})">{ylabel}</text>"##,
        T + ph / 2.0,
        T + ph / 2.0
    );
    (xtop, ytop)
}

/// A line chart.
pub fn lines(title: &str, xlabel: &str, ylabel: &str, series: &[Series<'_>]) -> String {
    let xmax = series.iter().flat_map(|s| s.points.iter().map(|p| p.0)).fold(0.0, f64::max);
    let ymax = series.iter().flat_map(|s| s.points.iter().map(|p| p.1)).fold(0.0, f64::max);
    let mut o = String::new();
    let (xtop, ytop) = frame(&mut o, title, xlabel, ylabel, xmax, ymax);
    let (pw, ph) = (W - L - R, H - T - B);
    for (k, s) in series.iter().enumerate() {
        let pts: Vec<String> =
            s.points.iter().map(|(x, y)| format!("{:.1},{:.1}", L + x / xtop * pw, T + ph - y / ytop * ph)).collect();
        let _ = writeln!(
            o,
            r##"<polyline fill="none" stroke="{}" stroke-width="2" points="{}"/>"##,
            s.color,
            pts.join(" ")
        );
        let ly = T + 16.0 + 18.0 * k as f64;
        let _ = writeln!(
            o,
            r##"<line x1="{}" y1="{ly}" x2="{}" y2="{ly}" stroke="{}" stroke-width="3"/><text x="{}" y="{}">{}</text>"##,
            L + 12.0,
            L + 36.0,
            s.color,
            L + 42.0,
            ly + 4.0,
            s.name
        );
    }
    o.push_str("</svg>\n");
    o
}

/// Cumulative messages created and delivered over time.
pub fn delivery(r: &Report) -> String {
    let h = |s: &crate::report::Sample| s.time / 3600.0;
    let created = r.occupancy.iter().map(|s| (h(s), s.created as f64)).collect();
    let delivered = r.occupancy.iter().map(|s| (h(s), s.delivered as f64)).collect();
    let title = format!("{}: messages delivered ({:.1} %)", r.scenario, r.stats.delivery_prob * 100.0);
    lines(
        &title,
        "time (hours)",
        "messages",
        &[
            Series { name: "created", color: "#999999", points: created },
            Series { name: "delivered", color: "#1f77b4", points: delivered },
        ],
    )
}

/// Buffer occupancy over time: mean and fullest node.
pub fn buffer(r: &Report) -> String {
    let h = |s: &crate::report::Sample| s.time / 3600.0;
    let avg = r.occupancy.iter().map(|s| (h(s), s.avg_pct)).collect();
    let max = r.occupancy.iter().map(|s| (h(s), s.max_pct)).collect();
    lines(
        &format!("{}: buffer occupancy", r.scenario),
        "time (hours)",
        "% of buffer in use",
        &[
            Series { name: "fullest node", color: "#d62728", points: max },
            Series { name: "mean over nodes", color: "#2ca02c", points: avg },
        ],
    )
}

/// Histogram of delivery latencies, in minutes, with the median marked.
pub fn latency(r: &Report) -> String {
    let mins: Vec<f64> = r.latencies.iter().map(|l| l / 60.0).collect();
    let max = mins.iter().copied().fold(0.0, f64::max);
    let (xtop, _) = ticks(max);
    let bins = 30usize;
    let mut counts = vec![0u64; bins];
    for m in &mins {
        let b = ((m / xtop) * bins as f64).floor() as usize;
        counts[b.min(bins - 1)] += 1;
    }
    let ymax = counts.iter().copied().max().unwrap_or(0) as f64;
    let mut o = String::new();
    let title = format!("{}: delivery latency ({} messages)", r.scenario, mins.len());
    let (xtop, ytop) = frame(&mut o, &title, "latency (minutes)", "messages", xtop, ymax);
    let (pw, ph) = (W - L - R, H - T - B);
    let bw = pw / bins as f64;
    for (i, c) in counts.iter().enumerate() {
        let hgt = *c as f64 / ytop * ph;
        let _ = writeln!(
            o,
            r##"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="#1f77b4" stroke="white"/>"##,
            L + i as f64 * bw,
            T + ph - hgt,
            bw,
            hgt
        );
    }
    if !mins.is_empty() {
        let med = r.stats.latency_med / 60.0;
        let x = L + med / xtop * pw;
        let _ = writeln!(
            o,
            r##"<line x1="{x:.1}" y1="{T}" x2="{x:.1}" y2="{}" stroke="#d62728" stroke-width="2" stroke-dasharray="6 4"/><text x="{:.1}" y="{}" fill="#d62728">median {:.1} min</text>"##,
            T + ph,
            x + 6.0,
            T + 16.0,
            med
        );
    }
    o.push_str("</svg>\n");
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round_and_cover_the_range() {
        let (top, t) = ticks(43.0);
        assert_eq!(top, 50.0);
        assert_eq!(t, [0.0, 10.0, 20.0, 30.0, 40.0, 50.0]);
        assert_eq!(ticks(0.0).0, 1.0);
    }
}

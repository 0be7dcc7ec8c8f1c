//! The archive's `index.html`: a static page a person opens from the archive directory in a browser.
//!
//! Plain HTML with relative links and no script, so it works from a file system, a USB stick or any static
//! web server. Camera names come from the network: everything from outside is HTML-escaped, and path
//! segments in links are percent-encoded.

use std::fmt::Write;

use crate::motion::BBox;

/// What the page shows of one camera.
pub struct CameraSection {
    /// The camera's name.
    pub name: String,
    /// Frames stored, all days.
    pub frames_total: u64,
    /// Frames stored per day, newest day first.
    pub recent_days: Vec<(String, u64)>,
    /// Events, newest first.
    pub events: Vec<EventRow>,
    /// Events not shown because only the newest are listed.
    pub events_omitted: usize,
}

/// One event in a camera's table.
pub struct EventRow {
    /// ISO 8601 UTC.
    pub time_utc: String,
    /// Fraction of the frame that changed.
    pub score: f32,
    /// Where the motion was, in the frame's pixels.
    pub bbox: BBox,
    /// Thumbnail path relative to the page, as path segments.
    pub thumb: Vec<String>,
    /// Full frame path relative to the page, as path segments, if the frame is stored.
    pub frame: Option<Vec<String>>,
}

/// The whole page.
pub fn render(cameras: &[CameraSection]) -> String {
    let mut h = String::with_capacity(4096);
    h.push_str(concat!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n",
        "<title>Camera archive</title>\n<style>\n",
        "body{font-family:sans-serif;margin:1em 2em}table{border-collapse:collapse}",
        "td,th{border-bottom:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:middle}",
        "img{display:block}.num{text-align:right}\n",
        "</style>\n</head>\n<body>\n<h1>Camera archive</h1>\n",
        "<p>Times are UTC. Newest motion events first. Click a thumbnail for the full frame.</p>\n",
    ));
    if cameras.is_empty() {
        h.push_str("<p>Nothing stored yet.</p>\n");
    } else {
        h.push_str("<ul>\n");
        for (i, c) in cameras.iter().enumerate() {
            let _ = writeln!(
                h,
                "<li><a href=\"#cam{i}\">{}</a> ({} events)</li>",
                escape(&c.name),
                c.events.len() + c.events_omitted
            );
        }
        h.push_str("</ul>\n");
    }
    for (i, c) in cameras.iter().enumerate() {
        section(&mut h, i, c);
    }
    h.push_str("</body>\n</html>\n");
    h
}

fn section(h: &mut String, i: usize, c: &CameraSection) {
    let _ = writeln!(h, "<section id=\"cam{i}\">\n<h2>{}</h2>", escape(&c.name));
    let _ = write!(h, "<p>Frames stored: {}", c.frames_total);
    if !c.recent_days.is_empty() {
        let days: Vec<String> = c.recent_days.iter().map(|(d, n)| format!("{} {n}", escape(d))).collect();
        let _ = write!(h, " (recent days: {})", days.join(", "));
    }
    h.push_str("</p>\n");
    if c.events.is_empty() {
        h.push_str("<p>No motion events.</p>\n</section>\n");
        return;
    }
    h.push_str("<table>\n<tr><th>Time (UTC)</th><th>Score</th><th>Box (x, y, w&times;h)</th><th>Frame</th></tr>\n");
    for e in &c.events {
        let b = e.bbox;
        let alt = format!("{} {}", c.name, e.time_utc);
        let img = format!("<img src=\"{}\" alt=\"{}\" loading=\"lazy\">", href(&e.thumb), escape(&alt));
        let cell = match &e.frame {
            Some(frame) => format!("<a href=\"{}\">{img}</a>", href(frame)),
            None => format!("{img}(frame not stored)"),
        };
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td class=\"num\">{:.2}&nbsp;%</td><td>{}, {}, {}&times;{}</td><td>{cell}</td></tr>",
            escape(&e.time_utc),
            e.score * 100.0,
            b.x,
            b.y,
            b.w,
            b.h
        );
    }
    h.push_str("</table>\n");
    if c.events_omitted > 0 {
        let _ = writeln!(h, "<p>{} older events are in events.jsonl.</p>", c.events_omitted);
    }
    h.push_str("</section>\n");
}

/// Escapes text for element content and quoted attribute values.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// A relative URL from path segments: each percent-encoded (a name may hold ' ', '#', '%' or non-ASCII),
/// joined by '/'. Only unreserved characters stay as they are, which also makes the result safe in an
/// attribute.
fn href(segments: &[String]) -> String {
    let mut out = String::new();
    for (i, seg) in segments.iter().enumerate() {
        if i > 0 {
            out.push('/');
        }
        for &b in seg.as_bytes() {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
                out.push(b as char);
            } else {
                let _ = write!(out, "%{b:02X}");
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outside_text_is_escaped_and_links_are_encoded() {
        let page = render(&[CameraSection {
            name: "Garten <Süd> & 'Ost'".into(),
            frames_total: 3,
            recent_days: vec![("2024-07-01".into(), 3)],
            events: vec![EventRow {
                time_utc: "2024-07-01T12:00:00.000Z".into(),
                score: 0.0123,
                bbox: BBox { x: 1, y: 2, w: 3, h: 4 },
                thumb: vec!["Garten #1".into(), "thumbs".into(), "a.jpg".into()],
                frame: None,
            }],
            events_omitted: 0,
        }]);
        assert!(page.contains("Garten &lt;Süd&gt; &amp; &#39;Ost&#39;"));
        assert!(!page.contains("<Süd>"));
        assert!(page.contains("src=\"Garten%20%231/thumbs/a.jpg\""));
        assert!(page.contains("1.23&nbsp;%"));
        assert!(page.contains("(frame not stored)"));
        assert!(page.contains("Frames stored: 3 (recent days: 2024-07-01 3)"));
    }

    #[test]
    fn an_empty_archive_renders() {
        assert!(render(&[]).contains("Nothing stored yet."));
    }
}

//! Human-readable and JSON views of inspected bundles.

use std::fmt::Write as _;
use std::io::{self, Write};

use dtn_core::bpv7::admin::{AdminRecord, StatusAssertion, StatusReport, reason};
use dtn_core::bpv7::{BlockData, BlockFlags, BlockType, BundleFlags, CrcType};
use serde_json::{Value, json};

use crate::inspect::{ADMIN_RECORD_MAX, Inspected, PREVIEW_LEN};

/// One canonical block as shown: extension blocks carry their decoded content, the payload block only its
/// length (its bytes were streamed past).
struct BlockView<'a> {
    block_type: BlockType,
    number: u64,
    flags: BlockFlags,
    crc_type: CrcType,
    len: u64,
    content: Option<&'a BlockData>,
    data: &'a [u8],
}

fn blocks(b: &Inspected) -> Vec<BlockView<'_>> {
    let h = &b.header;
    let mut v: Vec<BlockView<'_>> = h
        .extension_blocks()
        .iter()
        .map(|blk| BlockView {
            block_type: blk.block_type(),
            number: blk.number(),
            flags: blk.flags(),
            crc_type: blk.crc_type(),
            len: blk.data().len() as u64,
            content: Some(blk.typed()),
            data: blk.data(),
        })
        .collect();
    v.push(BlockView {
        block_type: BlockType::PAYLOAD,
        number: 1,
        flags: h.payload_flags(),
        crc_type: h.payload_crc_type(),
        len: h.payload_len(),
        content: None,
        data: &[],
    });
    v
}

fn flags_text(bits: u64, names: &[&str]) -> String {
    if names.is_empty() { format!("{bits:#x} (none)") } else { format!("{bits:#x} ({})", names.join(", ")) }
}

/// `90061001` → `1d 1h 1m 1.001s`.
pub fn human_duration(ms: u64) -> String {
    if ms == 0 {
        return "0s".into();
    }
    let (days, rest) = (ms / 86_400_000, ms % 86_400_000);
    let (hours, rest) = (rest / 3_600_000, rest % 3_600_000);
    let (mins, rest) = (rest / 60_000, rest % 60_000);
    let (secs, millis) = (rest / 1000, rest % 1000);
    let mut parts = Vec::new();
    for (n, unit) in [(days, "d"), (hours, "h"), (mins, "m")] {
        if n > 0 {
            parts.push(format!("{n}{unit}"));
        }
    }
    match (secs, millis) {
        (0, 0) => {}
        (s, 0) => parts.push(format!("{s}s")),
        (s, m) => {
            let frac = format!("{m:03}");
            parts.push(format!("{s}.{}s", frac.trim_end_matches('0')));
        }
    }
    parts.join(" ")
}

fn hex(data: &[u8]) -> String {
    data.iter().fold(String::with_capacity(data.len() * 2), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn hexdump(out: &mut impl Write, data: &[u8], indent: &str) -> io::Result<()> {
    for (i, row) in data.chunks(16).enumerate() {
        let mut hex = String::with_capacity(48);
        for (j, b) in row.iter().enumerate() {
            let sep = if j == 8 { "  " } else { " " };
            let _ = write!(hex, "{}{b:02x}", if j == 0 { "" } else { sep });
        }
        let ascii: String =
            row.iter().map(|&b| if b.is_ascii_graphic() || b == b' ' { b as char } else { '.' }).collect();
        writeln!(out, "{indent}{:04x}  {hex:<49} |{ascii}|", i * 16)?;
    }
    Ok(())
}

fn block_content_text(v: &BlockView<'_>) -> String {
    match v.content {
        None => String::new(),
        Some(BlockData::PreviousNode(eid)) => format!("node {eid}"),
        Some(BlockData::BundleAge(ms)) => format!("age {ms} ms ({})", human_duration(*ms)),
        Some(BlockData::HopCount(hc)) => format!("hop count {} of limit {}", hc.count, hc.limit),
        Some(BlockData::Payload) => String::new(),
        Some(BlockData::Opaque) => {
            let shown = &v.data[..v.data.len().min(16)];
            let more = if v.data.len() > shown.len() { "…" } else { "" };
            format!("data {}{more}", hex(shown))
        }
    }
}

fn crc_text(c: CrcType) -> String {
    format!("{} ({c})", c.code())
}

/// Prints a bundle for people.
pub fn text(out: &mut impl Write, b: &Inspected) -> io::Result<()> {
    let h = &b.header;
    let p = h.primary();
    writeln!(out, "bundle {} at byte {} ({} bytes)", b.index, b.offset, b.length)?;
    writeln!(out, "  id            {}", h.id())?;
    writeln!(out, "  version       7")?;
    writeln!(out, "  flags         {}", flags_text(p.flags.0, &p.flags.names()))?;
    writeln!(out, "  crc type      {}", crc_text(p.crc_type))?;
    writeln!(out, "  destination   {}", p.destination)?;
    writeln!(out, "  source        {}", p.source)?;
    writeln!(out, "  report-to     {}", p.report_to)?;
    if p.creation.time.0 == 0 {
        writeln!(out, "  created       {}, sequence {}", p.creation.time, p.creation.sequence)?;
    } else {
        writeln!(
            out,
            "  created       {} (DTN time {} ms), sequence {}",
            p.creation.time, p.creation.time.0, p.creation.sequence
        )?;
    }
    writeln!(out, "  lifetime      {} ms ({})", p.lifetime_ms, human_duration(p.lifetime_ms))?;
    match p.fragment {
        Some(f) => writeln!(out, "  fragment      offset {}, total ADU length {}", f.offset, f.total_adu_len)?,
        None => writeln!(out, "  fragment      no")?,
    }
    let views = blocks(b);
    writeln!(out, "  blocks        {}", views.len())?;
    for v in &views {
        let kind = format!("type {} ({})", v.block_type.0, v.block_type.name());
        let flags = flags_text(v.flags.0, &v.flags.names());
        writeln!(
            out,
            "    block {:<3} {kind:<24} flags {flags}  crc {}  len {}",
            v.number,
            crc_text(v.crc_type),
            v.len
        )?;
        let content = block_content_text(v);
        if !content.is_empty() {
            writeln!(out, "              {content}")?;
        }
    }
    let len = h.payload_len();
    let unit = if len == 1 { "byte" } else { "bytes" };
    writeln!(out, "  payload       {len} {unit}")?;
    let preview = &b.payload_head[..b.payload_head.len().min(PREVIEW_LEN)];
    hexdump(out, preview, "    ")?;
    if len > preview.len() as u64 {
        writeln!(out, "    … {} more bytes", len - preview.len() as u64)?;
    }
    if p.flags.contains(BundleFlags::ADMIN_RECORD) {
        admin_text(out, b)?;
    }
    Ok(())
}

fn assertion_text(a: &StatusAssertion) -> String {
    match (a.asserted, a.time) {
        (false, _) => "no".into(),
        (true, None) => "yes".into(),
        (true, Some(t)) => format!("yes, at {t}"),
    }
}

fn subject_text(r: &StatusReport) -> String {
    let mut s = format!("{} {} {}", r.source, r.creation.time.0, r.creation.sequence);
    if let Some((off, len)) = r.fragment {
        let _ = write!(s, " fragment {off}+{len}");
    }
    s
}

/// The payload decoded as an administrative record, or why it could not be.
fn admin_record(b: &Inspected) -> Result<AdminRecord, String> {
    let len = b.header.payload_len();
    if len > ADMIN_RECORD_MAX as u64 {
        return Err(format!("not decoded: {len}-byte payload exceeds the {ADMIN_RECORD_MAX}-byte limit for records"));
    }
    AdminRecord::decode(&b.payload_head).map_err(|e| format!("malformed: {e}"))
}

fn admin_text(out: &mut impl Write, b: &Inspected) -> io::Result<()> {
    match admin_record(b) {
        Err(why) => writeln!(out, "  admin record  {why}"),
        Ok(AdminRecord::Other { record_type, content }) => writeln!(
            out,
            "  admin record  type {record_type}, content ({} bytes) {}",
            content.len(),
            hex(&content[..content.len().min(32)])
        ),
        Ok(AdminRecord::StatusReport(r)) => {
            writeln!(out, "  admin record  bundle status report")?;
            writeln!(out, "    received    {}", assertion_text(&r.received))?;
            writeln!(out, "    forwarded   {}", assertion_text(&r.forwarded))?;
            writeln!(out, "    delivered   {}", assertion_text(&r.delivered))?;
            writeln!(out, "    deleted     {}", assertion_text(&r.deleted))?;
            writeln!(out, "    reason      {} ({})", r.reason, reason::name(r.reason))?;
            writeln!(out, "    subject     {}", subject_text(&r))
        }
    }
}

fn assertion_json(a: &StatusAssertion) -> Value {
    json!({ "asserted": a.asserted, "time": a.time.map(|t| t.0) })
}

fn admin_json(b: &Inspected) -> Value {
    match admin_record(b) {
        Err(why) => json!({ "error": why }),
        Ok(AdminRecord::Other { record_type, content }) => {
            json!({ "record_type": record_type, "content_hex": hex(&content) })
        }
        Ok(AdminRecord::StatusReport(r)) => {
            let mut subject = json!({
                "source": r.source.to_string(),
                "creation_timestamp": [r.creation.time.0, r.creation.sequence],
            });
            if let Some((off, len)) = r.fragment {
                subject["fragment_offset"] = json!(off);
                subject["fragment_len"] = json!(len);
            }
            json!({
                "record_type": 1,
                "status_report": {
                    "received": assertion_json(&r.received),
                    "forwarded": assertion_json(&r.forwarded),
                    "delivered": assertion_json(&r.delivered),
                    "deleted": assertion_json(&r.deleted),
                    "reason": r.reason,
                    "subject": subject,
                },
            })
        }
    }
}

/// One bundle as a JSON object (printed on one line).
pub fn json(b: &Inspected) -> Value {
    let h = &b.header;
    let p = h.primary();
    let mut primary = json!({
        "version": 7,
        "flags": p.flags.0,
        "flag_names": p.flags.names(),
        "crc_type": p.crc_type.code(),
        "destination": p.destination.to_string(),
        "source": p.source.to_string(),
        "report_to": p.report_to.to_string(),
        "creation_timestamp": [p.creation.time.0, p.creation.sequence],
        "lifetime": p.lifetime_ms,
    });
    if let Some(f) = p.fragment {
        primary["fragment_offset"] = json!(f.offset);
        primary["total_adu_length"] = json!(f.total_adu_len);
    }
    let blocks: Vec<Value> = blocks(b)
        .iter()
        .map(|v| {
            let mut o = json!({
                "type": v.block_type.0,
                "name": v.block_type.name(),
                "number": v.number,
                "flags": v.flags.0,
                "crc_type": v.crc_type.code(),
                "len": v.len,
            });
            match v.content {
                Some(BlockData::PreviousNode(eid)) => o["previous_node"] = json!(eid.to_string()),
                Some(BlockData::BundleAge(ms)) => o["bundle_age"] = json!(ms),
                Some(BlockData::HopCount(hc)) => {
                    o["hop_count"] = json!({ "limit": hc.limit, "count": hc.count });
                }
                _ => {}
            }
            o
        })
        .collect();
    let mut v = json!({
        "index": b.index,
        "offset": b.offset,
        "length": b.length,
        "id": h.id().to_string(),
        "primary": primary,
        "blocks": blocks,
        "payload_len": h.payload_len(),
    });
    if p.flags.contains(BundleFlags::ADMIN_RECORD) {
        v["admin_record"] = admin_json(b);
    }
    v
}

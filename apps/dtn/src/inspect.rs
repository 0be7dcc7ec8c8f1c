//! `dtn inspect`: walks a file or stream of concatenated bundles with the streaming decoder, so memory use
//! does not depend on payload sizes.

use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow};
use dtn_core::bpv7::{BundleFlags, BundleHeader, Limits, PayloadSink, StreamDecoder, StreamError};

use crate::BadInput;
use crate::render;

#[derive(clap::Args)]
pub struct InspectArgs {
    /// Print one JSON object per bundle, one per line
    #[arg(long)]
    json: bool,
    /// Bundle file, or `-` for standard input
    #[arg(value_name = "FILE|-")]
    input: PathBuf,
}

const CHUNK: usize = 64 << 10;
/// Payload bytes kept for the preview.
pub const PREVIEW_LEN: usize = 64;
/// Payload bytes kept for an administrative record; real records are a few dozen bytes, so a larger
/// payload is reported rather than decoded.
pub const ADMIN_RECORD_MAX: usize = 64 << 10;

/// A bundle as far as `inspect` keeps it.
pub struct Inspected {
    /// 1-based position in the input.
    pub index: u64,
    /// Offset of the bundle's first byte in the input.
    pub offset: u64,
    /// Encoded length of the bundle.
    pub length: u64,
    pub header: BundleHeader,
    /// The first payload bytes: [`PREVIEW_LEN`], or up to [`ADMIN_RECORD_MAX`] for administrative records.
    pub payload_head: Vec<u8>,
}

/// Counts payload bytes and keeps only the first few.
#[derive(Default)]
struct PayloadProbe {
    len: u64,
    keep: usize,
    head: Vec<u8>,
}

impl PayloadSink for PayloadProbe {
    fn on_header(&mut self, header: &BundleHeader) -> io::Result<()> {
        let admin = header.primary().flags.contains(BundleFlags::ADMIN_RECORD);
        self.keep =
            if admin && header.payload_len() <= ADMIN_RECORD_MAX as u64 { ADMIN_RECORD_MAX } else { PREVIEW_LEN };
        Ok(())
    }

    fn on_payload(&mut self, chunk: &[u8]) -> io::Result<()> {
        self.len += chunk.len() as u64;
        let room = self.keep.saturating_sub(self.head.len()).min(chunk.len());
        self.head.extend_from_slice(&chunk[..room]);
        Ok(())
    }
}

/// Why a walk over the input stopped before its end.
enum WalkError {
    /// Reading the input failed.
    Read(io::Error),
    /// The consumer of decoded bundles failed (writing the output).
    Emit(io::Error),
    /// Bundle `index` (1-based) is invalid; `offset` is absolute in the input.
    Invalid { index: u64, offset: u64, message: String },
    /// No byte at all.
    Empty,
}

/// Decodes every bundle in `input`, handing each to `emit` as soon as it is complete. Returns how many.
fn walk(mut input: impl Read, mut emit: impl FnMut(Inspected) -> io::Result<()>) -> Result<u64, WalkError> {
    let mut decoder = StreamDecoder::new(Limits::default());
    let mut probe = PayloadProbe::default();
    let mut buf = vec![0u8; CHUNK];
    let mut count = 0u64;
    let mut start = 0u64;
    let mut total = 0u64;
    let invalid = |index: u64, offset: u64, message: String| WalkError::Invalid { index, offset, message };
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(WalkError::Read(e)),
        };
        total += n as u64;
        let mut rest = &buf[..n];
        while !rest.is_empty() {
            let feed = match decoder.feed(rest, &mut probe) {
                Ok(feed) => feed,
                // The kind alone: the error's own Display carries a bundle-relative offset, which would
                // contradict the absolute one reported here.
                Err(StreamError::Decode(e)) => {
                    return Err(invalid(count + 1, start + e.offset as u64, e.kind.to_string()));
                }
                Err(e @ StreamError::Sink(_)) => {
                    return Err(invalid(count + 1, start + decoder.position(), e.to_string()));
                }
            };
            rest = &rest[feed.consumed..];
            if !feed.done {
                if feed.consumed == 0 {
                    // Cannot happen with the current decoder; guards against spinning forever if it did.
                    return Err(invalid(count + 1, start + decoder.position(), "decoder made no progress".into()));
                }
                continue;
            }
            let length = decoder.position();
            let Some(header) = decoder.take_header() else {
                return Err(invalid(count + 1, start, "decoder finished without a header".into()));
            };
            count += 1;
            let probe = std::mem::take(&mut probe);
            debug_assert_eq!(probe.len, header.payload_len());
            emit(Inspected { index: count, offset: start, length, header, payload_head: probe.head })
                .map_err(WalkError::Emit)?;
            start += length;
            decoder.reset();
        }
    }
    if let Err(e) = decoder.finish() {
        // A truncated bundle ends where the input ends. StreamDecoder::position() (and so the offset
        // finish() reports) lags behind while it waits for the rest of a large extension block, so the
        // input length is the reliable offset here.
        return Err(invalid(count + 1, total, e.kind.to_string()));
    }
    if count == 0 {
        return Err(WalkError::Empty);
    }
    Ok(count)
}

pub fn run(args: &InspectArgs) -> Result<ExitCode> {
    let (name, input): (String, Box<dyn Read>) = if args.input.as_os_str() == "-" {
        ("standard input".into(), Box::new(io::stdin().lock()))
    } else {
        let file = File::open(&args.input).with_context(|| format!("cannot open {}", args.input.display()))?;
        (args.input.display().to_string(), Box::new(file))
    };
    let mut out = BufWriter::new(io::stdout().lock());
    let json = args.json;
    let walked = walk(input, |bundle| {
        if json {
            writeln!(out, "{}", render::json(&bundle))?;
        } else {
            if bundle.index > 1 {
                writeln!(out)?;
            }
            render::text(&mut out, &bundle)?;
        }
        // Flushing per bundle keeps the output in step with the input when following a live stream.
        out.flush()
    });
    // Whatever was decoded must reach stdout before the error reaches stderr.
    let flushed = out.flush();
    match walked {
        Ok(_) => {}
        Err(WalkError::Emit(e)) => return output_failure(e),
        Err(WalkError::Read(e)) => return Err(anyhow!(e).context(format!("reading {name}"))),
        Err(WalkError::Invalid { index, offset, message }) => {
            return Err(BadInput(format!("bundle {index} at byte {offset}: {message}")).into());
        }
        Err(WalkError::Empty) => {
            return Err(BadInput(format!("{name} is empty: no bundle to inspect")).into());
        }
    }
    match flushed {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(e) => output_failure(e),
    }
}

/// A closed pipe (`dtn inspect big | head`) means the reader has seen enough: stop quietly, like other
/// filters do.
fn output_failure(e: io::Error) -> Result<ExitCode> {
    if e.kind() == io::ErrorKind::BrokenPipe {
        Ok(ExitCode::SUCCESS)
    } else {
        Err(anyhow!(e).context("writing to standard output"))
    }
}

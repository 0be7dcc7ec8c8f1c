//! `dtn bundle create`: builds one bundle with `BundleBuilder`.

use std::fs::{self, File};
use std::io::{self, BufWriter, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, anyhow};
use clap::ValueEnum;
use dtn_core::bpv7::{
    BundleBuilder, BundleFlags, CrcType, CreationTimestamp, DecodeError, DtnTime, Eid, Limits, StreamEncoder,
};

use crate::BadInput;

#[derive(clap::Args)]
pub struct CreateArgs {
    /// Source node ID, e.g. dtn://node-a/ or ipn:1.0 (dtn:none for an anonymous bundle)
    #[arg(long, value_name = "EID", value_parser = parse_eid)]
    source: Eid,
    /// Destination endpoint, e.g. dtn://node-b/inbox or ipn:2.1
    #[arg(long, value_name = "EID", value_parser = parse_eid)]
    destination: Eid,
    /// Endpoint for status reports [default: the source]
    #[arg(long, value_name = "EID", value_parser = parse_eid)]
    report_to: Option<Eid>,
    /// Lifetime: milliseconds, or a number with a unit: ms, s, m, h, d
    #[arg(long, value_name = "DURATION", default_value = "1d", value_parser = parse_lifetime)]
    lifetime: u64,
    /// CRC of the primary block, and of the other blocks unless --block-crc is given
    #[arg(long, value_name = "16|32c", default_value = "32c", value_parser = parse_primary_crc)]
    crc: CrcType,
    /// CRC of the canonical blocks (extension and payload blocks) [default: as --crc]
    #[arg(long, value_name = "none|16|32c", value_parser = parse_crc)]
    block_crc: Option<CrcType>,
    /// Payload file, or `-` for standard input
    #[arg(long, value_name = "FILE|-", default_value = "-")]
    payload: PathBuf,
    /// Output file, or `-` for standard output
    #[arg(long, short, value_name = "FILE|-", default_value = "-")]
    output: PathBuf,
    /// Add a hop-count block with this hop limit (1-255)
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u8).range(1..))]
    hop_limit: Option<u8>,
    /// Creation timestamp sequence number
    #[arg(long, value_name = "N", default_value_t = 0)]
    sequence: u64,
    /// Creation time: now, 0 (no clock: a bundle-age block is added), or DTN time in ms since
    /// 2000-01-01T00:00:00Z
    #[arg(long, value_name = "now|0|MS", default_value = "now", value_parser = parse_creation_time)]
    creation_time: CreationTime,
    /// Set the must-not-fragment flag (always set for a dtn:none source)
    #[arg(long)]
    must_not_fragment: bool,
    /// Ask the destination application to acknowledge receipt
    #[arg(long)]
    app_ack: bool,
    /// Ask for the time of each reported event in status reports
    #[arg(long)]
    status_time: bool,
    /// Request status reports (comma-separated)
    #[arg(long, value_name = "KIND,...", value_delimiter = ',')]
    report: Vec<ReportKind>,
}

#[derive(Clone, Copy, ValueEnum)]
enum ReportKind {
    Reception,
    Forwarding,
    Delivery,
    Deletion,
    All,
}

impl ReportKind {
    fn flag(self) -> BundleFlags {
        match self {
            ReportKind::Reception => BundleFlags::REPORT_RECEPTION,
            ReportKind::Forwarding => BundleFlags::REPORT_FORWARDING,
            ReportKind::Delivery => BundleFlags::REPORT_DELIVERY,
            ReportKind::Deletion => BundleFlags::REPORT_DELETION,
            ReportKind::All => BundleFlags::ALL_REPORTS,
        }
    }
}

#[derive(Clone, Copy)]
enum CreationTime {
    Now,
    Dtn(u64),
}

fn parse_eid(s: &str) -> Result<Eid, String> {
    s.parse::<Eid>().map_err(|e| e.to_string())
}

fn parse_crc(s: &str) -> Result<CrcType, String> {
    match s.to_ascii_lowercase().as_str() {
        "none" | "0" => Ok(CrcType::None),
        "16" | "crc16" | "crc-16" => Ok(CrcType::Crc16),
        "32c" | "crc32c" | "crc-32c" => Ok(CrcType::Crc32c),
        _ => Err("expected none, 16 or 32c".into()),
    }
}

fn parse_primary_crc(s: &str) -> Result<CrcType, String> {
    match parse_crc(s)? {
        CrcType::None => Err("the primary block needs a CRC (RFC 9171 §4.3.1); \
                              use --block-crc none to omit the CRCs of the other blocks"
            .into()),
        crc => Ok(crc),
    }
}

fn parse_lifetime(s: &str) -> Result<u64, String> {
    let digits = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(digits);
    let scale: u64 = match unit {
        "" | "ms" => 1,
        "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err("expected milliseconds or a number with unit ms, s, m, h or d".into()),
    };
    let n: u64 = num.parse().map_err(|_| "expected milliseconds or a number with unit ms, s, m, h or d".to_string())?;
    n.checked_mul(scale).ok_or_else(|| "lifetime too large".to_string())
}

fn parse_creation_time(s: &str) -> Result<CreationTime, String> {
    if s == "now" {
        return Ok(CreationTime::Now);
    }
    s.parse().map(CreationTime::Dtn).map_err(|_| "expected now, 0 or a DTN time in milliseconds".into())
}

fn dtn_now() -> Result<u64> {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).context("system clock is before 1970")?;
    let unix_ms = u64::try_from(since.as_millis()).context("system clock out of range")?;
    let t = DtnTime::from_unix_ms(unix_ms).0;
    if t == 0 {
        // DTN time 0 would silently mean "no clock" and change the bundle's shape.
        anyhow::bail!("system clock is before 2000-01-01; pass --creation-time explicitly");
    }
    Ok(t)
}

fn builder(args: &CreateArgs) -> Result<BundleBuilder> {
    let time = match args.creation_time {
        CreationTime::Now => dtn_now()?,
        CreationTime::Dtn(t) => t,
    };
    let mut flags = BundleFlags::default();
    // BundleBuilder::new sets this for anonymous sources, but flags() replaces it; RFC 9171 §4.2.3 needs it.
    if args.must_not_fragment || args.source.is_null() {
        flags |= BundleFlags::MUST_NOT_FRAGMENT;
    }
    if args.app_ack {
        flags |= BundleFlags::APP_ACK_REQUESTED;
    }
    if args.status_time {
        flags |= BundleFlags::STATUS_TIME_REQUESTED;
    }
    for r in &args.report {
        flags |= r.flag();
    }
    let mut b = BundleBuilder::new(args.source.clone(), args.destination.clone())
        .creation(CreationTimestamp::new(time, args.sequence))
        .lifetime_ms(args.lifetime)
        .flags(flags)
        .primary_crc_type(args.crc)
        .block_crc_type(args.block_crc.unwrap_or(args.crc));
    if let Some(eid) = &args.report_to {
        b = b.report_to(eid.clone());
    }
    if let Some(limit) = args.hop_limit {
        b = b.hop_limit(limit);
    }
    Ok(b)
}

fn build_failed(e: &DecodeError) -> anyhow::Error {
    // The offset is meaningless for a bundle being built; the rule is what the user needs.
    BadInput(format!("cannot build bundle: {}", e.kind)).into()
}

enum Payload {
    Memory(Vec<u8>),
    /// A regular file, streamed; its length is announced in the header before any byte is read.
    File(File, u64),
}

fn open_payload(path: &Path) -> Result<Payload> {
    if path.as_os_str() == "-" {
        let mut data = Vec::new();
        io::stdin().lock().read_to_end(&mut data).context("reading payload from standard input")?;
        return Ok(Payload::Memory(data));
    }
    let mut file = File::open(path).with_context(|| format!("cannot open payload {}", path.display()))?;
    let meta = file.metadata().with_context(|| format!("cannot stat payload {}", path.display()))?;
    if meta.is_file() {
        return Ok(Payload::File(file, meta.len()));
    }
    // Pipes and devices have no length to announce up front.
    let mut data = Vec::new();
    file.read_to_end(&mut data).with_context(|| format!("reading payload {}", path.display()))?;
    Ok(Payload::Memory(data))
}

/// Prefixes I/O errors with what was being read or written, so that a failure inside
/// `StreamEncoder::encode` says which side failed.
struct Labeled<T> {
    inner: T,
    what: String,
}

fn label(e: io::Error, what: &str) -> io::Error {
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

impl<R: Read> Read for Labeled<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf).map_err(|e| label(e, &self.what))
    }
}

impl<W: Write> Write for Labeled<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.write(buf).map_err(|e| label(e, &self.what))
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush().map_err(|e| label(e, &self.what))
    }
}

fn write_bundle(
    args: &CreateArgs,
    builder: BundleBuilder,
    payload: Payload,
    out: impl Write,
    out_name: &str,
) -> Result<()> {
    let mut out = Labeled { inner: BufWriter::new(out), what: format!("writing {out_name}") };
    match payload {
        Payload::Memory(data) => {
            let bundle = builder.payload(data).build().map_err(|e| build_failed(&e))?;
            out.write_all(&bundle.to_vec())?;
        }
        Payload::File(file, len) => {
            let header = builder.build_header(len, &Limits::default()).map_err(|e| build_failed(&e))?;
            let file = Labeled { inner: file, what: format!("reading payload {}", args.payload.display()) };
            StreamEncoder::encode(&header, file, &mut out).map_err(|e| {
                if e.kind() == io::ErrorKind::InvalidInput {
                    anyhow!("payload {} changed size while being read: {e}", args.payload.display())
                } else {
                    anyhow!(e)
                }
            })?;
        }
    }
    out.flush()?;
    Ok(())
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (fs::canonicalize(a), fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

pub fn run(args: &CreateArgs) -> Result<ExitCode> {
    let to_stdout = args.output.as_os_str() == "-";
    // Checked before reading the payload, so nothing is consumed from stdin for a command that cannot
    // succeed.
    if to_stdout && io::stdout().is_terminal() {
        return Err(BadInput(
            "refusing to write a binary bundle to a terminal; use --output FILE or redirect stdout".into(),
        )
        .into());
    }
    if !to_stdout && args.payload.as_os_str() != "-" && same_file(&args.payload, &args.output) {
        // Creating the output would truncate the payload before it is read.
        return Err(BadInput(format!("--output {} is the payload file", args.output.display())).into());
    }
    let builder = builder(args)?;
    // Building once without payload reports bad options before any file is read or created.
    builder.clone().build().map_err(|e| build_failed(&e))?;
    let payload = open_payload(&args.payload)?;
    if to_stdout {
        return write_bundle(args, builder, payload, io::stdout().lock(), "standard output")
            .map(|()| ExitCode::SUCCESS);
    }
    let name = args.output.display().to_string();
    let file = File::create(&args.output).with_context(|| format!("cannot create {name}"))?;
    match write_bundle(args, builder, payload, file, &name) {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(e) => {
            // A partial bundle is worse than none: it would fail to decode later, far from the cause.
            let _ = fs::remove_file(&args.output);
            Err(e)
        }
    }
}

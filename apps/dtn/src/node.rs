//! Commands that talk to a running node through its application API (docs/api.md).

use std::fs;
use std::io::{self, Read, Seek, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use dtn_client::{Client, ClientError, SendOptions};

use crate::BadInput;

/// Where the node's API is; the same flag and default as dtnd's.
#[derive(Args, Debug, Clone)]
pub struct ApiArg {
    /// The node's API address.
    #[arg(long, default_value = dtn_client::DEFAULT_API)]
    api: SocketAddr,
}

impl ApiArg {
    pub(crate) fn client(&self) -> Client {
        Client::new(self.api)
    }
}

/// Errors the node reports about the request are bad input (exit 2); the rest is the environment (exit 1).
pub(crate) fn client_err(e: ClientError) -> anyhow::Error {
    match e {
        ClientError::Node(m) => BadInput(m).into(),
        other => other.into(),
    }
}

#[derive(Args, Debug)]
pub struct SendArgs {
    #[command(flatten)]
    api: ApiArg,
    /// Destination endpoint, e.g. dtn://collector/~data or ipn:2.1.
    #[arg(long)]
    dst: String,
    /// Payload file, or - (the default) for standard input.
    file: Option<PathBuf>,
    /// Lifetime in seconds (default: the node's).
    #[arg(long)]
    lifetime: Option<u64>,
    /// Priority, 0 (bulk) to 255; 64 is normal.
    #[arg(long)]
    priority: Option<u8>,
    /// Status reports wanted: comma-separated received, forwarded, delivered, deleted.
    #[arg(long)]
    report: Option<String>,
    /// Where status reports go (default: the source).
    #[arg(long)]
    report_to: Option<String>,
}

/// `dtn send`: returns once the bundle is durable in the node's store, and prints its ID.
pub fn send(a: &SendArgs) -> Result<ExitCode> {
    let opts = SendOptions {
        lifetime_s: a.lifetime,
        priority: a.priority,
        report: a.report.clone(),
        report_to: a.report_to.clone(),
        source: None,
    };
    let client = a.api.client();
    let sent = match a.file.as_deref().filter(|p| *p != Path::new("-")) {
        Some(path) => {
            let f = fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
            let len = f.metadata().with_context(|| format!("reading {}", path.display()))?.len();
            // A bar only where someone watches and the wait is noticeable.
            let bar = if len >= 8 << 20 && io::IsTerminal::is_terminal(&io::stderr()) {
                let bar = indicatif::ProgressBar::new(len);
                bar.set_style(
                    indicatif::ProgressStyle::with_template("{bytes}/{total_bytes} {bar:40} {bytes_per_sec} {eta}")
                        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
                );
                Some(bar)
            } else {
                None
            };
            let r = match &bar {
                Some(b) => client.send(&a.dst, b.wrap_read(f), Some(len), &opts),
                None => client.send(&a.dst, f, Some(len), &opts),
            };
            if let Some(b) = bar {
                b.finish_and_clear();
            }
            r
        }
        None => {
            // The node stores a large payload part by part and needs its length first: a pipe's length is
            // known only at its end, so anything beyond one part waits in a temporary file.
            let mut head = Vec::new();
            io::stdin().lock().take(SPOOL_OVER + 1).read_to_end(&mut head).context("reading standard input")?;
            if head.len() as u64 <= SPOOL_OVER {
                let len = head.len() as u64;
                client.send(&a.dst, io::Cursor::new(head), Some(len), &opts)
            } else {
                let (f, len) = spool(&head)?;
                client.send(&a.dst, f, Some(len), &opts)
            }
        }
    }
    .map_err(client_err)?;
    println!("{}", sent.id);
    Ok(ExitCode::SUCCESS)
}

/// Standard input longer than this is spooled to a temporary file before it is sent.
const SPOOL_OVER: u64 = 1 << 20;

/// Copies `head` and the rest of standard input to an unnamed temporary file; returns it rewound.
fn spool(head: &[u8]) -> Result<(fs::File, u64)> {
    let dir = std::env::temp_dir();
    let path = dir.join(format!("dtn-send-{}.spool", std::process::id()));
    let mut f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)
        .with_context(|| format!("creating {}", path.display()))?;
    // Unlinked at once: the file goes away with the process, however it ends.
    let _ = fs::remove_file(&path);
    f.write_all(head).context("spooling standard input")?;
    let rest = io::copy(&mut io::stdin().lock(), &mut f).context("spooling standard input")?;
    f.seek(io::SeekFrom::Start(0)).context("spooling standard input")?;
    Ok((f, head.len() as u64 + rest))
}

#[derive(Args, Debug)]
pub struct RecvArgs {
    #[command(flatten)]
    api: ApiArg,
    /// Endpoint to receive from (registered at the node first).
    #[arg(long)]
    endpoint: String,
    /// Stop after this many bundles (default: keep receiving).
    #[arg(long)]
    count: Option<u64>,
    /// Write one file per payload into this directory (named by bundle ID) instead of standard output.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Give up after this many seconds without a bundle (default: wait forever).
    #[arg(long)]
    timeout: Option<u64>,
}

/// `dtn recv`: each payload is written (and synced, for --out) before the node is told it was delivered,
/// so a crash in between means it is delivered again, never lost.
pub fn recv(a: &RecvArgs) -> Result<ExitCode> {
    let client = a.api.client();
    client.register(&a.endpoint).map_err(client_err)?;
    if let Some(dir) = &a.out {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut got = 0u64;
    let mut idle = 0u64;
    while a.count.is_none_or(|c| got < c) {
        let Some(mut b) = client.recv_stream(&a.endpoint, Duration::from_secs(30), true).map_err(client_err)? else {
            idle += 30;
            if a.timeout.is_some_and(|t| idle >= t) {
                anyhow::bail!("no bundle for {} within {} s", a.endpoint, a.timeout.unwrap_or(0));
            }
            continue;
        };
        idle = 0;
        match &a.out {
            Some(dir) => {
                let path = dir.join(file_name(&b.id));
                write_synced(&path, &mut b.payload)?;
                eprintln!("{} from {} -> {}", b.id, b.source, path.display());
            }
            None => {
                let mut out = io::stdout().lock();
                io::copy(&mut b.payload, &mut out).context("writing the payload to standard output")?;
                out.flush().context("writing to standard output")?;
            }
        }
        client.ack(&b.id).map_err(client_err)?;
        got += 1;
    }
    Ok(ExitCode::SUCCESS)
}

/// A bundle ID as a file name: anything but letters, digits and `.+-` becomes `_`.
fn file_name(id: &str) -> String {
    id.chars().map(|c| if c.is_ascii_alphanumeric() || ".+-".contains(c) { c } else { '_' }).collect()
}

/// Writes a file so that it is complete and durable once this returns (temporary name, sync, rename).
fn write_synced(path: &Path, data: &mut dyn Read) -> Result<()> {
    let tmp = path.with_extension("part");
    let mut f = fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    io::copy(data, &mut f).with_context(|| format!("writing {}", tmp.display()))?;
    f.sync_all().with_context(|| format!("syncing {}", tmp.display()))?;
    fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))?;
    if let Some(dir) = path.parent()
        && let Ok(d) = fs::File::open(dir)
    {
        let _ = d.sync_all();
    }
    Ok(())
}

#[derive(Args, Debug)]
pub struct ListArgs {
    #[command(flatten)]
    api: ApiArg,
    /// JSON output, for scripts.
    #[arg(long)]
    json: bool,
}

/// `dtn ls`: stored bundles.
pub fn ls(a: &ListArgs) -> Result<ExitCode> {
    let list = a.api.client().list().map_err(client_err)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&list)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("{:<48} {:<28} {:>10} {:>4} {:<10}", "ID", "DESTINATION", "SIZE", "PRIO", "CUSTODY");
    for b in &list {
        println!(
            "{:<48} {:<28} {:>10} {:>4} {:<10}",
            b["id"].as_str().unwrap_or("?"),
            b["destination"].as_str().unwrap_or("?"),
            b["size"],
            b["priority"],
            b["custody"].as_str().unwrap_or("?"),
        );
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Args, Debug)]
pub struct ShowArgs {
    #[command(flatten)]
    api: ApiArg,
    /// Bundle ID as `dtn ls` prints it.
    id: String,
}

/// `dtn show ID`: one stored bundle's metadata (JSON).
pub fn show(a: &ShowArgs) -> Result<ExitCode> {
    let v = a.api.client().show(&a.id).map_err(client_err)?;
    println!("{}", serde_json::to_string_pretty(&v)?);
    Ok(ExitCode::SUCCESS)
}

/// `dtn peers`: peers in contact.
pub fn peers(a: &ListArgs) -> Result<ExitCode> {
    let peers = a.api.client().peers().map_err(client_err)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&peers)?);
    } else {
        for p in &peers {
            let mut line = format!(
                "{}  {}  in flight: {}",
                p["node"].as_str().unwrap_or("?"),
                p["class"].as_str().unwrap_or("?"),
                p["in_flight"]
            );
            if let (Some(left), Some(per_day)) = (p["budget"]["left"].as_u64(), p["budget"]["per_day"].as_u64()) {
                line += &format!("  budget: {left} of {per_day} bytes left today");
            }
            println!("{line}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `dtn stats`: node counters.
pub fn stats(a: &ListArgs) -> Result<ExitCode> {
    let s = a.api.client().stats().map_err(client_err)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&s)?);
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(obj) = s.as_object() {
        for (k, v) in obj {
            match v.as_object() {
                Some(inner) => {
                    for (k2, v2) in inner {
                        println!("{k}.{k2}: {v2}");
                    }
                }
                None => println!("{k}: {v}"),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Args, Debug)]
pub struct ExportArgs {
    #[command(flatten)]
    api: ApiArg,
    /// Directory to write one `.bundle` file per stored bundle into.
    #[arg(long)]
    to: PathBuf,
}

/// `dtn export --to DIR`: every stored bundle, encoded, one file each (e.g. onto a USB stick).
pub fn export(a: &ExportArgs) -> Result<ExitCode> {
    let client = a.api.client();
    fs::create_dir_all(&a.to).with_context(|| format!("creating {}", a.to.display()))?;
    let list = client.list().map_err(client_err)?;
    let mut n = 0;
    for b in &list {
        let Some(id) = b["id"].as_str() else { continue };
        let bytes = match client.raw(id) {
            Ok(b) => b,
            // Delivered or expired since the listing: nothing to carry.
            Err(ClientError::Node(_)) => continue,
            Err(e) => return Err(e.into()),
        };
        write_synced(&a.to.join(format!("{}.bundle", file_name(id))), &mut &bytes[..])?;
        n += 1;
    }
    eprintln!("exported {n} bundles to {}", a.to.display());
    Ok(ExitCode::SUCCESS)
}

#[derive(Args, Debug)]
pub struct ImportArgs {
    #[command(flatten)]
    api: ApiArg,
    /// Directory of `.bundle` files (as `dtn export` writes them).
    dir: PathBuf,
}

/// `dtn import DIR`: stores each bundle as if a peer had sent it; bundles held already are skipped by the
/// node, so importing twice is harmless.
pub fn import(a: &ImportArgs) -> Result<ExitCode> {
    let client = a.api.client();
    let mut files: Vec<PathBuf> = fs::read_dir(&a.dir)
        .with_context(|| format!("reading {}", a.dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "bundle"))
        .collect();
    files.sort();
    let (mut ok, mut bad) = (0, 0);
    for path in &files {
        let mut bytes = Vec::new();
        fs::File::open(path)
            .and_then(|mut f| f.read_to_end(&mut bytes))
            .with_context(|| format!("reading {}", path.display()))?;
        match client.import(&bytes) {
            Ok(()) => ok += 1,
            Err(ClientError::Node(m)) => {
                eprintln!("{}: {m}", path.display());
                bad += 1;
            }
            Err(e) => return Err(e.into()),
        }
    }
    eprintln!("imported {ok} bundles from {}", a.dir.display());
    if bad > 0 {
        return Err(BadInput(format!("{bad} of {} files were not bundles the node could take", files.len())).into());
    }
    Ok(ExitCode::SUCCESS)
}

//! `dtn`: send and receive bundles through a running node, and inspect and create BPv7 (RFC 9171) bundles.
//!
//! Exit codes: 0 success, 1 environment failure (I/O), 2 bad input (arguments or bundle data).

mod camera;
mod collect;
mod create;
mod demo;
mod inspect;
mod node;
mod render;
mod station;

use std::fmt;
use std::process::ExitCode;

use clap::error::ErrorKind as ClapErrorKind;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "dtn", version, about = "Send, receive and inspect DTN bundles (BPv7, RFC 9171)")]
#[command(after_help = "Exit status: 0 success, 1 I/O failure, 2 invalid arguments or bundle data.")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Decode and print a bundle, or a stream of concatenated bundles
    ///
    /// Every bundle is fully validated against RFC 9171, CRCs included, with the default limits of a node
    /// (bundles up to 4 GiB). Payloads are streamed, not loaded: only a short preview is kept, or up to
    /// 64 KiB when the payload is an administrative record, which is then decoded.
    ///
    /// On invalid input the bundles before the bad one are printed, then a single line
    /// "error: bundle N at byte OFFSET: RULE" goes to stderr (N counts from 1, OFFSET from the start of
    /// the input) and the exit status is 2.
    Inspect(inspect::InspectArgs),
    /// Make bundles
    Bundle {
        #[command(subcommand)]
        command: BundleCommand,
    },
    /// Send a payload to an endpoint through the local node; prints the bundle ID once it is durable
    Send(node::SendArgs),
    /// Receive payloads for an endpoint from the local node (to standard output, or files with --out)
    Recv(node::RecvArgs),
    /// List the bundles the node stores
    Ls(node::ListArgs),
    /// Show one stored bundle
    Show(node::ShowArgs),
    /// List the peers in contact
    Peers(node::ListArgs),
    /// Show the node's counters
    Stats(node::ListArgs),
    /// Write every stored bundle to a directory (e.g. a USB stick carried to another node)
    Export(node::ExportArgs),
    /// Store the bundles of a directory written by `dtn export`
    Import(node::ImportArgs),
    /// Run a weather station: sample sensors and hand each batch to the local node for the collector
    Station(station::StationArgs),
    /// Collect sensor batches from the local node into an archive (the van), with a completeness report
    Collect(collect::CollectArgs),
    /// Send camera frames (JPEG, one bundle each) through the local node to the house node
    Camera(camera::CameraArgs),
    /// Store the frames cameras send in an archive, with motion events, thumbnails and an index page
    House(camera::HouseArgs),
    /// Run the whole story on this machine with real nodes
    Demo {
        #[command(subcommand)]
        command: demo::DemoCommand,
    },
}

#[derive(Subcommand)]
enum BundleCommand {
    /// Build one bundle from a payload
    ///
    /// The payload comes from --payload FILE, streamed through so its size does not matter, or from
    /// standard input, which is read into memory. The bundle goes to --output or to standard output,
    /// which must not be a terminal.
    ///
    /// CRCs: RFC 9171 requires a CRC on the primary block unless a block integrity block covers it,
    /// which this tool does not add, so --crc offers 16 and 32c only; --block-crc none leaves the other
    /// blocks without CRC.
    Create(create::CreateArgs),
}

/// A failure caused by what the user supplied (arguments or bundle data) rather than by the environment.
/// It is told apart from I/O failures only by its exit code (2 instead of 1).
#[derive(Debug)]
pub struct BadInput(pub String);

impl fmt::Display for BadInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BadInput {}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return clap_failure(e),
    };
    let result = match cli.command {
        Command::Inspect(args) => inspect::run(&args),
        Command::Bundle { command: BundleCommand::Create(args) } => create::run(&args),
        Command::Send(a) => node::send(&a),
        Command::Recv(a) => node::recv(&a),
        Command::Ls(a) => node::ls(&a),
        Command::Show(a) => node::show(&a),
        Command::Peers(a) => node::peers(&a),
        Command::Stats(a) => node::stats(&a),
        Command::Export(a) => node::export(&a),
        Command::Import(a) => node::import(&a),
        Command::Station(a) => station::run(&a),
        Command::Collect(a) => collect::run(&a),
        Command::Camera(a) => camera::camera(&a),
        Command::House(a) => camera::house(&a),
        Command::Demo { command } => demo::run(&command),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            // `{:#}` keeps the whole context chain on one line, so scripts can rely on a single stderr line.
            eprintln!("error: {e:#}");
            if e.downcast_ref::<BadInput>().is_some() { ExitCode::from(2) } else { ExitCode::from(1) }
        }
    }
}

/// Reports a command-line error. A bad option value is reported on one line (clap would add a blank line and
/// a hint); structural errors such as a missing argument keep clap's usage text, which is what helps there.
fn clap_failure(e: clap::Error) -> ExitCode {
    match e.kind() {
        ClapErrorKind::ValueValidation | ClapErrorKind::InvalidValue => {
            let text = e.render().to_string();
            let line = text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with("For more information"))
                .collect::<Vec<_>>()
                .join(" ");
            eprintln!("{line}");
            ExitCode::from(2)
        }
        _ => {
            // Help and version go to stdout with status 0; usage errors to stderr with status 2.
            let code = e.exit_code();
            let _ = e.print();
            ExitCode::from(u8::try_from(code).unwrap_or(2))
        }
    }
}

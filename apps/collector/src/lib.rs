//! The collector's archive (the van's disk).
//!
//! Every sensor batch handed over is written as rows of a CSV file per station and sensor
//! (`<dir>/<station>/<sensor>.csv`; camera stills as `<dir>/<station>/<sensor>/<batch>.jpg`) and recorded in
//! `<dir>/manifest.jsonl`, one line per batch. The manifest is the archive's memory: it says which batches
//! are in, so a batch delivered twice (a replica from another path, or a redelivery after a crash) is
//! counted as a duplicate and not written again, and the completeness report lists the gaps.
//!
//! Crash safety: [`Collector::sync`] makes the data files durable before the manifest lines that name them,
//! and the caller acknowledges deliveries only after it. At open, rows written after the last manifest line
//! of their file (a crash between the two) are cut off, so those batches are simply written again when the
//! node redelivers them.

mod report;
mod time;

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use dtn_sensor::{Batch, Clock, FormatError, SensorKind};
use serde::{Deserialize, Serialize};

pub use report::{Report, SensorReport, StationReport};

/// Why the archive could not take a batch.
#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    /// The payload is not a sensor batch we can read; the archive is unchanged.
    #[error(transparent)]
    Batch(#[from] FormatError),
    /// Disk trouble, with the file concerned.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The error.
        source: io::Error,
    },
    /// The archive's own files disagree (edited by hand, or a disk that lost synced data).
    #[error("archive {0}")]
    Corrupt(String),
}

fn io_err(context: impl Into<String>) -> impl FnOnce(io::Error) -> CollectError {
    let context = context.into();
    move |source| CollectError::Io { context, source }
}

/// What [`Collector::add`] did with a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Added {
    /// Written to the archive.
    Stored {
        /// Station.
        station: String,
        /// Sensor.
        sensor: String,
        /// Batch number.
        seq: u64,
        /// Readings written.
        readings: usize,
    },
    /// Already in the archive: not written again.
    Duplicate {
        /// Station.
        station: String,
        /// Sensor.
        sensor: String,
        /// Batch number.
        seq: u64,
    },
}

/// Where payloads that are not batches are kept.
pub const SET_ASIDE: &str = "rejected";

/// A delivered bundle for [`Collector::intake`].
#[derive(Debug, Clone, Copy)]
pub struct Delivered<'a> {
    /// Its bundle ID (names the file if the payload has to be set aside).
    pub id: &'a str,
    /// Its payload.
    pub payload: &'a [u8],
    /// When it was received, Unix ms.
    pub received_unix_ms: u64,
    /// Its age then, if it carries one (a station without a clock): see [`Batch::unix_times`].
    pub age_ms: Option<u64>,
}

/// What one [`Collector::intake`] did.
#[derive(Debug, Clone, Default)]
pub struct Intake {
    /// Batches written.
    pub stored: u64,
    /// Batches the archive had already.
    pub duplicates: u64,
    /// Readings written.
    pub readings: u64,
    /// Payload bytes taken (all items).
    pub bytes: u64,
    /// Stations heard from.
    pub stations: BTreeSet<String>,
    /// Payloads set aside, by bundle ID, with why.
    pub rejected: Vec<(String, String)>,
}

/// One manifest line.
#[derive(Debug, Serialize, Deserialize)]
struct Entry {
    station: String,
    sensor: String,
    kind: String,
    seq: u64,
    readings: u64,
    /// Payload bytes of the batch.
    bytes: u64,
    /// Length of the sensor's CSV file once this batch's rows were in it.
    csv_len: u64,
}

/// What the archive knows of one sensor.
#[derive(Debug, Clone)]
struct SensorState {
    kind: SensorKind,
    seen: BTreeSet<u64>,
    duplicates: u64,
    readings: u64,
    bytes: u64,
    csv_len: u64,
}

impl SensorState {
    fn new(kind: SensorKind) -> Self {
        SensorState { kind, seen: BTreeSet::new(), duplicates: 0, readings: 0, bytes: 0, csv_len: 0 }
    }
}

/// The archive, open for writing.
pub struct Collector {
    dir: PathBuf,
    sensors: BTreeMap<(String, String), SensorState>,
    files: BTreeMap<(String, String), BufWriter<File>>,
    /// Manifest lines of batches written but not yet synced.
    pending: Vec<u8>,
    /// Directories that gained entries (new files, directories or names) since the last sync: only they
    /// need syncing with it.
    new_entries: BTreeSet<PathBuf>,
    /// Data files written since the last sync.
    dirty: BTreeSet<(String, String)>,
    /// Images added since the last sync: the temporary name they are written under, their name, and the
    /// image while it waits to be written (by `sync`, several at once, or sooner when they grow large).
    staged: Vec<(PathBuf, PathBuf, Option<Vec<u8>>)>,
    /// Bytes of the images in `staged` not yet written.
    staged_bytes: usize,
    manifest: File,
    rejected: u64,
}

impl Collector {
    /// Opens (or creates) an archive in `dir`, picking up where a previous run (or a crash) left it.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Collector, CollectError> {
        let dir = dir.into();
        fs::create_dir_all(&dir).map_err(io_err(format!("creating {}", dir.display())))?;
        let manifest_path = dir.join("manifest.jsonl");
        let mut sensors: BTreeMap<(String, String), SensorState> = BTreeMap::new();
        let mut good_len = 0u64;
        if let Ok(f) = File::open(&manifest_path) {
            let mut r = BufReader::new(f);
            let mut line = String::new();
            loop {
                line.clear();
                let n = r.read_line(&mut line).map_err(io_err(format!("reading {}", manifest_path.display())))?;
                if n == 0 || !line.ends_with('\n') {
                    // End, or a line cut short by a crash: that batch was not acknowledged, so it comes again.
                    break;
                }
                let e: Entry = match serde_json::from_str(&line) {
                    Ok(e) => e,
                    Err(_) => break,
                };
                let kind: SensorKind = e.kind.parse()?;
                let s = sensors.entry((e.station, e.sensor)).or_insert_with(|| SensorState::new(kind));
                s.seen.insert(e.seq);
                s.readings += e.readings;
                s.bytes += e.bytes;
                s.csv_len = e.csv_len;
                good_len += n as u64;
            }
        }
        let manifest = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&manifest_path)
            .map_err(io_err(format!("opening {}", manifest_path.display())))?;
        manifest.set_len(good_len).map_err(io_err(format!("trimming {}", manifest_path.display())))?;
        // Payloads set aside in earlier runs still count.
        let rejected = fs::read_dir(dir.join(SET_ASIDE))
            .map(|d| d.filter_map(Result::ok).filter(|e| e.file_name().to_string_lossy().ends_with(".bin")).count())
            .unwrap_or(0) as u64;
        // The archive directory and manifest may be new: their names are made durable with the first sync.
        let new_entries = [parent_of(&dir), Some(dir.clone())].into_iter().flatten().collect();
        let mut c = Collector {
            dir,
            sensors,
            files: BTreeMap::new(),
            pending: Vec::new(),
            new_entries,
            dirty: BTreeSet::new(),
            staged: Vec::new(),
            staged_bytes: 0,
            manifest,
            rejected,
        };
        c.trim_data_files()?;
        Ok(c)
    }

    /// Cuts rows written after the last manifest line of their file.
    fn trim_data_files(&mut self) -> Result<(), CollectError> {
        for ((station, sensor), s) in &self.sensors {
            let p = csv_path(&self.dir, station, sensor);
            let len = fs::metadata(&p).map_err(io_err(format!("reading {}", p.display())))?.len();
            if len < s.csv_len {
                return Err(CollectError::Corrupt(format!(
                    "{} is {len} bytes but the manifest says {} were written",
                    p.display(),
                    s.csv_len
                )));
            }
            if len > s.csv_len {
                let f = OpenOptions::new().write(true).open(&p).map_err(io_err(format!("opening {}", p.display())))?;
                f.set_len(s.csv_len).map_err(io_err(format!("trimming {}", p.display())))?;
                f.sync_data().map_err(io_err(format!("syncing {}", p.display())))?;
            }
        }
        Ok(())
    }

    /// The archive directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Adds a batch (a bundle's payload). `received_unix_ms` and `age_ms` place the readings of a station
    /// without a clock in time (see [`Batch::unix_times`]). Not durable until [`Collector::sync`].
    pub fn add(&mut self, payload: &[u8], received_unix_ms: u64, age_ms: Option<u64>) -> Result<Added, CollectError> {
        let mut batch = match Batch::decode(payload) {
            Ok(b) => b,
            Err(e) => {
                self.rejected += 1;
                return Err(e.into());
            }
        };
        let key = (batch.station.clone(), batch.sensor.clone());
        if let Some(s) = self.sensors.get_mut(&key) {
            if s.kind != batch.kind {
                self.rejected += 1;
                return Err(CollectError::Batch(FormatError::Invalid {
                    station: batch.station,
                    sensor: batch.sensor,
                    seq: batch.seq,
                    what: format!("a {} batch for a sensor that sent {} before", batch.kind.name(), s.kind.name()),
                }));
            }
            if s.seen.contains(&batch.seq) {
                s.duplicates += 1;
                return Ok(Added::Duplicate { station: batch.station, sensor: batch.sensor, seq: batch.seq });
            }
        }
        let rows = self.rows(&batch, received_unix_ms, age_ms);
        if let Some(image) = batch.image.take() {
            let d = self.dir.join(safe(&batch.station)).join(safe(&batch.sensor));
            self.make_dir(&d)?;
            let p = d.join(format!("{:08}.jpg", batch.seq));
            let tmp = d.join(format!(".{:08}.jpg.tmp", batch.seq));
            // Written and synced with the rest of the round, several at once, and renamed to its name by `sync`.
            self.staged_bytes += image.len();
            self.staged.push((tmp, p, Some(image)));
            if self.staged_bytes > STAGED_MAX {
                // A round of large stills is written now rather than held in memory until its sync.
                write_all_synced(&mut self.staged)?;
                self.staged_bytes = 0;
            }
            self.new_entries.insert(d);
        }
        let (csv_len, kind) = {
            let w = self.writer(&batch)?;
            w.write_all(rows.as_bytes()).map_err(io_err("writing rows"))?;
            self.dirty.insert(key.clone());
            let s = self.sensors.entry(key.clone()).or_insert_with(|| SensorState::new(batch.kind));
            s.csv_len += rows.len() as u64;
            s.seen.insert(batch.seq);
            s.readings += batch.readings.len() as u64;
            s.bytes += payload.len() as u64;
            (s.csv_len, s.kind)
        };
        let entry = Entry {
            station: batch.station.clone(),
            sensor: batch.sensor.clone(),
            kind: kind.name().to_string(),
            seq: batch.seq,
            readings: batch.readings.len() as u64,
            bytes: payload.len() as u64,
            csv_len,
        };
        serde_json::to_writer(&mut self.pending, &entry)
            .map_err(|e| CollectError::Corrupt(format!("cannot write a manifest line: {e}")))?;
        self.pending.push(b'\n');
        Ok(Added::Stored {
            station: batch.station,
            sensor: batch.sensor,
            seq: batch.seq,
            readings: batch.readings.len(),
        })
    }

    /// The CSV writer of a batch's sensor, creating the file (with its header) on first use.
    /// Creates `d` and any missing parents; each directory made is a new entry in its parent.
    fn make_dir(&mut self, d: &Path) -> Result<(), CollectError> {
        if d.is_dir() {
            return Ok(());
        }
        let missing: Vec<PathBuf> = d.ancestors().take_while(|a| !a.exists()).map(Path::to_path_buf).collect();
        fs::create_dir_all(d).map_err(io_err(format!("creating {}", d.display())))?;
        self.new_entries.extend(missing.iter().filter_map(|m| m.parent().map(Path::to_path_buf)));
        Ok(())
    }

    fn writer(&mut self, batch: &Batch) -> Result<&mut BufWriter<File>, CollectError> {
        let key = (batch.station.clone(), batch.sensor.clone());
        if !self.files.contains_key(&key) {
            let p = csv_path(&self.dir, &batch.station, &batch.sensor);
            if let Some(d) = p.parent() {
                self.make_dir(d)?;
                if !p.exists() {
                    self.new_entries.insert(d.to_path_buf());
                }
            }
            let f = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&p)
                .map_err(io_err(format!("opening {}", p.display())))?;
            let fresh = self.sensors.get(&key).is_none_or(|s| s.csv_len == 0);
            if fresh {
                // Rows no manifest line names were never acknowledged: they come again.
                f.set_len(0).map_err(io_err(format!("trimming {}", p.display())))?;
            }
            let mut w = BufWriter::with_capacity(64 << 10, f);
            if fresh {
                let header = csv_header(batch.kind);
                w.write_all(header.as_bytes()).map_err(io_err(format!("writing {}", p.display())))?;
                // The header counts as written by the first batch.
                self.sensors.entry(key.clone()).or_insert_with(|| SensorState::new(batch.kind)).csv_len =
                    header.len() as u64;
            }
            self.files.insert(key.clone(), w);
        }
        self.files.get_mut(&key).ok_or_else(|| CollectError::Corrupt("writer vanished".into()))
    }

    fn rows(&self, batch: &Batch, received_unix_ms: u64, age_ms: Option<u64>) -> String {
        let unix = batch.unix_times(received_unix_ms, age_ms);
        let mut out = String::with_capacity(batch.readings.len() * 48);
        for (i, r) in batch.readings.iter().enumerate() {
            use std::fmt::Write as _;
            if let Some(t) = unix.as_ref().and_then(|u| u.get(i).copied()) {
                time::push_digits(&mut out, t, 1);
                out.push(',');
                time::push_iso8601(&mut out, t);
            } else {
                out.push(',');
            }
            out.push(',');
            if batch.clock == Clock::Uptime {
                time::push_digits(&mut out, r.t, 1);
            }
            out.push(',');
            time::push_digits(&mut out, batch.seq, 1);
            for v in &r.values {
                let _ = write!(out, ",{v}");
            }
            out.push('\n');
        }
        out
    }

    /// Makes everything added so far durable: data files first, then the manifest lines that name them.
    /// Acknowledge deliveries only after this returns.
    pub fn sync(&mut self) -> Result<(), CollectError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        // Only what this round wrote: every sync is a journal commit the disk waits for, and a van's round
        // touches a few of the archive's files. All of them at once, which the file system joins.
        let mut data = Vec::with_capacity(self.dirty.len() + self.staged.len());
        for key in std::mem::take(&mut self.dirty) {
            if let Some(w) = self.files.get_mut(&key) {
                w.flush().map_err(io_err("flushing a data file"))?;
                data.push(csv_path(&self.dir, &key.0, &key.1));
            }
        }
        // A crash leaves either a temporary file or a whole image under its name.
        let staged = &mut self.staged;
        self.staged_bytes = 0;
        std::thread::scope(|scope| {
            let images = scope.spawn(|| write_all_synced(staged));
            let rows = sync_all(&mut data, false);
            images.join().unwrap_or_else(|_| Err(sync_panicked())).and(rows)
        })?;
        for (tmp, p, _) in std::mem::take(&mut self.staged) {
            fs::rename(&tmp, &p).map_err(io_err(format!("renaming to {}", p.display())))?;
        }
        // New image and CSV files must be findable after a crash, like their contents.
        let mut dirs: Vec<PathBuf> = std::mem::take(&mut self.new_entries).into_iter().collect();
        sync_all(&mut dirs, true)?;
        self.manifest.write_all(&self.pending).map_err(io_err("writing the manifest"))?;
        self.manifest.sync_data().map_err(io_err("syncing the manifest"))?;
        self.pending.clear();
        Ok(())
    }

    /// Takes a round of delivered bundles: each batch is added, each payload that is not a batch we can
    /// read is set aside in `rejected/` (named by its bundle ID) and counted, and then everything is synced.
    /// When this returns `Ok`, every item is durable in the archive and its delivery may be acknowledged; on
    /// an error (the disk), none may: the node delivers them again and the archive drops what it already has
    /// as duplicates.
    pub fn intake<'a>(&mut self, items: impl IntoIterator<Item = Delivered<'a>>) -> Result<Intake, CollectError> {
        let mut out = Intake::default();
        for d in items {
            out.bytes += d.payload.len() as u64;
            match self.add(d.payload, d.received_unix_ms, d.age_ms) {
                Ok(Added::Stored { station, readings, .. }) => {
                    out.stored += 1;
                    out.readings += readings as u64;
                    out.stations.insert(station);
                }
                Ok(Added::Duplicate { station, .. }) => {
                    out.duplicates += 1;
                    out.stations.insert(station);
                }
                Err(CollectError::Batch(e)) => {
                    self.set_aside(d.id, d.payload)?;
                    out.rejected.push((d.id.to_string(), e.to_string()));
                }
                Err(e) => return Err(e),
            }
        }
        self.sync()?;
        Ok(out)
    }

    /// Keeps a payload that is not a batch, for someone to look at; synced with the next [`Collector::sync`].
    fn set_aside(&mut self, id: &str, payload: &[u8]) -> Result<(), CollectError> {
        let d = self.dir.join(SET_ASIDE);
        self.make_dir(&d)?;
        let p = d.join(format!("{}.bin", safe(id)));
        fs::write(&p, payload).map_err(io_err(format!("writing {}", p.display())))?;
        File::open(&p).and_then(|f| f.sync_data()).map_err(io_err(format!("syncing {}", p.display())))?;
        self.new_entries.insert(d);
        // A payload delivered again after a crash replaces its own file: counted once.
        self.rejected = fs::read_dir(self.dir.join(SET_ASIDE)).map_or(self.rejected, |d| d.count() as u64);
        Ok(())
    }

    /// Batches refused as unreadable since the archive was opened.
    pub fn rejected(&self) -> u64 {
        self.rejected
    }

    /// Writes the report next to the data: `report.txt` for people, `report.json` for scripts.
    pub fn write_report(&self) -> Result<Report, CollectError> {
        let r = self.report();
        let text = format!("{}\n{r}", r.per_station());
        let json = serde_json::to_vec_pretty(&r).map_err(|e| CollectError::Corrupt(format!("report: {e}")))?;
        for (name, bytes) in [("report.txt", text.into_bytes()), ("report.json", json)] {
            let p = self.dir.join(name);
            fs::write(&p, bytes).map_err(io_err(format!("writing {}", p.display())))?;
        }
        Ok(r)
    }

    /// What the archive holds, per station and sensor, with gaps and duplicates.
    pub fn report(&self) -> Report {
        let mut stations: BTreeMap<String, StationReport> = BTreeMap::new();
        for ((station, sensor), s) in &self.sensors {
            let st = stations.entry(station.clone()).or_default();
            st.sensors.insert(sensor.clone(), SensorReport::of(s.kind, &s.seen, s.duplicates, s.readings, s.bytes));
        }
        Report { stations, rejected: self.rejected }
    }
}

fn csv_header(kind: SensorKind) -> String {
    let mut h = String::from("time_unix_ms,time_utc,uptime_ms,batch");
    for a in kind.axes() {
        h.push(',');
        h.push_str(a);
        h.push('_');
        h.push_str(kind.unit());
    }
    h.push('\n');
    h
}

fn csv_path(dir: &Path, station: &str, sensor: &str) -> PathBuf {
    dir.join(safe(station)).join(format!("{}.csv", safe(sensor)))
}

/// A name as one path component, keeping distinct names distinct: `bme280/temperature` becomes
/// `bme280%2Ftemperature`. (Batch decoding already refused `..`, a leading `/` and control characters.)
fn safe(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        match c {
            '%' => out.push_str("%25"),
            '/' => out.push_str("%2F"),
            '\\' => out.push_str("%5C"),
            ':' => out.push_str("%3A"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests;

/// Syncs `paths` (file data, or whole directories if `dirs`), a few at once (see [`in_parallel`]).
fn sync_all(paths: &mut [PathBuf], dirs: bool) -> Result<(), CollectError> {
    in_parallel(paths, |p: &mut PathBuf| {
        if dirs {
            // Not every file system can sync a directory; those that cannot keep names in order anyway.
            let _ = File::open(&*p).and_then(|f| f.sync_all());
            return Ok(());
        }
        File::open(&*p).and_then(|f| f.sync_data()).map_err(io_err(format!("syncing {}", p.display())))
    })
}

/// Image bytes held for the next sync at most; more are written (and synced) at once.
const STAGED_MAX: usize = 64 << 20;

/// Writes and syncs each image under its temporary name, a few at once: copying a still into the page cache
/// costs about as much as syncing it, and both go faster side by side. Images already written are skipped;
/// each one written drops its bytes.
fn write_all_synced(staged: &mut [(PathBuf, PathBuf, Option<Vec<u8>>)]) -> Result<(), CollectError> {
    in_parallel(staged, |(tmp, _, image): &mut (PathBuf, PathBuf, Option<Vec<u8>>)| {
        let Some(bytes) = image.take() else { return Ok(()) };
        let mut f = File::create(&*tmp).map_err(io_err(format!("creating {}", tmp.display())))?;
        f.write_all(&bytes).and_then(|()| f.sync_data()).map_err(io_err(format!("writing {}", tmp.display())))
    })
}

/// Runs `f` on every item from a few threads at once. A van unloads hundreds of stills per round, and the
/// file system joins syncs that are in flight together into one journal commit, where syncing them one after
/// another pays a commit each: the archive kept up with half the rate of a single synced stream that way.
fn in_parallel<T: Send>(
    items: &mut [T],
    f: impl Fn(&mut T) -> Result<(), CollectError> + Sync,
) -> Result<(), CollectError> {
    const THREADS: usize = 4;
    if items.len() <= 1 {
        return items.iter_mut().try_for_each(&f);
    }
    let per = items.len().div_ceil(THREADS);
    let f = &f;
    std::thread::scope(|scope| {
        let workers: Vec<_> =
            items.chunks_mut(per).map(|chunk| scope.spawn(move || chunk.iter_mut().try_for_each(f))).collect();
        workers.into_iter().try_for_each(|w| w.join().unwrap_or_else(|_| Err(sync_panicked())))
    })
}

/// The directory holding `dir`, if it has one.
fn parent_of(dir: &Path) -> Option<PathBuf> {
    dir.parent().filter(|p| !p.as_os_str().is_empty()).map(Path::to_path_buf)
}

fn sync_panicked() -> CollectError {
    io_err("syncing image files")(io::Error::other("a sync thread panicked"))
}

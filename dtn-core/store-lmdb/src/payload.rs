//! Payload files: bundles too large to keep inside LMDB live in files beside it, one file per bundle,
//! written and read as streams.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use dtn_core::store::StagedId;

use crate::StoreError;

/// Path of payload file `n`.
pub fn path(dir: &Path, n: u64) -> PathBuf {
    dir.join(format!("{n:016x}.bundle"))
}

/// The file number in a payload file's name.
pub fn parse_name(name: &str) -> Option<u64> {
    let hex = name.strip_suffix(".bundle")?;
    if hex.len() != 16 {
        return None;
    }
    u64::from_str_radix(hex, 16).ok()
}

/// Streams bytes into a payload file. Bytes count as durable only after [`PayloadWriter::sync`] or
/// [`PayloadWriter::finish`]; a writer dropped without either leaves a file that is removed at the next
/// open unless a committed record refers to it.
pub struct PayloadWriter {
    file: File,
    path: PathBuf,
    id: u64,
    buf: Vec<u8>,
    written: u64,
    durable: u64,
}

/// Buffered so that a stream of small segments becomes large sequential writes.
const BUF: usize = 1 << 20;

impl PayloadWriter {
    pub(crate) fn create(dir: &Path, id: u64) -> Result<PayloadWriter, StoreError> {
        let path = path(dir, id);
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| StoreError::io(format!("creating payload file {}", path.display()), e))?;
        Ok(PayloadWriter { file, path, id, buf: Vec::with_capacity(BUF), written: 0, durable: 0 })
    }

    pub(crate) fn resume(dir: &Path, id: u64, keep: u64) -> Result<PayloadWriter, StoreError> {
        let path = path(dir, id);
        let ctx = |what: &str| format!("{what} payload file {}", path.display());
        let mut file = OpenOptions::new().write(true).open(&path).map_err(|e| StoreError::io(ctx("reopening"), e))?;
        let len = file.metadata().map_err(|e| StoreError::io(ctx("reading"), e))?.len();
        if len < keep {
            return Err(StoreError::Invalid(format!("payload file {id} holds {len} bytes, fewer than {keep} to keep")));
        }
        file.set_len(keep).map_err(|e| StoreError::io(ctx("truncating"), e))?;
        file.seek(SeekFrom::Start(keep)).map_err(|e| StoreError::io(ctx("seeking"), e))?;
        Ok(PayloadWriter { file, path, id, buf: Vec::with_capacity(BUF), written: keep, durable: keep })
    }

    /// The handle under which the bytes are committed.
    pub fn id(&self) -> StagedId {
        StagedId(self.id)
    }

    /// Bytes written so far (durable or not).
    pub fn len(&self) -> u64 {
        self.written
    }

    /// Whether nothing was written.
    pub fn is_empty(&self) -> bool {
        self.written == 0
    }

    /// Bytes known durable.
    pub fn durable_len(&self) -> u64 {
        self.durable
    }

    fn drain(&mut self) -> io::Result<()> {
        if !self.buf.is_empty() {
            self.file.write_all(&self.buf)?;
            self.buf.clear();
        }
        Ok(())
    }

    /// Makes everything written so far durable; returns the durable length. A convergence layer
    /// acknowledges received bytes only up to this length.
    pub fn sync(&mut self) -> Result<u64, StoreError> {
        self.drain()
            .and_then(|_| self.file.sync_data())
            .map_err(|e| StoreError::io(format!("syncing payload file {}", self.path.display()), e))?;
        self.durable = self.written;
        Ok(self.durable)
    }

    /// Makes the bytes durable and returns the handle for a [`dtn_core::store::Payload::Staged`].
    pub fn finish(mut self) -> Result<StagedId, StoreError> {
        self.sync()?;
        Ok(StagedId(self.id))
    }

    /// Deletes the file (a transfer abandoned with nothing worth keeping).
    pub fn discard(self) {
        let _ = fs::remove_file(&self.path);
    }
}

impl Write for PayloadWriter {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        if self.buf.len() + b.len() > BUF {
            self.drain()?;
            if b.len() >= BUF {
                self.file.write_all(b)?;
                self.written += b.len() as u64;
                return Ok(b.len());
            }
        }
        self.buf.extend_from_slice(b);
        self.written += b.len() as u64;
        Ok(b.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.drain()
    }
}

/// Opens a payload file for reading its first `len` bytes.
pub fn open_read(dir: &Path, n: u64, len: u64) -> Result<io::Take<File>, StoreError> {
    let p = path(dir, n);
    let f = File::open(&p).map_err(|e| StoreError::io(format!("opening payload file {}", p.display()), e))?;
    Ok(f.take(len))
}

/// Fsyncs a directory so that files created in it survive a crash.
pub fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StoreError::io(format!("syncing directory {}", dir.display()), e))
}

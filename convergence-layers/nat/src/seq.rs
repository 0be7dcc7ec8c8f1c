//! The BEP 44 sequence number, persisted so that it never goes backwards or repeats across restarts.
//!
//! Storing nodes refuse an item whose `seq` is lower than the one they hold (error 302), so a node that
//! restarted from 1 would be unreachable until its old item aged out. The file holds the last number
//! *reserved*: a number is written (and synced) before the item carrying it is published, so a crash
//! between the two only skips a number.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum SeqError {
    #[error("sequence file {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    /// Refusing to guess: starting over could publish a lower number than peers already hold.
    #[error("sequence file {path} is corrupt (expected a decimal number)")]
    Corrupt { path: PathBuf },
    #[error("sequence numbers exhausted")]
    Exhausted,
}

/// The persisted sequence number of one BEP 44 item.
#[derive(Debug)]
pub struct SeqFile {
    path: PathBuf,
    last: i64,
}

impl SeqFile {
    /// Opens (or, if absent, starts) the sequence file at `path`.
    pub fn open(path: impl Into<PathBuf>) -> Result<SeqFile, SeqError> {
        let path = path.into();
        let last = match fs::read_to_string(&path) {
            Ok(s) => match s.trim().parse::<i64>() {
                Ok(v) if v >= 0 => v,
                _ => return Err(SeqError::Corrupt { path }),
            },
            Err(e) if e.kind() == io::ErrorKind::NotFound => 0,
            Err(source) => return Err(SeqError::Io { path, source }),
        };
        Ok(SeqFile { path, last })
    }

    /// The last number reserved (0 if none yet).
    pub fn last(&self) -> i64 {
        self.last
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reserves the next number, above both the last reserved and `floor` (e.g. the highest `seq` seen in
    /// the DHT for our key), and records it durably before returning it.
    pub fn reserve(&mut self, floor: i64) -> Result<i64, SeqError> {
        let next = self.last.max(floor).checked_add(1).ok_or(SeqError::Exhausted)?;
        write_durably(&self.path, next).map_err(|source| SeqError::Io { path: self.path.clone(), source })?;
        self.last = next;
        Ok(next)
    }
}

/// Write to a temporary file, sync, rename over the old one, sync the directory: after a crash the file
/// holds either the old or the new number, never a torn one.
fn write_durably(path: &Path, value: i64) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut f = fs::File::create(&tmp)?;
        writeln!(f, "{value}")?;
        f.sync_all()?;
    }
    fs::rename(&tmp, path)?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("dtn-nat-seq-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn survives_reopen_and_respects_the_floor() {
        let d = dir("reopen");
        let p = d.join("seq");
        let mut s = SeqFile::open(&p).unwrap();
        assert_eq!(s.last(), 0);
        assert_eq!(s.reserve(0).unwrap(), 1);
        assert_eq!(s.reserve(0).unwrap(), 2);
        drop(s);
        let mut s = SeqFile::open(&p).unwrap();
        assert_eq!(s.last(), 2);
        assert_eq!(s.reserve(0).unwrap(), 3, "never repeats after a restart");
        assert_eq!(s.reserve(41).unwrap(), 42, "jumps above what the DHT holds");
        assert_eq!(s.reserve(5).unwrap(), 43, "a lower floor never takes it back");
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn corrupt_file_is_an_error_not_a_reset() {
        let d = dir("corrupt");
        let p = d.join("seq");
        fs::write(&p, "twelve\n").unwrap();
        assert!(matches!(SeqFile::open(&p), Err(SeqError::Corrupt { .. })));
        fs::write(&p, "-4\n").unwrap();
        assert!(matches!(SeqFile::open(&p), Err(SeqError::Corrupt { .. })));
        fs::write(&p, format!("{}\n", i64::MAX)).unwrap();
        assert!(matches!(SeqFile::open(&p).unwrap().reserve(0), Err(SeqError::Exhausted)));
        let _ = fs::remove_dir_all(&d);
    }
}

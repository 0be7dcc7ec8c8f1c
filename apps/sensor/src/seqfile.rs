//! A station's batch numbers, kept on disk so that a restarted station never numbers a batch twice.
//!
//! The file is written (and synced) after batches are numbered and before they are handed to the node: a
//! crash in between leaves a gap in the numbering, which a collector reports, never a number used twice,
//! which it would drop as a duplicate.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Why the numbers could not be read or kept.
#[derive(Debug, thiserror::Error)]
pub enum SeqFileError {
    /// Disk trouble.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// The file is not what this module writes.
    #[error("{path} line {line}: expected SENSOR<tab>NEXT_NUMBER")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
    },
}

/// The next batch number per sensor of one station, in `<dir>/<station>.seq`.
#[derive(Debug, Clone)]
pub struct SeqFile {
    path: PathBuf,
    saved: BTreeMap<String, u64>,
}

impl SeqFile {
    /// Opens (creating `dir` if needed) the numbers of `station`; empty the first time.
    pub fn open(dir: &Path, station: &str) -> Result<SeqFile, SeqFileError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| SeqFileError::Io { path, source }
        };
        fs::create_dir_all(dir).map_err(io(dir))?;
        let path = dir.join(format!("{}.seq", station.replace(['/', '\\'], "_")));
        let mut saved = BTreeMap::new();
        match fs::read_to_string(&path) {
            Ok(text) => {
                for (i, line) in text.lines().enumerate() {
                    let corrupt = || SeqFileError::Corrupt { path: path.clone(), line: i + 1 };
                    let (sensor, next) = line.rsplit_once('\t').ok_or_else(corrupt)?;
                    saved.insert(sensor.to_string(), next.parse().map_err(|_| corrupt())?);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(&path)(e)),
        }
        Ok(SeqFile { path, saved })
    }

    /// The numbers as last saved.
    pub fn get(&self) -> &BTreeMap<String, u64> {
        &self.saved
    }

    /// Saves `next` durably (write, sync, rename, sync the directory), if it changed.
    pub fn save(&mut self, next: &BTreeMap<String, u64>) -> Result<(), SeqFileError> {
        if *next == self.saved {
            return Ok(());
        }
        // Sensors not running now keep their numbers: a station restarted with fewer sensors and then
        // with all of them again must not reuse one.
        let mut all = self.saved.clone();
        for (k, v) in next {
            let e = all.entry(k.clone()).or_insert(0);
            *e = (*e).max(*v);
        }
        let mut text = String::new();
        for (k, v) in &all {
            text.push_str(&format!("{k}\t{v}\n"));
        }
        let tmp = self.path.with_extension("seq.tmp");
        let err = |source| SeqFileError::Io { path: self.path.clone(), source };
        let mut f = File::create(&tmp).map_err(err)?;
        f.write_all(text.as_bytes()).map_err(err)?;
        f.sync_all().map_err(err)?;
        fs::rename(&tmp, &self.path).map_err(err)?;
        if let Some(d) = self.path.parent() {
            File::open(d).and_then(|d| d.sync_all()).map_err(err)?;
        }
        self.saved = all;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_survive_a_reopen_and_never_go_down() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut f = SeqFile::open(dir.path(), "hill-1").expect("open");
        assert!(f.get().is_empty());
        f.save(&BTreeMap::from([("sim/temperature".into(), 5), ("cam0".into(), 2)])).expect("save");
        let mut f = SeqFile::open(dir.path(), "hill-1").expect("reopen");
        assert_eq!(f.get()["sim/temperature"], 5);
        // A run with only the camera keeps the temperature's number.
        f.save(&BTreeMap::from([("cam0".into(), 3)])).expect("save");
        let f = SeqFile::open(dir.path(), "hill-1").expect("reopen");
        assert_eq!((f.get()["sim/temperature"], f.get()["cam0"]), (5, 3));
        std::fs::write(dir.path().join("hill-1.seq"), "cam0 three\n").expect("write");
        assert!(matches!(SeqFile::open(dir.path(), "hill-1"), Err(SeqFileError::Corrupt { line: 1, .. })));
    }
}

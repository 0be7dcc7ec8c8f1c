//! The store behaviour every implementation shares (quota, eviction order, expiry, tombstones, partial
//! bundles, summaries), run against LMDB with a real close and reopen wherever the test restarts the store.

use std::io::Write;

use dtn_core::store::StagedId;
use dtn_core::store::testkit::Harness;
use dtn_store_lmdb::{LmdbStore, Options};

struct Lmdb {
    dir: tempfile::TempDir,
    quota: u64,
    /// Small enough that the 3 MB test bundle goes to a payload file and the rest stay inline.
    inline_max: u64,
}

impl Lmdb {
    fn new() -> Self {
        Lmdb { dir: tempfile::tempdir().unwrap(), quota: 0, inline_max: 64 << 10 }
    }

    fn opts(&self) -> Options {
        Options { quota: self.quota, inline_max: self.inline_max, map_size: 8 << 20, ..Options::default() }
    }
}

impl Harness for Lmdb {
    type Store = LmdbStore;
    fn open(&mut self, quota: u64) -> LmdbStore {
        self.quota = quota;
        LmdbStore::open(self.dir.path(), self.opts()).unwrap()
    }
    fn reopen(&mut self, store: LmdbStore) -> LmdbStore {
        let before = store.check(true).unwrap();
        assert!(before.ok(), "{:?}", before.problems);
        store.close();
        let s = LmdbStore::open(self.dir.path(), self.opts()).unwrap();
        let after = s.check(true).unwrap();
        assert!(after.ok(), "{:?}", after.problems);
        s
    }
    fn stage(&mut self, store: &LmdbStore, bytes: &[u8]) -> StagedId {
        let mut w = store.stage().unwrap();
        w.write_all(bytes).unwrap();
        w.finish().unwrap()
    }
    fn resume(&mut self, store: &LmdbStore, id: StagedId, keep: u64, rest: &[u8]) -> StagedId {
        let mut w = store.resume(id, keep).unwrap();
        w.write_all(rest).unwrap();
        w.finish().unwrap()
    }
}

dtn_core::store_conformance_tests!(Lmdb::new());

/// The same checks with every bundle in a payload file.
mod all_files {
    use super::*;
    dtn_core::store_conformance_tests!(Lmdb { inline_max: 0, ..Lmdb::new() });
}

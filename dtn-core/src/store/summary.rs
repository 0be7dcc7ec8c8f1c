//! Compact, exact summaries of a set of bundle IDs, for "what do I hold that you lack".
//!
//! A summary groups IDs by source and stores runs of consecutive sequence numbers:
//! * bundles whose source declares that its sequence numbers never repeat (our nodes do, in the bundle-class
//!   block) are keyed by sequence number alone, so a station's whole output is one run however its clock ran;
//! * other bundles are keyed by (creation time, sequence number), runs counted within one creation time, which
//!   is one run per source for clockless nodes (creation time 0) and per burst for the rest;
//! * fragments are listed exactly (they are rare and short-lived).
//!
//! A summary never claims an ID that was not inserted, so a peer that trusts it never withholds a bundle the
//! other side lacks. Insert and remove find their place by binary search in the source's runs (or fragments)
//! and move only what follows it there, so a store keeps its summary up to date as it commits instead of
//! scanning. Sources, runs and fragments are sorted vectors: union and difference walk both sides once, which
//! is what every hello, offer and receipt costs.

use std::collections::BTreeMap;
use std::ops::RangeInclusive;

use crate::bpv7::{BundleId, Eid};

type Runs = smallvec::SmallVec<[(u64, u64); 1]>;

/// A set of `u64`s stored as disjoint, non-adjacent inclusive runs, in ascending order.
///
/// The runs sit in one sorted vector: lookups are binary searches, and union and difference walk both sides
/// once. A summary has few runs per source (that is the point of it), so inserting in the middle moves
/// little.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RangeSet {
    /// (start, end) inclusive, ascending, never touching. Most sets are one run (a source's bundles in
    /// sequence), held inline: copying, subtracting and decoding summaries then allocates nothing per source.
    runs: Runs,
}

impl RangeSet {
    /// An empty set.
    pub fn new() -> Self {
        RangeSet::default()
    }

    /// Index of the first run starting after `x`.
    fn after(&self, x: u64) -> usize {
        self.runs.partition_point(|&(s, _)| s <= x)
    }

    /// Whether `x` is in the set.
    pub fn contains(&self, x: u64) -> bool {
        let i = self.after(x);
        i > 0 && self.runs[i - 1].1 >= x
    }

    /// Adds `x`; returns false if it was already present.
    pub fn insert(&mut self, x: u64) -> bool {
        self.insert_range(x, x)
    }

    /// Adds every value in `lo..=hi`; returns false if all were already present.
    pub fn insert_range(&mut self, lo: u64, hi: u64) -> bool {
        if lo > hi {
            return false;
        }
        // Runs that end before `lo - 1` stay apart; so do runs that start after `hi + 1`. Everything between
        // overlaps or touches `lo..=hi` and merges with it.
        let i = self.runs.partition_point(|&(_, e)| e.saturating_add(1) < lo);
        let j = self.after(hi.saturating_add(1));
        if i == j {
            self.runs.insert(i, (lo, hi));
            return true;
        }
        let (s, e) = (self.runs[i].0, self.runs[j - 1].1);
        if j - i == 1 && s <= lo && e >= hi {
            return false;
        }
        self.runs[i] = (s.min(lo), e.max(hi));
        self.runs.drain(i + 1..j);
        true
    }

    /// Removes `x`; returns false if it was absent.
    pub fn remove(&mut self, x: u64) -> bool {
        let i = self.after(x);
        if i == 0 {
            return false;
        }
        let k = i - 1;
        let (s, e) = self.runs[k];
        if e < x {
            return false;
        }
        match (s == x, e == x) {
            (true, true) => {
                self.runs.remove(k);
            }
            (true, false) => self.runs[k].0 = x + 1,
            (false, true) => self.runs[k].1 = x - 1,
            (false, false) => {
                self.runs[k].1 = x - 1;
                self.runs.insert(k + 1, (x + 1, e));
            }
        }
        true
    }

    /// The runs, in order.
    pub fn runs(&self) -> impl Iterator<Item = RangeInclusive<u64>> + '_ {
        self.runs.iter().map(|&(s, e)| s..=e)
    }

    /// Number of runs.
    pub fn run_count(&self) -> usize {
        self.runs.len()
    }

    /// Number of values (saturating).
    pub fn len(&self) -> u64 {
        self.runs.iter().fold(0u64, |n, &(s, e)| n.saturating_add(e - s).saturating_add(1))
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.runs.is_empty()
    }

    /// The values in `self` and not in `other`, in one pass over both.
    pub fn difference(&self, other: &RangeSet) -> RangeSet {
        if other.runs.is_empty() {
            return self.clone();
        }
        let mut out = Runs::new();
        // Runs of `other` ending before the current run are behind us for good: runs are ascending.
        let mut j = 0;
        for &(s, e) in &self.runs {
            while j < other.runs.len() && other.runs[j].1 < s {
                j += 1;
            }
            let mut cur = s;
            let mut k = j;
            let mut done = false;
            while k < other.runs.len() && other.runs[k].0 <= e {
                let (a, b) = other.runs[k];
                if a > cur {
                    out.push((cur, a - 1));
                }
                if b >= e {
                    done = true;
                    break;
                }
                cur = b + 1;
                k += 1;
            }
            if !done {
                out.push((cur, e));
            }
            // The run of `other` that ended the walk may reach into our next run: start there again.
            j = k;
        }
        RangeSet { runs: out }
    }

    /// Whether every value here is in `other`.
    fn is_subset(&self, other: &RangeSet) -> bool {
        let mut i = 0;
        self.runs.iter().all(|&(s, e)| {
            while i < other.runs.len() && other.runs[i].1 < s {
                i += 1;
            }
            other.runs.get(i).is_some_and(|&(a, b)| a <= s && b >= e)
        })
    }

    /// Adds every value in `other`: a merge of the two run lists, or single inserts when `other` is much
    /// smaller.
    pub fn union_with(&mut self, other: &RangeSet) {
        if other.runs.is_empty() {
            return;
        }
        if self.runs.is_empty() {
            self.runs.clone_from(&other.runs);
            return;
        }
        if other.runs.len() * 8 <= self.runs.len() {
            for &(s, e) in &other.runs {
                self.insert_range(s, e);
            }
            return;
        }
        // Usually the other side tells nothing new: find that out without building anything.
        if other.is_subset(self) {
            return;
        }
        let mut out = Runs::with_capacity(self.runs.len() + other.runs.len());
        let (mut a, mut b) = (self.runs.iter().peekable(), other.runs.iter().peekable());
        loop {
            let next = match (a.peek(), b.peek()) {
                (Some(&&x), Some(&&y)) => {
                    if x.0 <= y.0 {
                        a.next();
                        x
                    } else {
                        b.next();
                        y
                    }
                }
                (Some(&&x), None) => {
                    a.next();
                    x
                }
                (None, Some(&&y)) => {
                    b.next();
                    y
                }
                (None, None) => break,
            };
            match out.last_mut() {
                Some(last) if last.1.saturating_add(1) >= next.0 => last.1 = last.1.max(next.1),
                _ => out.push(next),
            }
        }
        self.runs = out;
    }
}

/// Fragment IDs of one source, (creation time, sequence number, offset, length), as a sorted vector: few per
/// source, so lookups are binary searches and union and difference are merges.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FragmentSet {
    items: Vec<(u64, u64, u64, u64)>,
}

impl FragmentSet {
    /// An empty set.
    pub fn new() -> Self {
        FragmentSet::default()
    }

    /// Adds a fragment; returns false if it was present.
    pub fn insert(&mut self, f: (u64, u64, u64, u64)) -> bool {
        match self.items.binary_search(&f) {
            Ok(_) => false,
            Err(i) => {
                self.items.insert(i, f);
                true
            }
        }
    }

    /// Removes a fragment; returns false if it was absent.
    pub fn remove(&mut self, f: &(u64, u64, u64, u64)) -> bool {
        match self.items.binary_search(f) {
            Ok(i) => {
                self.items.remove(i);
                true
            }
            Err(_) => false,
        }
    }

    /// Whether the fragment is listed.
    pub fn contains(&self, f: &(u64, u64, u64, u64)) -> bool {
        self.items.binary_search(f).is_ok()
    }

    /// The fragments, ascending.
    pub fn iter(&self) -> impl Iterator<Item = &(u64, u64, u64, u64)> + '_ {
        self.items.iter()
    }

    /// The fragments of one bundle (creation time and sequence number), ascending by offset and length.
    pub fn of_bundle(&self, time: u64, seq: u64) -> &[(u64, u64, u64, u64)] {
        let lo = self.items.partition_point(|&(t, q, _, _)| (t, q) < (time, seq));
        let hi = self.items.partition_point(|&(t, q, _, _)| (t, q) <= (time, seq));
        &self.items[lo..hi]
    }

    /// Number of fragments.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The fragments in `self` and not in `other`.
    pub fn difference(&self, other: &FragmentSet) -> FragmentSet {
        if other.items.is_empty() {
            return self.clone();
        }
        let mut out = Vec::new();
        let mut j = 0;
        for &f in &self.items {
            while j < other.items.len() && other.items[j] < f {
                j += 1;
            }
            if other.items.get(j) != Some(&f) {
                out.push(f);
            }
        }
        FragmentSet { items: out }
    }

    /// Adds every fragment in `other`.
    pub fn union_with(&mut self, other: &FragmentSet) {
        if other.items.is_empty() {
            return;
        }
        if self.items.is_empty() {
            self.items.clone_from(&other.items);
            return;
        }
        if other.items.len() * 8 <= self.items.len() {
            for &f in &other.items {
                self.insert(f);
            }
            return;
        }
        if other.is_subset(self) {
            return;
        }
        let mut out = Vec::with_capacity(self.items.len() + other.items.len());
        let (mut i, mut j) = (0, 0);
        let (a, b) = (&self.items, &other.items);
        while i < a.len() && j < b.len() {
            match a[i].cmp(&b[j]) {
                std::cmp::Ordering::Less => {
                    out.push(a[i]);
                    i += 1;
                }
                std::cmp::Ordering::Greater => {
                    out.push(b[j]);
                    j += 1;
                }
                std::cmp::Ordering::Equal => {
                    out.push(a[i]);
                    i += 1;
                    j += 1;
                }
            }
        }
        out.extend_from_slice(&a[i..]);
        out.extend_from_slice(&b[j..]);
        self.items = out;
    }

    /// Whether every fragment here is in `other`.
    fn is_subset(&self, other: &FragmentSet) -> bool {
        let mut i = 0;
        self.items.iter().all(|f| {
            while i < other.items.len() && other.items[i] < *f {
                i += 1;
            }
            other.items.get(i) == Some(f)
        })
    }

    /// A set from fragments in any order, repeats dropped.
    fn from_unsorted(mut items: Vec<(u64, u64, u64, u64)>) -> FragmentSet {
        if !items.is_sorted_by(|a, b| a < b) {
            items.sort_unstable();
            items.dedup();
        }
        FragmentSet { items }
    }
}

/// What a summary holds for one source.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceSummary {
    /// Whole bundles from a source that declares unique sequence numbers, by sequence number.
    pub unique_seq: RangeSet,
    /// Other whole bundles: creation time → sequence numbers.
    pub by_time: BTreeMap<u64, RangeSet>,
    /// Fragments: (creation time, sequence number, offset, length).
    pub fragments: FragmentSet,
}

impl SourceSummary {
    /// The fragment IDs listed for `source` (this summary's owner), in order.
    pub fn fragment_ids<'a>(&'a self, source: &'a Eid) -> impl Iterator<Item = BundleId> + 'a {
        self.fragments.iter().map(move |&(t, q, off, len)| BundleId {
            source: source.clone(),
            creation: crate::bpv7::CreationTimestamp::new(t, q),
            fragment: Some((off, len)),
        })
    }

    /// Whether bundle `id` is listed under this source (its own source is not looked at: the caller found
    /// this entry by it).
    pub fn contains(&self, id: &BundleId, mode: SeqMode) -> bool {
        let (t, q) = (id.creation.time.0, id.creation.sequence);
        match id.fragment {
            Some((off, len)) => self.fragments.contains(&(t, q, off, len)),
            None => self.contains_whole(t, q, mode),
        }
    }

    /// Whether `id` is listed, or, for a fragment, the whole bundle it is a piece of: one source lookup
    /// where asking a [`Summary`] for both would take two.
    pub fn contains_or_whole(&self, id: &BundleId, mode: SeqMode) -> bool {
        self.contains(id, mode)
            || (id.fragment.is_some() && self.contains_whole(id.creation.time.0, id.creation.sequence, mode))
    }

    fn contains_whole(&self, time: u64, seq: u64, mode: SeqMode) -> bool {
        match mode {
            SeqMode::Unique => self.unique_seq.contains(seq),
            SeqMode::PerTime => self.by_time.get(&time).is_some_and(|s| s.contains(seq)),
        }
    }

    fn is_empty(&self) -> bool {
        self.unique_seq.is_empty() && self.by_time.is_empty() && self.fragments.is_empty()
    }

    /// Adds everything in `other`.
    fn union_with(&mut self, other: &SourceSummary) {
        self.unique_seq.union_with(&other.unique_seq);
        for (t, set) in &other.by_time {
            match self.by_time.get_mut(t) {
                Some(m) => m.union_with(set),
                None => {
                    self.by_time.insert(*t, set.clone());
                }
            }
        }
        self.fragments.union_with(&other.fragments);
    }

    /// Whether every entry here is in `other`.
    fn is_subset(&self, other: &SourceSummary) -> bool {
        self.unique_seq.is_subset(&other.unique_seq)
            && self.by_time.iter().all(|(t, set)| other.by_time.get(t).is_some_and(|o| set.is_subset(o)))
            && self.fragments.is_subset(&other.fragments)
    }

    /// The entries in `self` and in none of `others`.
    fn difference_all(&self, others: &[&SourceSummary]) -> SourceSummary {
        let Some((first, rest)) = others.split_first() else { return self.clone() };
        // Usually one side holds all of it ("what was stored since the hello": nothing): nothing to build.
        if others.iter().any(|o| self.is_subset(o)) {
            return SourceSummary::default();
        }
        let mut unique_seq = self.unique_seq.difference(&first.unique_seq);
        for o in rest {
            if unique_seq.is_empty() {
                break;
            }
            unique_seq = unique_seq.difference(&o.unique_seq);
        }
        let by_time = self
            .by_time
            .iter()
            .filter_map(|(t, set)| {
                let mut d: Option<RangeSet> = None;
                for o in others {
                    if let Some(theirs) = o.by_time.get(t) {
                        d = Some(d.as_ref().unwrap_or(set).difference(theirs));
                    }
                }
                let d = d.unwrap_or_else(|| set.clone());
                (!d.is_empty()).then_some((*t, d))
            })
            .collect();
        // One cursor per other side, each only moving forward: a merge, not a search per fragment. On the
        // stack for the usual two or three sides: this runs for every source of every hello.
        let mut few = [0usize; 4];
        let mut many = Vec::new();
        let at: &mut [usize] = if others.len() <= few.len() {
            &mut few[..others.len()]
        } else {
            many.resize(others.len(), 0);
            &mut many
        };
        let fragments = FragmentSet {
            items: self
                .fragments
                .iter()
                .filter(|&f| {
                    others.iter().zip(at.iter_mut()).all(|(o, i)| {
                        let v = &o.fragments.items;
                        while *i < v.len() && v[*i] < *f {
                            *i += 1;
                        }
                        v.get(*i) != Some(f)
                    })
                })
                .copied()
                .collect(),
        };
        SourceSummary { unique_seq, by_time, fragments }
    }

    /// The entries in `self` and not in `other`.
    fn difference(&self, other: &SourceSummary) -> SourceSummary {
        SourceSummary {
            unique_seq: self.unique_seq.difference(&other.unique_seq),
            by_time: self
                .by_time
                .iter()
                .filter_map(|(t, set)| {
                    let d = match other.by_time.get(t) {
                        Some(o) => set.difference(o),
                        None => set.clone(),
                    };
                    (!d.is_empty()).then_some((*t, d))
                })
                .collect(),
            fragments: self.fragments.difference(&other.fragments),
        }
    }

    fn run_count(&self) -> usize {
        self.unique_seq.run_count()
            + self.by_time.values().map(RangeSet::run_count).sum::<usize>()
            + self.fragments.len()
    }
}

/// How a bundle is keyed in a summary: see the module documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeqMode {
    /// The source numbers its bundles uniquely across creation times.
    Unique,
    /// Sequence numbers are unique only within a creation time (RFC 9171's baseline).
    PerTime,
}

/// A compact, exact set of bundle IDs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    sources: Sources,
}

/// A summary's per-source entries, sorted by EID. A summary has at most a few hundred sources, and every hello
/// copies, subtracts and merges several: as one sorted vector that is one allocation to copy, and union and
/// difference walk both sides once instead of searching a tree for every source.
///
/// Beside the entries, each one's [`order_key`] in a dense vector of its own: finding a source (for every
/// bundle offered, checked or stored) binary-searches eight-byte keys instead of hundred-byte entries, and
/// compares whole EIDs only where keys are equal.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Sources {
    entries: Vec<(Eid, SourceSummary)>,
    keys: Vec<u64>,
}

/// A number that orders EIDs as they order, except that different EIDs may share one: `order_key(a) <
/// order_key(b)` implies `a < b`. An ipn node's is its node number, so every source of a network of ipn nodes has
/// its own; the null endpoint and dtn EIDs (which sort before ipn) share 0, other schemes (after) `u64::MAX`.
fn order_key(eid: &Eid) -> u64 {
    match eid {
        Eid::Null | Eid::Dtn(_) => 0,
        Eid::Ipn(i) => i.fqnn,
        Eid::Unknown(_) => u64::MAX,
    }
}

impl Sources {
    /// Entries already sorted by EID, each once.
    fn from_sorted(entries: Vec<(Eid, SourceSummary)>) -> Sources {
        let keys = entries.iter().map(|(e, _)| order_key(e)).collect();
        Sources { entries, keys }
    }

    /// Where `eid` is, or would go.
    fn find(&self, eid: &Eid) -> Result<usize, usize> {
        let k = order_key(eid);
        // Sources often arrive in order (decoding, building from a sorted walk): try the end first.
        let mut i = match self.keys.last() {
            None => return Err(0),
            Some(&last) if last < k => return Err(self.keys.len()),
            Some(_) => self.keys.partition_point(|&x| x < k),
        };
        while i < self.keys.len() && self.keys[i] == k {
            match self.entries[i].0.cmp(eid) {
                std::cmp::Ordering::Less => i += 1,
                std::cmp::Ordering::Equal => return Ok(i),
                std::cmp::Ordering::Greater => break,
            }
        }
        Err(i)
    }

    fn get(&self, eid: &Eid) -> Option<&SourceSummary> {
        self.find(eid).ok().map(|i| &self.entries[i].1)
    }

    fn get_mut(&mut self, eid: &Eid) -> Option<&mut SourceSummary> {
        self.find(eid).ok().map(|i| &mut self.entries[i].1)
    }

    fn insert_at(&mut self, i: usize, eid: Eid, s: SourceSummary) {
        self.keys.insert(i, order_key(&eid));
        self.entries.insert(i, (eid, s));
    }

    /// Adds a source known to sort after every other here.
    fn push(&mut self, eid: Eid, s: SourceSummary) {
        self.keys.push(order_key(&eid));
        self.entries.push((eid, s));
    }

    fn get_or_default(&mut self, eid: &Eid) -> &mut SourceSummary {
        let i = match self.find(eid) {
            Ok(i) => i,
            Err(i) => {
                self.insert_at(i, eid.clone(), SourceSummary::default());
                i
            }
        };
        &mut self.entries[i].1
    }

    /// Adds a source; false (and nothing changed) if it is there already.
    fn insert_new(&mut self, eid: Eid, s: SourceSummary) -> bool {
        match self.find(&eid) {
            Ok(_) => false,
            Err(i) => {
                self.insert_at(i, eid, s);
                true
            }
        }
    }

    fn remove(&mut self, eid: &Eid) {
        if let Ok(i) = self.find(eid) {
            self.keys.remove(i);
            self.entries.remove(i);
        }
    }

    /// Keeps the entries `f` returns true for (and may change).
    fn retain_mut(&mut self, mut f: impl FnMut(&Eid, &mut SourceSummary) -> bool) {
        self.entries.retain_mut(|(e, s)| f(e, s));
        self.keys.clear();
        self.keys.extend(self.entries.iter().map(|(e, _)| order_key(e)));
    }

    fn iter(&self) -> impl Iterator<Item = (&Eid, &SourceSummary)> {
        self.entries.iter().map(|(e, s)| (e, s))
    }

    fn len(&self) -> usize {
        self.entries.len()
    }

    fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl Summary {
    /// An empty summary.
    pub fn new() -> Self {
        Summary::default()
    }

    /// Adds an ID; returns false if it was present.
    pub fn insert(&mut self, id: &BundleId, mode: SeqMode) -> bool {
        let src = self.sources.get_or_default(&id.source);
        let (t, q) = (id.creation.time.0, id.creation.sequence);
        match (id.fragment, mode) {
            (Some((off, len)), _) => src.fragments.insert((t, q, off, len)),
            (None, SeqMode::Unique) => src.unique_seq.insert(q),
            (None, SeqMode::PerTime) => src.by_time.entry(t).or_default().insert(q),
        }
    }

    /// Removes an ID; returns false if it was absent.
    pub fn remove(&mut self, id: &BundleId, mode: SeqMode) -> bool {
        let Some(src) = self.sources.get_mut(&id.source) else { return false };
        let (t, q) = (id.creation.time.0, id.creation.sequence);
        let removed = match (id.fragment, mode) {
            (Some((off, len)), _) => src.fragments.remove(&(t, q, off, len)),
            (None, SeqMode::Unique) => src.unique_seq.remove(q),
            (None, SeqMode::PerTime) => match src.by_time.get_mut(&t) {
                Some(set) => {
                    let r = set.remove(q);
                    if set.is_empty() {
                        src.by_time.remove(&t);
                    }
                    r
                }
                None => false,
            },
        };
        if src.is_empty() {
            self.sources.remove(&id.source);
        }
        removed
    }

    /// Whether the ID is in the summary.
    pub fn contains(&self, id: &BundleId, mode: SeqMode) -> bool {
        self.sources.get(&id.source).is_some_and(|src| src.contains(id, mode))
    }

    /// The IDs in `self` and not in `other`: "what I hold that you lack" when `self` is mine.
    pub fn difference(&self, other: &Summary) -> Summary {
        if other.is_empty() {
            return self.clone();
        }
        let theirs = &other.sources.entries;
        let mut j = 0;
        let mut out = Vec::new();
        for (i, (eid, mine)) in self.sources.entries.iter().enumerate() {
            while j < theirs.len() && theirs[j].0 < *eid {
                j += 1;
            }
            let d = match theirs.get(j) {
                // The other side holds all of it: nothing to build (and drop).
                Some((e, t)) if e == eid && mine.is_subset(t) => continue,
                Some((e, t)) if e == eid => mine.difference(t),
                _ => mine.clone(),
            };
            if !d.is_empty() {
                // Room for every source left at the first one kept, rather than growing a step at a time.
                if out.is_empty() {
                    out.reserve(self.sources.len() - i);
                }
                out.push((eid.clone(), d));
            }
        }
        Summary { sources: Sources::from_sorted(out) }
    }

    /// The IDs in `self` and in none of `others`: `a.difference(b).difference(c)` without the summary in
    /// between, and without copying anything when nothing is left (the usual answer to "what is new here").
    pub fn difference_all(&self, others: &[&Summary]) -> Summary {
        let mut out = Vec::new();
        let mut theirs = Vec::with_capacity(others.len());
        // One cursor per other summary, each only moving forward.
        let mut at = vec![0usize; others.len()];
        for (eid, mine) in &self.sources.entries {
            theirs.clear();
            for (o, j) in others.iter().zip(at.iter_mut()) {
                let v = &o.sources.entries;
                while *j < v.len() && v[*j].0 < *eid {
                    *j += 1;
                }
                if let Some((e, t)) = v.get(*j)
                    && e == eid
                {
                    theirs.push(t);
                }
            }
            let d = mine.difference_all(&theirs);
            if !d.is_empty() {
                out.push((eid.clone(), d));
            }
        }
        Summary { sources: Sources::from_sorted(out) }
    }

    /// Adds everything in `other`.
    pub fn union_with(&mut self, other: &Summary) {
        if other.sources.is_empty() {
            return;
        }
        if self.sources.is_empty() {
            self.sources.clone_from(&other.sources);
            return;
        }
        if other.sources.len() * 8 <= self.sources.len() {
            // A few sources (an offer, a receipt) into many: find each rather than rebuild.
            for (eid, theirs) in other.sources.iter() {
                self.sources.get_or_default(eid).union_with(theirs);
            }
            return;
        }
        let mine = std::mem::take(&mut self.sources.entries);
        let mut out = Vec::with_capacity(mine.len().max(other.sources.len()));
        let mut theirs = other.sources.entries.iter().peekable();
        for (eid, mut s) in mine {
            while let Some((e, t)) = theirs.next_if(|(e, _)| *e < eid) {
                out.push((e.clone(), t.clone()));
            }
            if let Some((_, t)) = theirs.next_if(|(e, _)| *e == eid) {
                s.union_with(t);
            }
            out.push((eid, s));
        }
        out.extend(theirs.map(|(e, t)| (e.clone(), t.clone())));
        self.sources = Sources::from_sorted(out);
    }

    /// Adds everything in `other`, taking over what `self` lacks instead of copying it.
    pub fn union_owned(&mut self, other: Summary) {
        if other.sources.is_empty() {
            return;
        }
        if self.sources.is_empty() {
            *self = other;
            return;
        }
        if other.sources.len() * 8 <= self.sources.len() {
            for (eid, theirs) in other.sources.entries {
                match self.sources.find(&eid) {
                    Ok(i) => self.sources.entries[i].1.union_with(&theirs),
                    Err(i) => self.sources.insert_at(i, eid, theirs),
                }
            }
            return;
        }
        let mine = std::mem::take(&mut self.sources.entries);
        let mut out = Vec::with_capacity(mine.len().max(other.sources.len()));
        let mut theirs = other.sources.entries.into_iter().peekable();
        for (eid, mut s) in mine {
            while let Some(t) = theirs.next_if(|(e, _)| *e < eid) {
                out.push(t);
            }
            if let Some((_, t)) = theirs.next_if(|(e, _)| *e == eid) {
                s.union_with(&t);
            }
            out.push((eid, s));
        }
        out.extend(theirs);
        self.sources = Sources::from_sorted(out);
    }

    /// Drops the fragment IDs whose whole bundle is listed too, here or in one of `also`. Whoever reads a
    /// delivered summary takes a whole bundle's ID to cover every piece of it (a piece of a bundle known
    /// delivered is dropped, refused and never sent), so the pieces add nothing but size: a bundle delivered
    /// in pieces leaves a tombstone per piece beside the whole one, and on a busy network with short contacts
    /// those pieces were nine in ten entries of every hello's delivered summary.
    pub fn drop_covered_fragments(&mut self, also: &[&Summary]) {
        let whole_in = |unique_seq: &RangeSet, by_time: &BTreeMap<u64, RangeSet>, t: u64, q: u64| {
            unique_seq.contains(q) || by_time.get(&t).is_some_and(|set| set.contains(q))
        };
        let mut others = Vec::with_capacity(also.len());
        self.sources.retain_mut(|eid, src| {
            if src.fragments.is_empty() {
                return true;
            }
            others.clear();
            others.extend(also.iter().filter_map(|o| o.sources.get(eid)));
            let SourceSummary { unique_seq, by_time, fragments } = src;
            fragments.items.retain(|&(t, q, _, _)| {
                !whole_in(unique_seq, by_time, t, q)
                    && !others.iter().any(|o| whole_in(&o.unique_seq, &o.by_time, t, q))
            });
            !src.is_empty()
        });
    }

    /// What the summary holds for one source.
    pub fn source(&self, eid: &Eid) -> Option<&SourceSummary> {
        self.sources.get(eid)
    }

    /// Per-source contents, in source order.
    pub fn sources(&self) -> impl Iterator<Item = (&Eid, &SourceSummary)> {
        self.sources.iter()
    }

    /// Number of sources.
    pub fn source_count(&self) -> usize {
        self.sources.len()
    }

    /// Number of runs and fragment entries: the summary's size, whatever the number of bundles.
    pub fn run_count(&self) -> usize {
        self.sources.entries.iter().map(|(_, s)| s.run_count()).sum()
    }

    /// Whether the summary is empty.
    pub fn is_empty(&self) -> bool {
        self.sources.is_empty()
    }

    /// Appends the binary form: a version byte, then per source its CBOR EID and varint-coded runs.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.push(SUMMARY_FORMAT);
        varint(out, self.sources.len() as u64);
        for (eid, s) in &self.sources.entries {
            eid.encode(out);
            encode_runs(out, &s.unique_seq);
            varint(out, s.by_time.len() as u64);
            let mut prev_t = 0;
            for (t, set) in &s.by_time {
                varint(out, t - prev_t);
                prev_t = *t;
                encode_runs(out, set);
            }
            varint(out, s.fragments.len() as u64);
            for &(t, q, off, len) in s.fragments.iter() {
                for v in [t, q, off, len] {
                    varint(out, v);
                }
            }
        }
    }

    /// The binary form in a fresh vector.
    pub fn to_bytes(&self) -> Vec<u8> {
        // Enough for the usual case, so that encoding does not grow it: a source's EID and three counts take
        // about 8 bytes, a run two varints, a fragment four (its creation time alone six or so).
        let size: usize = self
            .sources
            .entries
            .iter()
            .map(|(_, s)| {
                8 + 4 * s.unique_seq.run_count()
                    + s.by_time.values().map(|set| 8 + 4 * set.run_count()).sum::<usize>()
                    + 16 * s.fragments.len()
            })
            .sum();
        let mut v = Vec::with_capacity(2 + size);
        self.encode(&mut v);
        v
    }

    /// Decodes the binary form. Every length is checked against the input, so hostile input costs at most
    /// its own size.
    pub fn decode(input: &[u8]) -> Result<Summary, SummaryError> {
        Summary::decode_checked(input).map(|(s, _)| s)
    }

    /// Decodes the binary form and tells whether it is canonical: exactly what [`Summary::to_bytes`] writes
    /// for the result. [`Summary::decode`] tolerates a few other spellings (long varints, non-canonical
    /// EIDs, sources or fragments out of order or repeated); a signed record must not, and finding out here
    /// saves encoding the summary again to compare.
    pub fn decode_checked(input: &[u8]) -> Result<(Summary, bool), SummaryError> {
        let mut r = VarReader { input, pos: 0, loose: false };
        let version = r.byte()?;
        if version != SUMMARY_FORMAT {
            return Err(SummaryError::Version(version));
        }
        let mut out = Summary::new();
        let n = r.count()?;
        // Each source takes at least four bytes (an EID of three, then counts).
        let cap = n.min(r.input.len() / 4);
        out.sources.entries.reserve_exact(cap);
        out.sources.keys.reserve_exact(cap);
        for _ in 0..n {
            let (eid, used) = Eid::decode_prefix(&input[r.pos..]).map_err(|_| SummaryError::Malformed(r.pos))?;
            r.pos += used;
            // Every other spelling of an EID (a longer head, an indefinite length) is longer than the shortest
            // one, which is what encoding writes: the length alone tells, without encoding it again.
            let in_order = out.sources.entries.last().is_none_or(|(last, _)| *last < eid);
            if eid.encoded_len() != used || !in_order {
                r.loose = true;
            }
            let mut s = SourceSummary { unique_seq: decode_runs(&mut r)?, ..Default::default() };
            let times = r.count()?;
            let mut t = 0u64;
            for i in 0..times {
                let dt = r.varint()?;
                if i > 0 && dt == 0 {
                    return Err(SummaryError::Malformed(r.pos));
                }
                t = t.checked_add(dt).ok_or(SummaryError::Malformed(r.pos))?;
                let runs = decode_runs(&mut r)?;
                // Canonical form only: an empty entry would make two encodings of one summary.
                if runs.is_empty() {
                    return Err(SummaryError::Malformed(r.pos));
                }
                s.by_time.insert(t, runs);
            }
            let frags = r.count()?;
            let mut list = Vec::with_capacity(frags.min(r.input.len() / 4));
            for _ in 0..frags {
                list.push((r.varint()?, r.varint()?, r.varint()?, r.varint()?));
            }
            if !list.is_sorted_by(|a, b| a < b) {
                r.loose = true;
            }
            s.fragments = FragmentSet::from_unsorted(list);
            // In order (as canonical input always is), a source goes at the end, with no search.
            if s.is_empty() {
                return Err(SummaryError::Malformed(r.pos));
            }
            if in_order {
                out.sources.push(eid, s);
            } else if !out.sources.insert_new(eid, s) {
                return Err(SummaryError::Malformed(r.pos));
            }
        }
        if r.pos != input.len() {
            return Err(SummaryError::Malformed(r.pos));
        }
        let canonical = !r.loose;
        debug_assert_eq!(canonical, out.to_bytes() == input);
        Ok((out, canonical))
    }
}

/// Version of [`Summary::encode`]'s format.
const SUMMARY_FORMAT: u8 = 1;

/// A summary that cannot be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SummaryError {
    /// Unknown format version.
    #[error("summary format version {0} is not supported")]
    Version(u8),
    /// Malformed or truncated at the given byte.
    #[error("malformed summary at byte {0}")]
    Malformed(usize),
}

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Runs as (gap from the previous run's end, length - 1) pairs, so dense sets cost a few bytes per run.
fn encode_runs(out: &mut Vec<u8>, set: &RangeSet) {
    varint(out, set.run_count() as u64);
    let mut prev_end: Option<u64> = None;
    for r in set.runs() {
        let gap = match prev_end {
            None => *r.start(),
            Some(p) => r.start() - p - 2,
        };
        varint(out, gap);
        varint(out, r.end() - r.start());
        prev_end = Some(*r.end());
    }
}

fn decode_runs(r: &mut VarReader<'_>) -> Result<RangeSet, SummaryError> {
    let n = r.count()?;
    // Each run takes at least two bytes.
    let mut set = RangeSet { runs: Runs::with_capacity(n.min(r.input.len() / 2)) };
    let mut prev_end: Option<u64> = None;
    let bad = |at| SummaryError::Malformed(at);
    for _ in 0..n {
        let gap = r.varint()?;
        let span = r.varint()?;
        let start = match prev_end {
            None => gap,
            Some(p) => p.checked_add(2).and_then(|v| v.checked_add(gap)).ok_or(bad(r.pos))?,
        };
        let end = start.checked_add(span).ok_or(bad(r.pos))?;
        set.runs.push((start, end));
        prev_end = Some(end);
    }
    Ok(set)
}

struct VarReader<'a> {
    input: &'a [u8],
    pos: usize,
    /// A varint was longer than it needed to be.
    loose: bool,
}

impl VarReader<'_> {
    fn byte(&mut self) -> Result<u8, SummaryError> {
        let b = *self.input.get(self.pos).ok_or(SummaryError::Malformed(self.pos))?;
        self.pos += 1;
        Ok(b)
    }

    fn varint(&mut self) -> Result<u64, SummaryError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let at = self.pos;
            let b = self.byte()?;
            let bits = u64::from(b & 0x7f);
            if shift == 63 && bits > 1 {
                return Err(SummaryError::Malformed(at));
            }
            v |= bits << shift;
            if b & 0x80 == 0 {
                // A last group of zeros after the first byte only lengthens the encoding.
                if b == 0 && shift > 0 {
                    self.loose = true;
                }
                return Ok(v);
            }
        }
        Err(SummaryError::Malformed(self.pos))
    }

    /// A count of following items, each at least one byte, so it cannot exceed the bytes left.
    fn count(&mut self) -> Result<usize, SummaryError> {
        let at = self.pos;
        let n = self.varint()?;
        if n > (self.input.len() - self.pos) as u64 {
            return Err(SummaryError::Malformed(at));
        }
        Ok(n as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bpv7::CreationTimestamp;

    fn id(src: &Eid, t: u64, q: u64) -> BundleId {
        BundleId { source: src.clone(), creation: CreationTimestamp::new(t, q), fragment: None }
    }

    #[test]
    fn rangeset_merges_and_splits() {
        let mut s = RangeSet::new();
        for x in [1, 3, 2, 10, 5, 4] {
            assert!(s.insert(x));
        }
        assert!(!s.insert(3));
        assert_eq!(s.runs().collect::<Vec<_>>(), vec![1..=5, 10..=10]);
        assert!(s.remove(3));
        assert_eq!(s.runs().collect::<Vec<_>>(), vec![1..=2, 4..=5, 10..=10]);
        assert!(!s.remove(3));
        s.insert_range(0, 20);
        assert_eq!(s.runs().collect::<Vec<_>>(), vec![0..=20]);
        s.insert(u64::MAX);
        s.insert(u64::MAX - 1);
        assert_eq!(s.run_count(), 2);
        assert!(s.contains(u64::MAX));
    }

    #[test]
    fn a_fragment_is_held_as_itself_or_as_its_whole_bundle_but_not_the_other_way() {
        let src = Eid::ipn(7, 0);
        let piece = |t, q| BundleId { fragment: Some((0, 10)), ..id(&src, t, q) };
        for mode in [SeqMode::Unique, SeqMode::PerTime] {
            let mut s = Summary::new();
            s.insert(&id(&src, 100, 1), mode);
            s.insert(&piece(100, 2), mode);
            let e = s.source(&src).expect("source listed");
            assert!(e.contains_or_whole(&piece(100, 1), mode), "piece of a listed whole bundle");
            assert!(e.contains_or_whole(&piece(100, 2), mode), "listed piece");
            assert!(!e.contains_or_whole(&id(&src, 100, 2), mode), "a piece does not stand for the whole");
            assert!(!e.contains_or_whole(&piece(100, 3), mode), "nothing of it listed");
            for x in [id(&src, 100, 1), piece(100, 1), piece(100, 2), id(&src, 100, 2)] {
                assert_eq!(e.contains(&x, mode), s.contains(&x, mode), "{x:?}");
            }
        }
    }

    #[test]
    fn pieces_of_a_listed_whole_bundle_are_dropped_and_others_kept() {
        let (a, b) = (Eid::ipn(1, 0), Eid::ipn(2, 0));
        let piece = |src: &Eid, t, q, off| BundleId { fragment: Some((off, 10)), ..id(src, t, q) };
        let mut s = Summary::new();
        s.insert(&id(&a, 5, 1), SeqMode::Unique);
        s.insert(&id(&a, 6, 2), SeqMode::PerTime);
        for off in [0, 10] {
            s.insert(&piece(&a, 5, 1, off), SeqMode::Unique); // whole listed by sequence number
            s.insert(&piece(&a, 6, 2, off), SeqMode::PerTime); // whole listed by creation time
            s.insert(&piece(&a, 7, 3, off), SeqMode::PerTime); // whole not listed here
            s.insert(&piece(&b, 8, 4, off), SeqMode::PerTime); // whole listed only in the other summary
        }
        let mut other = Summary::new();
        other.insert(&id(&b, 8, 4), SeqMode::PerTime);
        let mut alone = s.clone();
        alone.drop_covered_fragments(&[]);
        assert_eq!(alone.run_count(), 2 + 2 + 2, "two wholes and four pieces are left: {alone:?}");
        s.drop_covered_fragments(&[&other]);
        let pieces: Vec<_> = s.sources().flat_map(|(src, x)| x.fragment_ids(src).collect::<Vec<_>>()).collect();
        assert_eq!(pieces, vec![piece(&a, 7, 3, 0), piece(&a, 7, 3, 10)]);
        assert!(s.source(&b).is_none(), "a source left with nothing is gone");
        assert!(s.contains(&id(&a, 5, 1), SeqMode::Unique) && s.contains(&id(&a, 6, 2), SeqMode::PerTime));
    }

    #[test]
    fn station_output_is_one_run() {
        let st = Eid::dtn("station1", "").unwrap();
        let mut sum = Summary::new();
        for q in 0..10_000 {
            // Clocked station: every bundle a different creation time, unique sequence numbers.
            sum.insert(&id(&st, 800_000_000_000 + q * 1000, q), SeqMode::Unique);
        }
        assert_eq!(sum.run_count(), 1);
        assert!(sum.to_bytes().len() < 40);
    }

    #[test]
    fn difference_is_what_the_peer_lacks() {
        let a = Eid::ipn(1, 0);
        let mut mine = Summary::new();
        let mut theirs = Summary::new();
        for q in 0..100 {
            mine.insert(&id(&a, 0, q), SeqMode::PerTime);
        }
        for q in (10..50).chain(60..70) {
            theirs.insert(&id(&a, 0, q), SeqMode::PerTime);
        }
        let d = mine.difference(&theirs);
        let runs: Vec<_> = d.sources().next().unwrap().1.by_time[&0].runs().collect();
        assert_eq!(runs, vec![0..=9, 50..=59, 70..=99]);
        assert!(theirs.difference(&mine).is_empty());
    }

    #[test]
    fn difference_with_one_value_runs() {
        let mut a = RangeSet::new();
        a.insert(5);
        a.insert(u64::MAX);
        let mut b = RangeSet::new();
        b.insert(5);
        assert_eq!(a.difference(&b).runs().collect::<Vec<_>>(), vec![u64::MAX..=u64::MAX]);
        assert_eq!(b.difference(&a), RangeSet::new());
        b.insert(7);
        assert_eq!(a.difference(&b).runs().collect::<Vec<_>>(), vec![u64::MAX..=u64::MAX]);
    }

    #[test]
    fn encode_roundtrip_and_garbage() {
        let mut s = Summary::new();
        let a = Eid::dtn("a", "x").unwrap();
        s.insert(&id(&a, 5, 1), SeqMode::PerTime);
        s.insert(&id(&a, 9, 1), SeqMode::Unique);
        s.insert(&BundleId { fragment: Some((10, 20)), ..id(&Eid::ipn(7, 1), 3, 4) }, SeqMode::PerTime);
        let b = s.to_bytes();
        assert_eq!(Summary::decode(&b).unwrap(), s);
        for cut in 0..b.len() {
            assert!(Summary::decode(&b[..cut]).is_err(), "prefix {cut} accepted");
        }
        assert_eq!(Summary::decode(&[9]), Err(SummaryError::Version(9)));
        // Accepted, but not canonical: a long varint, and two fragments out of order.
        assert_eq!(Summary::decode_checked(&[1, 0x80, 0x00]), Ok((Summary::new(), false)));
        assert_eq!(Summary::decode_checked(&[1, 0]), Ok((Summary::new(), true)));
        let swapped = [1, 1, 0x82, 0x02, 0x82, 0x07, 0x01, 0, 0, 2, 3, 4, 5, 20, 3, 4, 0, 10];
        let (d, canonical) = Summary::decode_checked(&swapped).unwrap();
        assert!(!canonical);
        assert_eq!(d.run_count(), 2);
        assert!(Summary::decode(&[1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]).is_err());
    }
}

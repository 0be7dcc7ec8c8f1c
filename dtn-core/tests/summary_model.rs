//! `RangeSet` and `Summary` against a plain set model: any sequence of inserts and removes leaves the same
//! membership, differences and unions match the model's, and the binary form round-trips.

use std::collections::BTreeSet;

use dtn_core::bpv7::{BundleId, CreationTimestamp, Eid};
use dtn_core::store::{RangeSet, SeqMode, Summary};
use proptest::prelude::*;

fn small() -> impl Strategy<Value = u64> {
    prop_oneof![0u64..64, Just(u64::MAX), Just(u64::MAX - 1), Just(0)]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn rangeset_matches_a_set(ops in prop::collection::vec((any::<bool>(), small()), 0..200),
                              other in prop::collection::vec(small(), 0..60)) {
        let mut set = RangeSet::new();
        let mut model = BTreeSet::new();
        for (add, x) in ops {
            if add {
                prop_assert_eq!(set.insert(x), model.insert(x));
            } else {
                prop_assert_eq!(set.remove(x), model.remove(&x));
            }
        }
        let values: BTreeSet<u64> = set.runs().flat_map(|r| {
            // Runs near u64::MAX are short in this strategy; cap each for the expansion.
            let (s, e) = (*r.start(), *r.end());
            (0..=(e - s).min(200)).map(move |i| s + i)
        }).collect();
        prop_assert_eq!(&values, &model);
        prop_assert_eq!(set.len(), model.len() as u64);
        // Runs are disjoint and never adjacent (else they would have merged).
        let runs: Vec<_> = set.runs().collect();
        for w in runs.windows(2) {
            prop_assert!(w[0].end().saturating_add(1) < *w[1].start());
        }
        let mut o = RangeSet::new();
        let om: BTreeSet<u64> = other.into_iter().inspect(|&x| { o.insert(x); }).collect();
        let d = set.difference(&o);
        let dm: BTreeSet<u64> = model.difference(&om).copied().collect();
        for x in model.iter().chain(om.iter()) {
            prop_assert_eq!(d.contains(*x), dm.contains(x), "value {}", x);
        }
        prop_assert_eq!(d.len(), dm.len() as u64);
    }

    #[test]
    fn summary_matches_a_set(ids in prop::collection::vec((0u64..4, 0u64..3, 0u64..40, any::<bool>(), 0u8..8), 0..150),
                             theirs in prop::collection::vec((0u64..4, 0u64..3, 0u64..40, any::<bool>(), 0u8..8), 0..80)) {
        let mk = |(src, t, q, unique, frag): (u64, u64, u64, bool, u8)| {
            let source = if src == 3 { Eid::dtn("station", "x").unwrap() } else { Eid::ipn(src + 1, 0) };
            let fragment = (frag == 0).then_some((q * 10, 10));
            (BundleId { source, creation: CreationTimestamp::new(t, q), fragment },
             if unique { SeqMode::Unique } else { SeqMode::PerTime })
        };
        let mut mine = Summary::new();
        let mut model = BTreeSet::new();
        for x in ids {
            let (id, mode) = mk(x);
            // Unique-mode IDs are keyed by sequence number only; the model keys them the same way.
            let key = match (mode, id.fragment) {
                (SeqMode::Unique, None) => (id.source.clone(), u64::MAX, id.creation.sequence, None),
                _ => (id.source.clone(), id.creation.time.0, id.creation.sequence, id.fragment),
            };
            prop_assert_eq!(mine.insert(&id, mode), model.insert(key));
            prop_assert!(mine.contains(&id, mode));
        }
        let mut other = Summary::new();
        for x in theirs {
            let (id, mode) = mk(x);
            other.insert(&id, mode);
        }
        let bytes = mine.to_bytes();
        prop_assert_eq!(Summary::decode(&bytes).unwrap(), mine.clone());
        let d = mine.difference(&other);
        let mut u = d.clone();
        u.union_with(&other);
        // (mine − theirs) ∪ theirs ⊇ mine, and mine − theirs shares nothing with theirs.
        prop_assert!(mine.difference(&u).is_empty());
        prop_assert!(d.difference(&d.difference(&other)).is_empty());
        prop_assert!(mine.run_count() <= model.len());
        // Union by merge, by single inserts (a much smaller side) and by taking over agree with each other and
        // with the model.
        let mut u1 = mine.clone();
        u1.union_with(&other);
        let mut u2 = other.clone();
        u2.union_with(&mine);
        let mut u3 = mine.clone();
        u3.union_owned(other.clone());
        prop_assert_eq!(&u1, &u2);
        prop_assert_eq!(&u1, &u3);
        prop_assert!(u1.difference(&mine).difference(&other).is_empty());
        prop_assert!(mine.difference(&u1).is_empty() && other.difference(&u1).is_empty());
        prop_assert_eq!(Summary::decode(&u1.to_bytes()).unwrap(), u1.clone());
        // One pass against several equals successive differences.
        prop_assert_eq!(mine.difference_all(&[&other, &d]), mine.difference(&other).difference(&d));
        prop_assert_eq!(mine.difference_all(&[&other]), mine.difference(&other));
        prop_assert_eq!(mine.difference_all(&[]), mine.clone());
        prop_assert_eq!(other.difference_all(&[&mine, &Summary::new()]), other.difference(&mine));
    }

    #[test]
    fn rangeset_union_matches_a_set(a in prop::collection::vec((small(), 0u64..5), 0..60),
                                    b in prop::collection::vec((small(), 0u64..5), 0..60)) {
        let build = |v: &[(u64, u64)]| {
            let mut set = RangeSet::new();
            let mut model = BTreeSet::new();
            for &(x, n) in v {
                let hi = x.saturating_add(n);
                set.insert_range(x, hi);
                model.extend((0..=hi - x).map(|i| x + i));
            }
            (set, model)
        };
        let (sa, ma) = build(&a);
        let (sb, mb) = build(&b);
        let mut u = sa.clone();
        u.union_with(&sb);
        let mu: BTreeSet<u64> = ma.union(&mb).copied().collect();
        prop_assert_eq!(u.len(), mu.len() as u64);
        for x in ma.iter().chain(mb.iter()) {
            prop_assert!(u.contains(*x));
        }
        let runs: Vec<_> = u.runs().collect();
        for w in runs.windows(2) {
            prop_assert!(w[0].end().saturating_add(1) < *w[1].start());
        }
        // The same set however it was built: by single values.
        let mut one = RangeSet::new();
        for x in &mu {
            one.insert(*x);
        }
        prop_assert_eq!(&u, &one);
        let mut other_way = sb.clone();
        other_way.union_with(&sa);
        prop_assert_eq!(&u, &other_way);
        let d = sa.difference(&sb);
        let md: BTreeSet<u64> = ma.difference(&mb).copied().collect();
        prop_assert_eq!(d.len(), md.len() as u64);
        for x in &md {
            prop_assert!(d.contains(*x));
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

    /// `decode_checked` calls an input canonical exactly when re-encoding what it decoded gives it back,
    /// for valid encodings and for bytes changed, inserted or dropped in them.
    #[test]
    fn canonical_flag_matches_reencoding(ids in prop::collection::vec((0u64..4, 0u64..3, 0u64..200, any::<bool>(), 0u8..4), 0..40),
                                         edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 0..3)) {
        let mut s = Summary::new();
        for (src, t, q, unique, frag) in ids {
            let source = if src == 3 { Eid::dtn("station", "x").unwrap() } else { Eid::ipn(src * 100 + 1, 0) };
            let fragment = (frag == 0).then_some((q * 10, 10));
            s.insert(&BundleId { source, creation: CreationTimestamp::new(t * 1000, q), fragment },
                     if unique { SeqMode::Unique } else { SeqMode::PerTime });
        }
        let mut bytes = s.to_bytes();
        prop_assert_eq!(Summary::decode_checked(&bytes), Ok((s, true)));
        for (at, b, kind) in edits {
            let i = at.index(bytes.len() + 1);
            match kind {
                0 if i < bytes.len() => bytes[i] = b,
                1 => bytes.insert(i, b),
                _ if i < bytes.len() => { bytes.remove(i); }
                _ => {}
            }
        }
        if let Ok((d, canonical)) = Summary::decode_checked(&bytes) {
            prop_assert_eq!(canonical, d.to_bytes() == bytes);
        }
    }
}

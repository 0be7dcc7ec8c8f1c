//! Property tests of fragmentation and reassembly (RFC 9171 §5.8, §5.9) over arbitrary valid bundles, canonical
//! and not (generators in `common`).
//!
//! * (a) every fragment passes strict validation, has the right ID and payload, and carries the extension blocks
//!   §5.8 asks for; must-not-fragment bundles are refused unless they fit;
//! * (b) fragments reassemble, in any order, with duplicates and with overlaps from fragmenting fragments
//!   differently, into the original bundle byte for byte (a longer-than-needed payload length head excepted);
//! * (c) reactive fragmentation: for cuts of a transfer at every byte, the receiver's fragment holds exactly the
//!   payload bytes `payload_bytes_within` counts, equals what the sender computes for them, and reassembles with
//!   the rest into the original;
//! * (d) arbitrary and mutated input never panics, and what is not a bundle is refused;
//! * (e) `covers` agrees with a byte map.
//!
//! The number of cases per property can be raised with the `PROPTEST_CASES` environment variable.

mod common;

use common::*;
use dtn_core::bpv7::*;
use proptest::collection::vec;
use proptest::prelude::*;

/// `cases` unless `PROPTEST_CASES` asks for another number; no failure files are written next to the sources.
fn config(cases: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(cases);
    let max_global_rejects = cases.saturating_mul(4);
    ProptestConfig {
        cases,
        failure_persistence: None,
        max_shrink_iters: 2048,
        max_global_rejects,
        ..ProptestConfig::default()
    }
}

/// A valid bundle, canonical or with longer-than-needed CBOR heads. `fragmentable` clears the must-not-fragment
/// flag where RFC 9171 allows it (not for anonymous bundles); `whole` makes the bundle not a fragment.
fn encoded_bundle(fragmentable: bool, whole: bool) -> impl Strategy<Value = (Spec, Vec<u8>)> {
    (wire_spec(), prop::option::of(widths()), any::<bool>()).prop_map(move |(mut spec, widths, clear)| {
        if (fragmentable || clear) && !spec.source.is_null() {
            spec.flags &= !BundleFlags::MUST_NOT_FRAGMENT.0;
        }
        if whole {
            spec.fragment = None;
            spec.flags &= !BundleFlags::IS_FRAGMENT.0;
        }
        match widths {
            Some(w) => spec.widen(&w),
            None => {
                let bytes = spec.encode();
                (spec, bytes)
            }
        }
    })
}

/// A maximum fragment payload: a fraction of `len` plus a little, so that the number of fragments stays small.
fn max_payload(len: usize, divisor: u64, extra: u64) -> u64 {
    (len as u64 / divisor).max(1) + extra
}

/// ADU offset of the bundle's first payload byte, and the total ADU length.
fn own_range(b: &Bundle<'_>) -> (u64, u64) {
    let len = b.payload().len() as u64;
    b.primary().fragment.map_or((0, len), |f| (f.offset, f.total_adu_len))
}

/// Bytes of a CBOR head starting at `at`.
fn head_width(b: &[u8], at: usize) -> usize {
    match b[at] & 0x1f {
        24 => 2,
        25 => 3,
        26 => 5,
        27 => 9,
        _ => 1,
    }
}

/// The bundle's encoding with the payload block's data-length head in its shortest form (CRC recomputed):
/// what reassembly produces, since the fragments' heads are written afresh.
fn with_shortest_payload_length(b: &Bundle<'_>) -> Vec<u8> {
    let block = b.payload_block().encoded();
    // The generators only make definite-length blocks: the CRC field is the last item.
    assert_ne!(block[0], 0x9f);
    let mut at = 0;
    for _ in 0..5 {
        at += head_width(block, at);
    }
    let mut c = Cbor::canonical();
    c.out.extend_from_slice(&block[..at]);
    c.head(2, b.payload().len() as u64);
    c.out.extend_from_slice(b.payload());
    c.crc(b.payload_block().crc_type(), 0);
    let mut out = vec![0x9f];
    out.extend_from_slice(b.primary_encoded());
    for e in b.extension_blocks() {
        out.extend_from_slice(e.encoded());
    }
    out.extend_from_slice(&c.out);
    out.push(0xff);
    out
}

/// Checks what RFC 9171 §5.8 and the codec require of the fragments `pieces` of `original`, made in order.
fn check_pieces(original: &Bundle<'_>, pieces: &[Bundle<'static>]) -> Result<(), TestCaseError> {
    let (own, total) = own_range(original);
    let clockless = original.primary().creation.time.0 == 0;
    let mut next = own;
    for (i, p) in pieces.iter().enumerate() {
        let bytes = p.to_vec();
        let decoded = Bundle::decode(&bytes);
        prop_assert!(decoded.is_ok(), "fragment {} refused: {:?}", i, decoded.err());
        let len = p.payload().len() as u64;
        prop_assert!(len > 0);
        prop_assert_eq!(p.id().fragment, Some((next, len)));
        prop_assert_eq!(p.primary().fragment.map(|f| f.total_adu_len), Some(total));
        prop_assert!(p.primary().flags.contains(BundleFlags::IS_FRAGMENT));
        let at = (next - own) as usize;
        prop_assert_eq!(p.payload(), &original.payload()[at..at + len as usize]);
        // Everything but the fragment fields is the original's.
        let (mut po, mut pp) = (original.primary().clone(), p.primary().clone());
        po.fragment = None;
        pp.fragment = None;
        po.flags = BundleFlags(po.flags.0 | BundleFlags::IS_FRAGMENT.0);
        po.crc_type = pp.crc_type;
        prop_assert_eq!(pp, po);
        let expected: Vec<&[u8]> = original
            .extension_blocks()
            .iter()
            .filter(|b| {
                i == 0
                    || b.flags().contains(BlockFlags::REPLICATE_IN_FRAGMENTS)
                    || (clockless && b.block_type() == BlockType::BUNDLE_AGE)
            })
            .map(Block::encoded)
            .collect();
        let got: Vec<&[u8]> = p.extension_blocks().iter().map(Block::encoded).collect();
        prop_assert_eq!(got, expected, "extension blocks of fragment {}", i);
        if clockless {
            prop_assert_eq!(p.bundle_age_ms(), original.bundle_age_ms());
        }
        prop_assert_eq!(p.payload_block().flags(), original.payload_block().flags());
        prop_assert_eq!(p.payload_block().crc_type(), original.payload_block().crc_type());
        next += len;
    }
    prop_assert_eq!(next, own + original.payload().len() as u64);
    Ok(())
}

/// Deterministic Fisher-Yates shuffle.
fn shuffle<T>(v: &mut [T], seed: u64) {
    let mut x = seed | 1;
    for i in (1..v.len()).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.swap(i, (x % (i as u64 + 1)) as usize);
    }
}

// ---------------------------------------------------------------------------------------------------------
// (a), (b) proactive fragmentation and reassembly
// ---------------------------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(config(512))]

    /// Fragments are valid and reassemble, shuffled and with duplicates, into the original.
    #[test]
    fn fragments_are_valid_and_reassemble(
        (_spec, bytes) in encoded_bundle(false, false),
        divisor in 1..=40u64,
        extra in 0..=2u64,
        seed in any::<u64>(),
        dups in vec(any::<prop::sample::Index>(), 0..4),
    ) {
        let original = Bundle::decode(&bytes).expect("generated bundles are valid");
        let len = original.payload().len();
        let max = max_payload(len, divisor, extra);
        let result = fragment(&original, max);
        if len as u64 <= max {
            prop_assert_eq!(result, Ok(vec![original.clone().into_owned()]));
            return Ok(());
        }
        if original.primary().flags.contains(BundleFlags::MUST_NOT_FRAGMENT) {
            prop_assert_eq!(result, Err(FragmentError::MustNotFragment));
            return Ok(());
        }
        let pieces = result.expect("a fragmentable bundle fragments");
        prop_assert_eq!(pieces.len(), len.div_ceil(max as usize));
        prop_assert!(pieces.iter().all(|p| p.payload().len() as u64 <= max));
        check_pieces(&original, &pieces)?;

        let mut mixed = pieces.clone();
        mixed.extend(dups.iter().map(|d| pieces[d.index(pieces.len())].clone()));
        shuffle(&mut mixed, seed);
        let (own, total) = own_range(&original);
        let result = reassemble(&mixed);
        if original.primary().fragment.is_none() {
            let whole = result.expect("complete fragments reassemble");
            prop_assert_eq!(whole.to_vec(), with_shortest_payload_length(&original));
            prop_assert_eq!(whole.id(), original.id());
        } else if own == 0 && len as u64 == total {
            // A "fragment" holding the whole ADU reassembles into the bundle it is a fragment of.
            let whole = result.expect("complete fragments reassemble");
            prop_assert_eq!(whole.primary().fragment, None);
            prop_assert_eq!(whole.payload(), original.payload());
        } else {
            prop_assert_eq!(result, Err(FragmentError::Incomplete { missing: total - len as u64, total }));
        }
    }

    /// Fragmenting fragments differently and mixing the results, overlapping and duplicated, still
    /// reassembles into the original; leaving one piece out is reported with the number of bytes missing.
    #[test]
    fn overlapping_refragmentations_reassemble(
        (_spec, bytes) in encoded_bundle(true, true),
        (d1, d2, d3) in (1..=6u64, 1..=8u64, 1..=5u64),
        keep in vec(any::<bool>(), 16),
        seed in any::<u64>(),
    ) {
        let original = Bundle::decode(&bytes).expect("generated bundles are valid");
        prop_assume!(original.primary().fragment.is_none());
        prop_assume!(!original.primary().flags.contains(BundleFlags::MUST_NOT_FRAGMENT));
        let len = original.payload().len();
        prop_assume!(len >= 2);
        let a = fragment(&original, max_payload(len, d1 + 1, 0)).expect("fragmentable");
        let b = fragment(&original, max_payload(len, d2 + 1, 1)).expect("fragmentable");
        let mut mixed = Vec::new();
        for p in &a {
            let sub = fragment(p, max_payload(p.payload().len(), d3, 0)).expect("fragments fragment");
            if sub.len() > 1 {
                check_pieces(p, &sub)?;
            }
            mixed.extend(sub);
        }
        mixed.extend(b.iter().zip(keep.iter().cycle()).filter(|(_, k)| **k).map(|(p, _)| p.clone()));
        mixed.extend(a.iter().cloned());
        shuffle(&mut mixed, seed);
        let whole = reassemble(&mixed).expect("complete fragments reassemble");
        prop_assert_eq!(whole.to_vec(), with_shortest_payload_length(&original));

        if a.len() > 1 {
            let gap = (seed % a.len() as u64) as usize;
            let mut partial = a.clone();
            let missing = partial.remove(gap).payload().len() as u64;
            let total = len as u64;
            prop_assert_eq!(reassemble(&partial), Err(FragmentError::Incomplete { missing, total }));
        }
    }

    /// Arbitrary ADU ranges within the payload give fragments with exactly those bytes; ranges outside it are
    /// refused.
    #[test]
    fn ranges_give_exactly_their_bytes(
        (_spec, bytes) in encoded_bundle(true, false),
        a in any::<prop::sample::Index>(),
        b in any::<prop::sample::Index>(),
        outside in 1..1000u64,
    ) {
        let original = Bundle::decode(&bytes).expect("generated bundles are valid");
        prop_assume!(!original.primary().flags.contains(BundleFlags::MUST_NOT_FRAGMENT));
        let len = original.payload().len() as u64;
        let (own, _) = own_range(&original);
        let (x, y) = (a.index(len as usize + 1) as u64, b.index(len as usize + 1) as u64);
        let (start, end) = (own + x.min(y), own + x.max(y));
        let result = fragment_range(&original, start, end);
        if start == end && (start, end) != (own, own + len) {
            let refused = matches!(result, Err(FragmentError::BadRange { .. }));
            prop_assert!(refused);
        } else if (start, end) == (own, own + len) {
            prop_assert_eq!(result, Ok(original.clone().into_owned()));
        } else {
            let piece = result.expect("a range within the payload");
            prop_assert_eq!(piece.id().fragment, Some((start, end - start)));
            prop_assert_eq!(piece.payload(), &original.payload()[(start - own) as usize..(end - own) as usize]);
            prop_assert!(Bundle::decode(&piece.to_vec()).is_ok());
        }
        let beyond = fragment_range(&original, own, own + len + outside);
        let refused = matches!(beyond, Err(FragmentError::BadRange { .. }));
        prop_assert!(refused);
        if own > 0 {
            let before = fragment_range(&original, own - 1, own + len);
            let refused = matches!(before, Err(FragmentError::BadRange { .. }));
            prop_assert!(refused);
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// (c) reactive fragmentation
// ---------------------------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(config(192))]

    /// For a transfer cut after k bytes, the receiver keeps a fragment of exactly the payload bytes that
    /// arrived, identical to the sender's view of them, and the rest reassembles with it into the original.
    #[test]
    fn cut_transfers_leave_the_right_fragment(
        (_spec, bytes) in encoded_bundle(false, false),
        sample in vec(any::<prop::sample::Index>(), 48),
    ) {
        let original = Bundle::decode(&bytes).expect("generated bundles are valid");
        let limits = Limits::default();
        let len = original.payload().len() as u64;
        let (own, total) = own_range(&original);
        let must_not = original.primary().flags.contains(BundleFlags::MUST_NOT_FRAGMENT);
        // Definite-length blocks only (see `with_shortest_payload_length`): the data ends just before the CRC.
        let data_end = bytes.len() - 1 - original.payload_block().crc_type().field_len();
        let data_start = data_end - len as usize;
        // Every cut of small bundles; for large ones, cuts around the payload's edges and a sample.
        let cuts: Vec<usize> = if bytes.len() <= 400 {
            (0..=bytes.len()).collect()
        } else {
            let edges = [0, 1, data_start - 1, data_start, data_start + 1, bytes.len() - 1, bytes.len()];
            let ends = bytes.len() - 8..bytes.len();
            edges.into_iter().chain(ends).chain(sample.iter().map(|i| i.index(bytes.len() + 1))).collect()
        };
        for k in cuts {
            let received = payload_bytes_within(&bytes, k as u64).expect("the header is valid");
            prop_assert_eq!(received, (k.saturating_sub(data_start) as u64).min(len));
            let got = fragment_from_prefix(&bytes[..k], &limits);
            prop_assert!(got.is_ok(), "cut at {}: {:?}", k, got.as_ref().err());
            let got = got.expect("checked");
            if k >= data_start && received == len {
                // The whole payload arrived: the bundle itself, not a fragment; rebuilt if its end was cut.
                let expected = if k == bytes.len() { bytes.clone() } else { with_shortest_payload_length(&original) };
                prop_assert_eq!(got.map(|b| b.to_vec()), Some(expected), "cut at {}", k);
                continue;
            }
            if received == 0 || must_not {
                prop_assert_eq!(got, None, "cut at {}", k);
                continue;
            }
            let got = got.expect("payload bytes arrived");
            prop_assert_eq!(got.id().fragment, Some((own, received)));
            prop_assert_eq!(got.payload(), &original.payload()[..received as usize]);
            let sender = fragment_range(&original, own, own + received).expect("the same range at the sender");
            prop_assert_eq!(got.to_vec(), sender.to_vec());
            prop_assert!(Bundle::decode(&got.to_vec()).is_ok());
            if received < len {
                let rest = fragment_range(&original, own + received, own + len).expect("the rest");
                let result = reassemble(&[rest, got]);
                if original.primary().fragment.is_none() {
                    let whole = result.expect("the two parts are the whole");
                    prop_assert_eq!(whole.to_vec(), with_shortest_payload_length(&original));
                } else if own > 0 || len < total {
                    prop_assert_eq!(result, Err(FragmentError::Incomplete { missing: total - len, total }));
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// (d) hostile input
// ---------------------------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(config(1024))]

    /// Arbitrary bytes never panic; what does not start like a bundle is refused by both functions.
    #[test]
    fn arbitrary_bytes_are_refused_without_panic(
        bytes in vec(any::<u8>(), 0..300),
        bundle_start in any::<bool>(),
        durable in any::<u64>(),
    ) {
        let mut input = bytes;
        if bundle_start {
            input.insert(0, 0x9f);
        }
        let limits = Limits::default();
        let from_prefix = fragment_from_prefix(&input, &limits);
        let within = payload_bytes_within(&input, durable);
        if input.first() != Some(&0x9f) {
            prop_assert!(within.is_err());
            prop_assert!(from_prefix.is_err() || input.is_empty());
        }
        if let Ok(Some(b)) = from_prefix {
            prop_assert!(Bundle::decode(&b.to_vec()).is_ok());
        }
    }

    /// Mutated and truncated bundles never panic, and whatever is salvaged from them is a valid bundle.
    #[test]
    fn mutated_bundles_never_panic(
        (_spec, bytes) in encoded_bundle(false, false),
        flips in vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut input = bytes;
        for (at, x) in flips {
            let i = at.index(input.len());
            input[i] ^= x | 1;
        }
        input.truncate(cut.index(input.len() + 1));
        let within = payload_bytes_within(&input, input.len() as u64);
        if let Ok(n) = within {
            prop_assert!(n <= input.len() as u64);
        }
        if let Ok(Some(b)) = fragment_from_prefix(&input, &Limits::default()) {
            prop_assert!(Bundle::decode(&b.to_vec()).is_ok());
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// (e) coverage
// ---------------------------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(config(1024))]

    /// `covers` says yes exactly when every byte of 0..total lies in some range.
    #[test]
    fn covers_matches_a_byte_map(ranges in vec((0..64u64, 0..24u64), 0..8), total in 0..72u64) {
        let mut map = vec![false; total as usize];
        for &(offset, len) in &ranges {
            for i in offset..(offset + len).min(total) {
                map[i as usize] = true;
            }
        }
        prop_assert_eq!(covers(&ranges, total), map.iter().all(|&b| b));
    }
}

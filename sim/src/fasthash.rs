//! A fast hasher for the simulator's own maps (links, sizes, stand-in bytes, hop counts), keyed by small
//! integers and bundle IDs that come from the run itself, not from anyone who could choose them to collide.
//! std's SipHash is built to withstand that; here it only cost time. Nothing iterates these maps into a
//! report, so results do not depend on the hasher.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

/// The multiply-rotate hash rustc uses for its own tables (FxHash).
#[derive(Debug, Default, Clone, Copy)]
pub struct FxHasher {
    hash: u64,
}

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl FxHasher {
    fn add(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(SEED);
    }
}

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.add(u64::from_le_bytes(w));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(w));
        }
    }
    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }
    fn write_u16(&mut self, i: u16) {
        self.add(u64::from(i));
    }
    fn write_u32(&mut self, i: u32) {
        self.add(u64::from(i));
    }
    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }
    fn finish(&self) -> u64 {
        self.hash
    }
}

/// A `HashMap` with [`FxHasher`].
pub type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;
/// A `HashSet` with [`FxHasher`].
pub type FastSet<T> = HashSet<T, BuildHasherDefault<FxHasher>>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_that_differ_hash_apart_and_equal_ones_alike() {
        let mut m: FastMap<(u32, u32), u32> = FastMap::default();
        for a in 0..200u32 {
            for b in 0..200u32 {
                m.insert((a, b), a * 1000 + b);
            }
        }
        assert_eq!(m.len(), 40_000);
        assert_eq!(m.get(&(17, 42)), Some(&17_042));
        let h = |bytes: &[u8]| {
            let mut x = FxHasher::default();
            x.write(bytes);
            x.finish()
        };
        assert_eq!(h(b"ipn:1.0"), h(b"ipn:1.0"));
        assert_ne!(h(b"ipn:1.0"), h(b"ipn:2.0"));
    }
}

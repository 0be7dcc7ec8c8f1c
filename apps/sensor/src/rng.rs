//! Deterministic randomness without a dependency: SplitMix64, both as a stream and as a hash.
//!
//! The synthetic sources must give the same value for the same (seed, time) however they are called, so most
//! of their randomness is a hash of its coordinates ([`hash`]) rather than a stream whose state depends on
//! the order of calls. The stream ([`SplitMix64`]) is for laying out things once, such as a scene's trees.

/// SplitMix64's finaliser: a bijective mix of 64 bits.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

const GOLDEN: u64 = 0x9e37_79b9_7f4a_7c15;

/// A 64-bit hash of a seed and coordinates; changing any one of them changes every bit of the result.
pub(crate) fn hash(seed: u64, parts: &[u64]) -> u64 {
    parts.iter().fold(mix(seed.wrapping_add(GOLDEN)), |h, &p| mix(h ^ mix(p.wrapping_add(GOLDEN))))
}

/// Uniform in [0, 1) from 53 bits of `h`.
pub(crate) fn unit(h: u64) -> f64 {
    (h >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// Uniform in [-1, 1).
pub(crate) fn signed(h: u64) -> f64 {
    unit(h) * 2.0 - 1.0
}

/// A standard normal variate from two uniforms (Box–Muller), from one hash of the coordinates.
pub(crate) fn gaussian(seed: u64, parts: &[u64]) -> f64 {
    let h = hash(seed, parts);
    // 1 - unit is in (0, 1], so the logarithm is finite.
    let u1 = 1.0 - unit(h);
    let u2 = unit(mix(h ^ GOLDEN));
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// Smooth value noise in [-1, 1]: random values at multiples of `period_ms`, joined by a smoothstep so the
/// result is continuous with a continuous slope. Knot values depend only on (seed, stream, knot), so any
/// time can be evaluated on its own.
pub(crate) fn smooth_noise(seed: u64, stream: u64, t_ms: u64, period_ms: u64) -> f64 {
    let k = t_ms / period_ms;
    let f = (t_ms % period_ms) as f64 / period_ms as f64;
    let a = signed(hash(seed, &[stream, k]));
    let b = signed(hash(seed, &[stream, k + 1]));
    let s = f * f * (3.0 - 2.0 * f);
    a + (b - a) * s
}

/// A seeded stream of random numbers.
#[derive(Debug, Clone)]
pub(crate) struct SplitMix64(u64);

impl SplitMix64 {
    pub(crate) fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(GOLDEN);
        mix(self.0)
    }

    /// Uniform in [lo, hi).
    pub(crate) fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + unit(self.next_u64()) * (hi - lo)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaussian_has_unit_variance_and_zero_mean() {
        let n = 20_000;
        let xs: Vec<f64> = (0..n).map(|i| gaussian(7, &[i])).collect();
        let mean = xs.iter().sum::<f64>() / n as f64;
        let var = xs.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n as f64;
        assert!(mean.abs() < 0.03, "{mean}");
        assert!((var - 1.0).abs() < 0.05, "{var}");
        assert!(xs.iter().all(|x| x.is_finite()));
    }

    #[test]
    fn smooth_noise_is_continuous_and_bounded() {
        let mut prev = smooth_noise(1, 2, 0, 1000);
        for t in 1..5000 {
            let v = smooth_noise(1, 2, t, 1000);
            assert!((-1.0..=1.0).contains(&v));
            // The steepest smoothstep slope is 1.5 * (b - a) / period <= 3 / 1000 per ms.
            assert!((v - prev).abs() <= 0.0031, "{t}: {prev} -> {v}");
            prev = v;
        }
    }

    #[test]
    fn streams_repeat_from_a_seed() {
        let a: Vec<u64> = {
            let mut r = SplitMix64::new(5);
            (0..4).map(|_| r.next_u64()).collect()
        };
        let mut r = SplitMix64::new(5);
        assert_eq!(a, (0..4).map(|_| r.next_u64()).collect::<Vec<_>>());
        assert_ne!(hash(1, &[2, 3]), hash(1, &[3, 2]));
    }
}

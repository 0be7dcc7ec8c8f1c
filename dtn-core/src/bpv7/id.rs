//! Bundle identity (RFC 9171 §4.2.7 and §5.9): source, creation timestamp, and fragment position.

use std::fmt;

use super::eid::Eid;
use super::time::CreationTimestamp;

/// Uniquely identifies a bundle (or a fragment of one).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BundleId {
    /// Source node ID.
    pub source: Eid,
    /// Creation timestamp.
    pub creation: CreationTimestamp,
    /// For fragments: (fragment offset, payload length).
    pub fragment: Option<(u64, u64)>,
}

impl fmt::Display for BundleId {
    /// `source/time/sequence` or `source/time/sequence/offset+len`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {}", self.source, self.creation.time.0, self.creation.sequence)?;
        if let Some((off, len)) = self.fragment {
            write!(f, " fragment {off}+{len}")?;
        }
        Ok(())
    }
}

impl BundleId {
    /// The ID as one token without spaces, for URLs, file names and command lines:
    /// `source-time-sequence`, with `-offset+length` appended for a fragment (the form dtn7-rs uses for
    /// whole bundles). [`FromStr`](std::str::FromStr) reads it back.
    pub fn compact(&self) -> String {
        let mut s = format!("{}-{}-{}", self.source, self.creation.time.0, self.creation.sequence);
        if let Some((off, len)) = self.fragment {
            s.push_str(&format!("-{off}+{len}"));
        }
        s
    }
}

/// Why a [`BundleId::compact`] string could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a bundle ID (expected source-time-sequence[-offset+length]): {0}")]
pub struct BundleIdError(String);

impl std::str::FromStr for BundleId {
    type Err = BundleIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || BundleIdError(s.to_string());
        // The source may itself contain '-', so the numbers are taken from the right.
        let (rest, last) = s.rsplit_once('-').ok_or_else(bad)?;
        let (rest, fragment, seq) = match last.split_once('+') {
            Some((off, len)) => {
                let off = off.parse().map_err(|_| bad())?;
                let len = len.parse().map_err(|_| bad())?;
                let (rest, seq) = rest.rsplit_once('-').ok_or_else(bad)?;
                (rest, Some((off, len)), seq)
            }
            None => (rest, None, last),
        };
        let (source, time) = rest.rsplit_once('-').ok_or_else(bad)?;
        let time: u64 = time.parse().map_err(|_| bad())?;
        let seq: u64 = seq.parse().map_err(|_| bad())?;
        let source: Eid = source.parse().map_err(|_| bad())?;
        Ok(BundleId { source, creation: CreationTimestamp::new(time, seq), fragment })
    }
}

#[cfg(test)]
mod compact_tests {
    use super::*;

    #[test]
    fn compact_form_round_trips_and_rejects_garbage() {
        let ids = [
            BundleId { source: "dtn://st-1/".parse().unwrap(), creation: CreationTimestamp::new(7, 3), fragment: None },
            BundleId { source: Eid::ipn(5, 0), creation: CreationTimestamp::new(0, 0), fragment: Some((10, 20)) },
        ];
        for id in ids {
            let s = id.compact();
            assert!(!s.contains(' '), "{s}");
            assert_eq!(s.parse::<BundleId>(), Ok(id));
        }
        assert_eq!("dtn://st-1/-7-3".parse::<BundleId>().unwrap().source.to_string(), "dtn://st-1/");
        for bad in ["", "x", "dtn://a/-1", "dtn://a/-x-1", "dtn://a/-1-2-3+", "nope-1-2"] {
            assert!(bad.parse::<BundleId>().is_err(), "{bad}");
        }
    }
}

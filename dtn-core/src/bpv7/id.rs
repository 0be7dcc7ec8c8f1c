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

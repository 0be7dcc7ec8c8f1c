//! Our extensions to BPv7 (placeholder while being written).

//! Fragmentation and reassembly (being written).

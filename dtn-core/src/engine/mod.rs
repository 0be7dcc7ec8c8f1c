//! The router engine (being written).

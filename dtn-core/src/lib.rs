//! Sans-IO core of the DTN bundle router.
//!
//! This crate holds everything that every shell (daemon, simulator, phone library) shares and that never
//! touches a clock, a socket or a thread. It holds the Bundle Protocol version 7 codec
//! ([`bpv7`]) and the store interface with an in-memory implementation ([`store`]); the router engine builds on
//! them.

#![forbid(unsafe_code)]

pub mod bpv7;
pub mod store;

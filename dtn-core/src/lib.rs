//! Sans-IO core of the DTN bundle router.
//!
//! This crate holds everything that every shell (daemon, simulator, phone library) shares and that never
//! touches a clock, a socket or a thread. For now that is the Bundle Protocol version 7 codec
//! ([`bpv7`]); the router engine and the store trait build on it.

#![forbid(unsafe_code)]

pub mod bpv7;

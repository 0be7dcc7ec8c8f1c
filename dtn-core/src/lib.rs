//! Sans-IO core of the DTN bundle router.
//!
//! This crate holds everything that every shell (daemon, simulator, phone library) shares and that never
//! touches a clock, a socket or a thread: the Bundle Protocol version 7 codec ([`bpv7`]), our own protocol
//! extensions ([`proto`]: bundle class, custody, hello and receipts), the store interface with an in-memory
//! implementation ([`store`]), the routing agents ([`routing`]) and the router engine ([`engine`]).

#![forbid(unsafe_code)]

pub mod bpv7;
pub mod engine;
pub mod proto;
pub mod rng;
pub mod routing;
pub mod store;

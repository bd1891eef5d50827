//! Integration tests of the model client against `talaria-testkit`'s fake server over real
//! loopback HTTP. One binary for the whole crate keeps link times down.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod suite;

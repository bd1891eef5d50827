//! The agent's tools and loop, driven directly with the local executor and a real store.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod suite;

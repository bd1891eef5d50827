//! The one integration-test binary: drives the real `talaria-sandbox` binary with specs built
//! here and tries each escape next to a harmless twin that must succeed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod suite;

//! talaria-skills' one integration-test binary; the tests live in `suite/`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod suite;

//! The one integration-test binary of talaria-executor (see tests/suite/).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod suite;

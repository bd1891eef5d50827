//! One integration-test binary for talaria-gateway (see STYLE.md: link times).
#![expect(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod suite;

//! One integration-test binary for talaria-bus (see STYLE.md: link times).
#![expect(clippy::unwrap_used, reason = "tests")]

mod suite;

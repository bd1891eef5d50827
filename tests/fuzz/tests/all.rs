//! One integration-test binary for the fuzz harness (see STYLE.md: link times).

mod suite;

//! Every case of the suite, by what it attacks. Each attack sits next to a harmless twin that
//! must succeed under the same profile, so a denial shows the boundary, not a broken setup.

mod filesystem;
mod git;
mod network;
mod privilege;
mod protected;
mod races;
mod resources;
mod syscalls;

pub use filesystem::*;
pub use git::*;
pub use network::*;
pub use privilege::*;
pub use protected::*;
pub use races::*;
pub use resources::*;
pub use syscalls::*;

use std::path::Path;

/// Probe arguments.
fn args(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

/// A path as a probe argument.
fn arg(path: &Path) -> String {
    path.display().to_string()
}

#[track_caller]
fn assert_absent(path: &Path) {
    assert!(
        std::fs::symlink_metadata(path).is_err(),
        "ESCAPE: {} exists on the host",
        path.display()
    );
}

#[track_caller]
fn assert_contents(path: &Path, want: &str) {
    assert_eq!(
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
        want,
        "{} changed",
        path.display()
    );
}

/// What the probe writes into a file it creates.
const MARK: &str = "escape-probe\n";

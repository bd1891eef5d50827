//! Where Talaria keeps its files when nothing more specific says: the one place the
//! `$TALARIA_HOME` / `~/.talaria` rule is written. The CLI's home, the unit daemons' defaults
//! (`talaria_daemon::unit_home`, `talaria_daemon::default_state_dir`) and the gateway's and
//! scheduler's state directories outside systemd all start from it.

use std::path::PathBuf;

/// `$TALARIA_HOME`, else `$HOME/.talaria`; `None` when neither variable is set (or both are
/// empty).
pub fn talaria_home() -> Option<PathBuf> {
    let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    var("TALARIA_HOME")
        .map(PathBuf::from)
        .or_else(|| var("HOME").map(|home| PathBuf::from(home).join(".talaria")))
}

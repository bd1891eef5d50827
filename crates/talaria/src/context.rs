//! Loading what every command needs: the home, the configuration and the store.

use anyhow::Context;
use talaria_agent::TalariaHome;
use talaria_core::Config;
use talaria_store::Store;

pub fn home() -> anyhow::Result<TalariaHome> {
    TalariaHome::from_env().map_err(anyhow::Error::msg)
}

/// The configuration file's contents, or defaults when it does not exist.
///
/// # Errors
/// An unreadable or invalid file, with the key and line at fault.
pub fn load_config(home: &TalariaHome) -> anyhow::Result<Config> {
    home.load_config().map_err(anyhow::Error::msg)
}

/// Open (creating if needed) the home and its database.
///
/// # Errors
/// The home cannot be created, or the database cannot be opened (corrupt, locked, too new).
pub async fn open_store(home: &TalariaHome) -> anyhow::Result<Store> {
    home.ensure()
        .with_context(|| format!("cannot create {}", home.root().display()))?;
    Ok(Store::open(&home.database()).await?)
}

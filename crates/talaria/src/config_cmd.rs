//! `talaria config show|get|set|path|keys`.

use anyhow::Context;
use talaria_core::config::{KEYS, set_key};

use crate::cli::ConfigCommand;
use crate::context;

pub fn run(command: ConfigCommand) -> anyhow::Result<()> {
    let home = context::home()?;
    let path = home.config_file();
    match command {
        ConfigCommand::Path => println!("{}", path.display()),
        ConfigCommand::Keys => {
            for key in KEYS {
                println!("{:<30} {}", key.key, key.doc);
            }
        }
        ConfigCommand::Show => print!("{}", context::load_config(&home)?.to_redacted_toml()),
        ConfigCommand::Get { key } => match context::load_config(&home)?.get(&key)? {
            Some(value) => println!("{value}"),
            None => println!("(unset)"),
        },
        ConfigCommand::Set { key, value } => {
            let current = match std::fs::read_to_string(&path) {
                Ok(text) => text,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
                Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
            };
            let updated = set_key(&current, &key, &value, &path.display().to_string())?;
            home.ensure()
                .with_context(|| format!("cannot create {}", home.root().display()))?;
            write_private(&path, &updated)
                .with_context(|| format!("cannot write {}", path.display()))?;
            println!("{key} set in {}", path.display());
        }
    }
    Ok(())
}

/// Replace the file atomically, readable by its owner only (it may hold an API key).
pub(crate) fn write_private(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("toml.tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)
}

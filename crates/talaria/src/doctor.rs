//! `talaria doctor`: is this machine ready? Each check prints ok, warn or fail with a hint; the
//! command exits non-zero when any check fails.

use std::time::Duration;

use talaria_core::Config;
use talaria_llm::ChatProvider;

use crate::Exit;
use crate::cli::EndpointArgs;
use crate::context;
use crate::endpoint;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Level {
    Ok,
    Warn,
    Fail,
}

struct Report {
    failed: bool,
}

impl Report {
    fn line(&mut self, level: Level, name: &str, detail: &str, hint: Option<&str>) {
        let tag = match level {
            Level::Ok => "ok  ",
            Level::Warn => "warn",
            Level::Fail => {
                self.failed = true;
                "fail"
            }
        };
        println!("{tag}  {name:<16} {detail}");
        if let Some(hint) = hint {
            println!("      {:<16} hint: {hint}", "");
        }
    }
}

pub async fn run(args: EndpointArgs) -> anyhow::Result<()> {
    let mut report = Report { failed: false };
    let home = context::home()?;
    report.line(Level::Ok, "home", &home.root().display().to_string(), None);

    let config_path = home.config_file();
    let config = match context::load_config(&home) {
        Ok(config) => {
            let detail = if config_path.exists() {
                format!("{} is valid", config_path.display())
            } else {
                format!("{} does not exist; using defaults", config_path.display())
            };
            report.line(Level::Ok, "config", &detail, None);
            config
        }
        Err(e) => {
            report.line(
                Level::Fail,
                "config",
                &format!("{e:#}"),
                Some("fix the key named above, or talaria config set KEY VALUE"),
            );
            Config::default()
        }
    };

    check_endpoint(&mut report, &args, &config, &config_path).await;
    check_store(&mut report, &home).await;
    check_landlock(&mut report);
    check_seccomp(&mut report);
    check_user_namespaces(&mut report);

    if report.failed {
        return Err(Exit {
            code: 1,
            message: None,
        }
        .into());
    }
    Ok(())
}

async fn check_endpoint(
    report: &mut Report,
    args: &EndpointArgs,
    config: &Config,
    config_path: &std::path::Path,
) {
    let ep = match endpoint::resolve(args, config, config_path) {
        Ok(ep) => ep,
        Err(e) => {
            report.line(
                Level::Fail,
                "model endpoint",
                &format!("{e:#}"),
                Some("talaria config set model.base_url http://HOST:PORT/v1"),
            );
            return;
        }
    };
    let mut quick = config.clone();
    quick.model.max_retries = 0;
    quick.model.connect_timeout_secs = quick.model.connect_timeout_secs.min(5);
    quick.model.read_timeout_secs = 10;
    let provider = match endpoint::provider(&ep, &quick) {
        Ok(p) => p,
        Err(e) => {
            report.line(Level::Fail, "model endpoint", &format!("{e:#}"), None);
            return;
        }
    };
    match tokio::time::timeout(Duration::from_secs(15), provider.list_models()).await {
        Ok(Ok(models)) => {
            let detail = format!(
                "{} reachable, {} model(s) listed",
                ep.base_url,
                models.len()
            );
            report.line(Level::Ok, "model endpoint", &detail, None);
            match (&ep.model, models.is_empty()) {
                (Some(m), false) if !models.contains(m) => report.line(
                    Level::Warn,
                    "model",
                    &format!("{m} is not in the endpoint's list ({})", models.join(", ")),
                    Some("check --model / TALARIA_MODEL / model.name"),
                ),
                (Some(m), _) => report.line(Level::Ok, "model", m, None),
                (None, _) if models.len() == 1 => report.line(
                    Level::Ok,
                    "model",
                    &format!("{} (the endpoint's only model)", models[0]),
                    None,
                ),
                (None, _) => report.line(
                    Level::Fail,
                    "model",
                    "none chosen",
                    Some("pass --model NAME or set TALARIA_MODEL"),
                ),
            }
        }
        Ok(Err(e)) => report.line(
            Level::Fail,
            "model endpoint",
            &e.to_string(),
            Some("is the server running and the URL right (it usually ends in /v1)?"),
        ),
        Err(_) => report.line(
            Level::Fail,
            "model endpoint",
            &format!("{} did not answer within 15 s", ep.base_url),
            None,
        ),
    }
}

async fn check_store(report: &mut Report, home: &talaria_agent::TalariaHome) {
    let path = home.database();
    if !path.exists() {
        report.line(
            Level::Ok,
            "store",
            &format!("{} will be created on first use", path.display()),
            None,
        );
        return;
    }
    match talaria_store::Store::open(&path).await {
        Ok(store) => match store.integrity_check().await {
            Ok(problems) if problems.is_empty() => report.line(Level::Ok, "store", &format!("{} passes the integrity check", path.display()), None),
            Ok(problems) => report.line(
                Level::Fail,
                "store",
                &format!("{}: {}", path.display(), problems.join("; ")),
                Some("stop talaria, copy the file aside, then try: sqlite3 state.db '.recover' | sqlite3 new.db"),
            ),
            Err(e) => report.line(Level::Fail, "store", &e.to_string(), None),
        },
        Err(e) => report.line(Level::Fail, "store", &e.to_string(), Some("is another talaria holding it, or is the file damaged?")),
    }
}

fn check_landlock(report: &mut Report) {
    const LANDLOCK_CREATE_RULESET_VERSION: libc::c_uint = 1;
    // SAFETY: landlock_create_ruleset with a null attribute pointer, size 0 and the VERSION flag
    // only returns the ABI version (or an error); it creates nothing and touches no memory.
    let abi = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<libc::c_void>(),
            0usize,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    };
    if abi >= 1 {
        let level = if abi >= 4 { Level::Ok } else { Level::Warn };
        let hint = (abi < 4).then_some("ABI 4+ (kernel 6.7) is needed for network port rules");
        report.line(level, "landlock", &format!("ABI {abi}"), hint);
    } else {
        let err = std::io::Error::last_os_error();
        let why = match err.raw_os_error() {
            Some(libc::ENOSYS) => "not in this kernel (needs 5.13+)".to_owned(),
            Some(libc::EOPNOTSUPP) => {
                "built in but disabled (add landlock to the lsm= boot parameter)".to_owned()
            }
            _ => err.to_string(),
        };
        report.line(
            Level::Warn,
            "landlock",
            &why,
            Some("sandbox profiles that need Landlock will refuse to run"),
        );
    }
}

fn check_seccomp(report: &mut Report) {
    match std::fs::read_to_string("/proc/sys/kernel/seccomp/actions_avail") {
        Ok(actions) if actions.contains("errno") => {
            report.line(
                Level::Ok,
                "seccomp",
                &format!("filter mode available ({})", actions.trim()),
                None,
            );
        }
        _ => report.line(
            Level::Warn,
            "seccomp",
            "filter mode not available",
            Some("sandbox profiles that need seccomp will refuse to run"),
        ),
    }
}

fn check_user_namespaces(report: &mut Report) {
    let read = |p: &str| std::fs::read_to_string(p).ok().map(|s| s.trim().to_owned());
    let max = read("/proc/sys/user/max_user_namespaces").and_then(|v| v.parse::<u64>().ok());
    let clone_allowed = read("/proc/sys/kernel/unprivileged_userns_clone").is_none_or(|v| v == "1");
    let apparmor_restricts =
        read("/proc/sys/kernel/apparmor_restrict_unprivileged_userns").is_some_and(|v| v == "1");
    match max {
        Some(0) | None => report.line(
            Level::Warn,
            "user namespaces",
            "disabled (user.max_user_namespaces = 0)",
            Some("namespace-based sandbox profiles will refuse to run"),
        ),
        Some(_) if !clone_allowed => report.line(
            Level::Warn,
            "user namespaces",
            "unprivileged use disabled (kernel.unprivileged_userns_clone = 0)",
            Some("sysctl -w kernel.unprivileged_userns_clone=1"),
        ),
        Some(_) if apparmor_restricts => report.line(
            Level::Warn,
            "user namespaces",
            "restricted by AppArmor",
            Some("allow the talaria executor in an AppArmor profile"),
        ),
        Some(n) => report.line(
            Level::Ok,
            "user namespaces",
            &format!("available (max {n})"),
            None,
        ),
    }
}

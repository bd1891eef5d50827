//! `talaria doctor`: is this machine ready? Each check prints ok, warn or fail with a hint; the
//! command exits non-zero when any check fails.

use std::time::Duration;

use talaria_core::Config;

use crate::Exit;
use crate::cli::EndpointArgs;
use crate::context;
use talaria_agent::endpoint;

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
    check_sandbox(&mut report, &home).await;

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
    report.line(
        Level::Ok,
        "provider",
        &format!("{} ({} API)", ep.provider.name, ep.provider.api.as_str()),
        None,
    );
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
        // Refused at open: say what is wrong and how to recover, not "run talaria doctor" again.
        Err(talaria_store::StoreError::Damaged { path, detail } | talaria_store::StoreError::Corrupt { path, detail }) => report.line(
            Level::Fail,
            "store",
            &format!("{}: damaged or not a Talaria database ({detail}); nothing was written to it", path.display()),
            Some("stop talaria, copy the file aside, then try: sqlite3 state.db '.recover' | sqlite3 new.db, and move new.db into its place"),
        ),
        Err(e) => report.line(Level::Fail, "store", &e.to_string(), Some("is another talaria holding it?")),
    }
}

/// What this host can enforce, as the sandbox helper itself sees it (`talaria __sandbox
/// --probe`, run as a child: the probe forks, which a multi-threaded process must not do).
async fn check_sandbox(report: &mut Report, home: &talaria_agent::TalariaHome) {
    match crate::sandboxed::load_policies(home) {
        Ok(set) => report.line(
            Level::Ok,
            "sandbox policies",
            &format!("{} profiles load", set.names().count()),
            None,
        ),
        Err(e) => report.line(
            Level::Fail,
            "sandbox policies",
            &format!("{e:#}").replace('\n', "; "),
            Some("talaria policy check lists every problem"),
        ),
    }
    let probe = match std::env::current_exe() {
        Ok(exe) => {
            tokio::process::Command::new(exe)
                .args([crate::sandboxed::HELPER_ARG, "--probe"])
                .output()
                .await
        }
        Err(e) => Err(e),
    };
    let report_json = match probe {
        Ok(out) if out.status.success() => {
            serde_json::from_slice::<talaria_sandbox::probe::ProbeReport>(&out.stdout).ok()
        }
        _ => None,
    };
    let Some(probe) = report_json else {
        report.line(
            Level::Fail,
            "sandbox helper",
            "the helper's --probe did not answer",
            Some("reinstall talaria"),
        );
        return;
    };
    let refuse = "profiles that need it will refuse to run";
    if probe.landlock_abi >= 3 {
        let detail = format!(
            "ABI {}{}{}",
            probe.landlock_abi,
            if probe.landlock_tcp {
                ", TCP port rules"
            } else {
                ""
            },
            if probe.landlock_scopes {
                ", signal and abstract-socket scoping"
            } else {
                ""
            }
        );
        report.line(Level::Ok, "landlock", &detail, None);
    } else {
        report.line(Level::Fail, "landlock", &format!("ABI {} (3 or newer needed)", probe.landlock_abi), Some("a kernel with Landlock enabled (5.19+, lsm=landlock); every tool call will refuse to run"));
    }
    if probe.seccomp_filter {
        report.line(Level::Ok, "seccomp", "filter mode available", None);
    } else {
        report.line(
            Level::Fail,
            "seccomp",
            "filter mode not available",
            Some("every tool call will refuse to run"),
        );
    }
    match (probe.user_namespaces, &probe.user_namespaces_error) {
        (true, _) => report.line(Level::Ok, "user namespaces", "usable (tried)", None),
        (false, why) => report.line(
            Level::Warn,
            "user namespaces",
            why.as_deref().unwrap_or("not usable"),
            Some(refuse),
        ),
    }
    if probe.tasks_enforceable {
        let how = match &probe.pids_cgroup {
            Some(_) if probe.euid == 0 => "via the pids cgroup (running as root)",
            _ => "via RLIMIT_NPROC",
        };
        report.line(Level::Ok, "task limits", how, None);
    } else {
        report.line(
            Level::Warn,
            "task limits",
            "cannot be enforced (root without a pids cgroup)",
            Some(refuse),
        );
    }
}

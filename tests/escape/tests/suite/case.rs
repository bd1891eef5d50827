//! A case: how to set the host up, what to ask the probe, what verdict is the right one, and
//! what the host must look like afterwards. [`run`] takes one case through one backend.

use std::time::Duration;

use serde::Deserialize;
use talaria_bus::exec::{CommandOutcome, ExitKind};
use talaria_executor::ExecutorError;

use super::world::{Backend, LIMIT_OUTPUT, Profile, World};

/// The errnos that are the right reason for a denial, per backend (the two enforce the same
/// policy with different mechanisms: Landlock and a private root here, a container's mounts and
/// namespaces there).
#[derive(Debug, Clone, Copy)]
pub struct Errnos {
    pub local: &'static [&'static str],
    pub oci: &'static [&'static str],
}

impl Errnos {
    fn for_backend(self, backend: Backend) -> &'static [&'static str] {
        match backend {
            Backend::Local => self.local,
            Backend::Oci => self.oci,
        }
    }
}

/// The same errnos on both backends.
pub const fn both(errnos: &'static [&'static str]) -> Errnos {
    Errnos {
        local: errnos,
        oci: errnos,
    }
}

/// What the verdict must be.
#[derive(Debug, Clone, Copy)]
pub enum Expect {
    /// The attempt failed, with one of these errnos (every errno it met, for probes that try
    /// several ways).
    Denied(Errnos),
    /// The attempt ran but gained nothing, and no errno explains it (a setuid program that
    /// kept the caller's ids, a secret that is not there).
    Held,
    /// A harmless twin: it must work.
    Succeeds,
    /// Refused with one of these errnos, or killed by `SIGKILL` before it could say so (the
    /// memory cgroup's OOM killer).
    DeniedOrKilled(Errnos),
    /// The command outlived its timeout and was killed; no verdict.
    TimedOut,
    /// The output was cut to the limit.
    Capped,
}

/// The probe's verdict line.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Verdict {
    pub case: String,
    pub ok: bool,
    pub errno: Option<String>,
    pub detail: String,
    pub errnos: Vec<String>,
    pub count: Option<u64>,
}

/// One run of a case, as the host saw it.
#[derive(Debug)]
pub struct Ran {
    pub finished: CommandOutcome,
    pub verdict: Option<Verdict>,
}

impl Ran {
    /// The verdict, which the case needs.
    #[track_caller]
    pub fn verdict(&self) -> &Verdict {
        self.verdict.as_ref().unwrap_or_else(|| {
            panic!(
                "the probe printed no verdict; exit {:?}; stdout: {}; stderr: {}",
                self.finished.exit,
                tail(&self.finished.stdout),
                self.finished.stderr
            )
        })
    }

    #[track_caller]
    pub fn count(&self) -> u64 {
        self.verdict()
            .count
            .unwrap_or_else(|| panic!("the verdict has no count: {:?}", self.verdict))
    }
}

type Setup = Box<dyn FnOnce(&mut World) -> Vec<String>>;
type Check = Box<dyn FnOnce(&World, &Ran)>;
type AfterSession = Box<dyn FnOnce(&World)>;

/// One case of the suite.
pub struct Case {
    expect: Expect,
    profile: Profile,
    timeout: Duration,
    setup: Setup,
    check: Option<Check>,
    after_session: Option<AfterSession>,
    control: Option<&'static [&'static str]>,
}

/// The errnos with which an unconfined control run shows that the kernel lacks the feature.
pub const KERNEL_LACKS: &[&str] = &[
    "ENOSYS",
    "EAFNOSUPPORT",
    "EPROTONOSUPPORT",
    "ESOCKTNOSUPPORT",
];

impl Case {
    /// A case whose probe arguments `setup` builds (after preparing the host).
    pub fn new(expect: Expect, setup: impl FnOnce(&mut World) -> Vec<String> + 'static) -> Self {
        Self {
            expect,
            profile: Profile::Standard,
            timeout: Duration::from_secs(30),
            setup: Box::new(setup),
            check: None,
            after_session: None,
            control: None,
        }
    }

    pub fn profile(mut self, profile: Profile) -> Self {
        self.profile = profile;
        self
    }

    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Host-side assertions after the run, while the session still exists.
    pub fn check(mut self, check: impl FnOnce(&World, &Ran) + 'static) -> Self {
        self.check = Some(Box::new(check));
        self
    }

    /// Host-side assertions after the session ended (placeholders gone, containers deleted).
    pub fn after_session(mut self, check: impl FnOnce(&World) + 'static) -> Self {
        self.after_session = Some(Box::new(check));
        self
    }

    /// First run the same probe unconfined on the host: it must succeed there, so a denial in
    /// the sandbox is the sandbox's doing. When it fails with one of `kernel_lacks`, the kernel
    /// lacks the feature and the case is skipped, saying so.
    pub fn control(mut self, kernel_lacks: &'static [&'static str]) -> Self {
        self.control = Some(kernel_lacks);
        self
    }
}

fn tail(text: &str) -> &str {
    let start = text.len().saturating_sub(2000);
    let start = (start..text.len())
        .find(|i| text.is_char_boundary(*i))
        .unwrap_or(text.len());
    &text[start..]
}

/// The last verdict line on stdout.
fn parse_verdict(stdout: &str) -> Option<Verdict> {
    stdout
        .lines()
        .rev()
        .filter(|l| l.starts_with("{\"case\":"))
        .find_map(|l| serde_json::from_str(l).ok())
}

/// Run the probe unconfined on the host. `None` when the case must be skipped.
fn control(world: &World, args: &[String], kernel_lacks: &[&str]) -> Option<()> {
    let out = std::process::Command::new(&world.probe)
        .args(args)
        .current_dir(&world.ws)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let verdict = parse_verdict(&stdout).unwrap_or_else(|| {
        panic!(
            "the unconfined control run printed no verdict: {stdout} {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    if verdict.ok {
        return Some(());
    }
    let errno = verdict.errno.as_deref().unwrap_or("");
    if KERNEL_LACKS.contains(&errno) || kernel_lacks.contains(&errno) {
        eprintln!(
            "SKIP: the kernel lacks this feature: unconfined on the host, {} fails with {errno} ({})",
            args.join(" "),
            verdict.detail
        );
        return None;
    }
    panic!(
        "the attempt fails even unconfined on the host, so its denial in the sandbox would prove nothing: {verdict:?}"
    );
}

/// Take `case` through `backend`: set up, (control,) run through the executor, judge the
/// verdict, settle the host's watches, check the host, end the session, check again.
pub fn run(backend: Backend, name: &str, case: Case) {
    if let Some(reason) = backend.missing() {
        eprintln!("SKIP: {reason}");
        return;
    }
    let mut world = World::new(backend);
    let args = (case.setup)(&mut world);
    if let Some(kernel_lacks) = case.control
        && control(&world, &args, kernel_lacks).is_none()
    {
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let outcome = runtime.block_on(world.run(case.profile, &args, case.timeout));
    let outcome = match outcome {
        Ok(outcome) => outcome,
        Err(ExecutorError::SandboxRefused { message, .. }) => {
            panic!(
                "the {} backend refused to run the probe: {message}",
                backend.name()
            )
        }
        Err(e) => panic!("the executor failed: {e}"),
    };
    let ran = Ran {
        verdict: parse_verdict(&outcome.stdout),
        finished: outcome,
    };
    eprintln!(
        "{}::{name}: exit {:?}, verdict {:?}",
        backend.name(),
        ran.finished.exit,
        ran.verdict
    );
    if let Some(verdict) = &ran.verdict {
        assert_eq!(
            &verdict.case,
            args.first().unwrap(),
            "verdict of another probe"
        );
    }
    judge(backend, case.expect, &ran);
    for watch in std::mem::take(&mut world.watches) {
        watch.settle();
    }
    if let Some(check) = case.check {
        check(&world, &ran);
    }
    world.end_session();
    if let Some(after) = case.after_session {
        after(&world);
    }
}

#[track_caller]
fn judge(backend: Backend, expect: Expect, ran: &Ran) {
    let finished = &ran.finished;
    let context = || {
        format!(
            "exit {:?}, timed out {}, verdict {:?}, stderr: {}",
            finished.exit, finished.timed_out, ran.verdict, finished.stderr
        )
    };
    let denied_with = |errnos: Errnos, verdict: &Verdict| {
        let allowed = errnos.for_backend(backend);
        assert!(
            !verdict.ok,
            "ESCAPE: the attempt succeeded on the {} backend: {}",
            backend.name(),
            verdict.detail
        );
        let errno = verdict.errno.as_deref().unwrap_or("(none)");
        assert!(
            allowed.contains(&errno),
            "denied for the wrong reason: {errno}, expected one of {allowed:?}; {}",
            context()
        );
        for other in &verdict.errnos {
            assert!(
                allowed.contains(&other.as_str()),
                "one attempt was denied for the wrong reason: {other}, expected one of {allowed:?}; {}",
                context()
            );
        }
    };
    match expect {
        Expect::Denied(errnos) => {
            assert_eq!(finished.exit, ExitKind::Code(0), "{}", context());
            denied_with(errnos, ran.verdict());
        }
        Expect::Held => {
            assert_eq!(finished.exit, ExitKind::Code(0), "{}", context());
            let verdict = ran.verdict();
            assert!(
                !verdict.ok,
                "ESCAPE: the attempt succeeded on the {} backend: {}",
                backend.name(),
                verdict.detail
            );
            assert_eq!(verdict.errno, None, "{}", context());
        }
        Expect::Succeeds => {
            assert_eq!(finished.exit, ExitKind::Code(0), "{}", context());
            assert!(
                ran.verdict().ok,
                "the harmless twin failed, so its attack's denial proves nothing: {}",
                context()
            );
        }
        Expect::DeniedOrKilled(errnos) => match &ran.verdict {
            Some(verdict) => denied_with(errnos, verdict),
            None => assert!(
                matches!(finished.exit, ExitKind::Signal(9) | ExitKind::Code(137))
                    && !finished.timed_out,
                "neither refused nor killed: {}",
                context()
            ),
        },
        Expect::TimedOut => {
            assert!(finished.timed_out, "not timed out: {}", context());
            assert!(ran.verdict.is_none(), "{}", context());
        }
        Expect::Capped => {
            assert!(!finished.timed_out, "{}", context());
            assert!(
                finished.stdout.len() <= LIMIT_OUTPUT + 64,
                "kept {} bytes of output, more than the limit of {LIMIT_OUTPUT}",
                finished.stdout.len()
            );
            assert!(finished.dropped_bytes > 0, "{}", context());
        }
    }
}

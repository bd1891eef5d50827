//! The OCI runtime bundle (`config.json`) of a session container, built from a
//! [`ContainerPlan`] with oci-spec's builders.
//!
//! What the container gets, and why:
//!
//! * **Root filesystem**: the image, read-only. Nothing of the host is visible but the mounts
//!   below.
//! * **Roots of the policy, at the same path as on the host** (so paths in tool calls work):
//!   write roots are bind-mounted read-write **only when they lie inside the workspace or
//!   `${tmp}`**, other write roots are not mounted at all (the host surface a container can
//!   change is the workspace and the scratch directory, nothing else). Read roots are
//!   bind-mounted read-only unless they name a directory the image provides itself
//!   ([`IMAGE_OWNED`]: `/usr`, `/etc`, …), where the image's copy is the point of a container.
//! * **Protected paths** under a writable mount get a read-only bind mount on top. A protected
//!   path that does not exist gets an empty placeholder directory at its first missing component
//!   (created on the host before the container starts, removed when it is deleted), mounted
//!   read-only, so a command cannot create `.git/hooks/pre-commit` in a workspace without `.git`.
//! * `/proc`, `/dev` (tmpfs with libcontainer's default nodes: null, zero, full, random,
//!   urandom, tty; devpts, shm, mqueue), `/sys` read-only, and a private `/tmp` tmpfs that lives
//!   as long as the container (the session).
//! * **Namespaces** pid, mount, ipc, uts, network, cgroup, and user when not running as root.
//!   The network namespace is empty (`lo` down) for `off`; for `loopback` the helper brings `lo`
//!   up. `allow` lists cannot be enforced in a private namespace and are refused.
//! * **cgroups**: memory (`limits.memory`, the whole container) and pids (`limits.tasks`, plus
//!   [`INIT_TASKS`] for the container's init); the device allow-list is libcontainer's default on
//!   top of deny-all.
//! * **Process**: no capabilities at all, `no_new_privileges`, rlimits CPU, FSIZE, NOFILE (soft =
//!   hard, clamped to the helper's own hard limits) and CORE = 0; runc's default masked and
//!   read-only `/proc` and `/sys` paths; the seccomp profile of [`crate::seccomp`].

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use libcontainer::oci_spec;
use oci_spec::runtime::{
    Capabilities, LinuxBuilder, LinuxCapabilitiesBuilder, LinuxDeviceCgroupBuilder,
    LinuxIdMappingBuilder, LinuxMemoryBuilder, LinuxNamespace, LinuxNamespaceBuilder,
    LinuxNamespaceType, LinuxPidsBuilder, LinuxResourcesBuilder, Mount, MountBuilder, PosixRlimit,
    PosixRlimitBuilder, PosixRlimitType, Process, ProcessBuilder, RootBuilder, Spec, SpecBuilder,
    UserBuilder, get_default_maskedpaths, get_default_readonly_paths,
};
use talaria_sandbox::spec::NetworkRules;

use crate::plan::{CommandLimits, ContainerCommand, ContainerPlan};
use crate::seccomp::{self, ProfileError};

/// Tasks the container needs besides the commands: its init.
pub const INIT_TASKS: u64 = 1;

/// Read roots at or under these paths are not mounted from the host: the image has its own.
pub const IMAGE_OWNED: &[&str] = &[
    "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc", "/opt", "/nix", "/dev",
    "/proc", "/sys", "/boot", "/run",
];

/// Size of the container's private `/tmp`. Its pages are charged to the memory cgroup too.
const TMP_SIZE: &str = "size=1g";

#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error(transparent)]
    Seccomp(#[from] ProfileError),
    #[error("cannot build the container's config.json: {0}")]
    Spec(#[from] oci_spec::OciSpecError),
    #[error(
        "policy {profile}: the oci backend cannot enforce a TCP allow-list (a container has its own network namespace: no network or loopback only); use network mode \"off\" or \"loopback\", or the landlock backend"
    )]
    AllowList { profile: String },
    #[error(
        "policy {profile}: limits.memory and limits.tasks need cgroups, which a container started without root cannot create here"
    )]
    RootlessLimits { profile: String },
    #[error("path {path} is not absolute")]
    Relative { path: PathBuf },
    #[error(
        "cannot protect {protected}: {symlink} is a symlink inside a writable root, and a container cannot pin a symlink in place (a command could swap it); make it a real directory or use the landlock backend"
    )]
    SymlinkedAncestor {
        protected: PathBuf,
        symlink: PathBuf,
    },
    #[error("cannot inspect {path}: {source}")]
    Inspect {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Who the helper runs as: root gets cgroups and no user namespace; anyone else gets a user
/// namespace mapping container root to their own uid and no cgroups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostIdentity {
    Root,
    Rootless { uid: u32, gid: u32 },
}

impl HostIdentity {
    #[must_use]
    pub fn current() -> Self {
        // SAFETY: geteuid(2) and getegid(2) cannot fail and touch no memory.
        let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
        if uid == 0 {
            Self::Root
        } else {
            Self::Rootless { uid, gid }
        }
    }
}

/// One bind mount from the host, at the same path inside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind {
    pub path: PathBuf,
    pub writable: bool,
}

/// The host paths a container sees.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MountLayout {
    /// Roots of the policy, parents before children.
    pub roots: Vec<Bind>,
    /// Directories between a writable root and a protected path, bind-mounted onto themselves
    /// (still writable) so that a command cannot rename or replace them: a mount point cannot be
    /// moved (EBUSY). Without this, `mv .git .git.old` would carry the protected mounts away and
    /// let a command put its own `.git` (with hooks) in place, on the host.
    pub pinned: Vec<PathBuf>,
    /// Read-only mounts over protected paths (existing ones and placeholders).
    pub protected: Vec<PathBuf>,
    /// Placeholder directories to create before the container starts and remove after.
    pub placeholders: Vec<PathBuf>,
}

impl MountLayout {
    /// Which roots of `plan` are mounted, and how protected paths are covered. Looks at the host
    /// filesystem only to find protected paths that do not exist.
    ///
    /// # Errors
    /// A relative path, or a protected path whose parent cannot be inspected.
    pub fn for_plan(plan: &ContainerPlan) -> Result<Self, BundleError> {
        let fs = &plan.filesystem;
        for path in fs.read.iter().chain(&fs.write).chain(&fs.protected) {
            if !path.is_absolute() {
                return Err(BundleError::Relative { path: path.clone() });
            }
        }
        let in_session_area =
            |p: &Path| p.starts_with(&plan.workspace) || p.starts_with(&plan.scratch);
        let mut roots: Vec<Bind> = Vec::new();
        for path in &fs.write {
            if in_session_area(path) {
                roots.push(Bind {
                    path: path.clone(),
                    writable: true,
                });
            } else {
                tracing::debug!(path = %path.display(), profile = %plan.profile, "write root outside the workspace and ${{tmp}} is not mounted into the container");
            }
        }
        for path in &fs.read {
            let image_owned =
                path == Path::new("/") || IMAGE_OWNED.iter().any(|dir| path.starts_with(dir));
            if roots.iter().any(|b| &b.path == path) {
                continue;
            }
            if in_session_area(path) || !image_owned {
                roots.push(Bind {
                    path: path.clone(),
                    writable: false,
                });
            }
        }
        roots.sort_by(|a, b| depth_then_path(&a.path, &b.path));
        // A root inside another root of the same kind adds nothing.
        let mut kept: Vec<Bind> = Vec::new();
        for bind in roots {
            let covering = kept
                .iter()
                .filter(|k| bind.path.starts_with(&k.path))
                .max_by_key(|k| k.path.components().count());
            if covering.is_some_and(|k| k.writable == bind.writable) {
                continue;
            }
            kept.push(bind);
        }

        let mut protected: BTreeSet<PathBuf> = BTreeSet::new();
        let mut placeholders: BTreeSet<PathBuf> = BTreeSet::new();
        let mut pinned: BTreeSet<PathBuf> = BTreeSet::new();
        for path in &fs.protected {
            let covering = kept
                .iter()
                .filter(|k| path.starts_with(&k.path))
                .max_by_key(|k| k.path.components().count());
            let Some(root) = covering.filter(|k| k.writable) else {
                // Not visible, or read-only already.
                continue;
            };
            let covered = match first_missing(path, &root.path)? {
                None => path.clone(),
                Some(missing) => {
                    placeholders.insert(missing.clone());
                    missing
                }
            };
            for ancestor in covered.ancestors().skip(1) {
                if ancestor == root.path || !ancestor.starts_with(&root.path) {
                    break;
                }
                let meta =
                    std::fs::symlink_metadata(ancestor).map_err(|source| BundleError::Inspect {
                        path: ancestor.to_owned(),
                        source,
                    })?;
                if meta.file_type().is_symlink() {
                    return Err(BundleError::SymlinkedAncestor {
                        protected: path.clone(),
                        symlink: ancestor.to_owned(),
                    });
                }
                pinned.insert(ancestor.to_owned());
            }
            protected.insert(covered);
        }
        let mut pinned: Vec<PathBuf> = pinned.into_iter().collect();
        pinned.sort_by(|a, b| depth_then_path(a, b));
        let mut protected: Vec<PathBuf> = protected.into_iter().collect();
        protected.sort_by(|a, b| depth_then_path(a, b));
        Ok(Self {
            roots: kept,
            pinned,
            protected,
            placeholders: placeholders.into_iter().collect(),
        })
    }

    /// The OCI mounts for these paths (after the system mounts).
    fn mounts(&self) -> Result<Vec<Mount>, BundleError> {
        let mut mounts = Vec::new();
        for root in &self.roots {
            let mode = if root.writable { "rw" } else { "ro" };
            mounts.push(bind(&root.path, &["rbind", mode, "nosuid", "nodev"])?);
        }
        for path in &self.pinned {
            mounts.push(bind(path, &["bind", "rw", "nosuid", "nodev"])?);
        }
        for path in &self.protected {
            mounts.push(bind(path, &["bind", "ro", "nosuid", "nodev"])?);
        }
        Ok(mounts)
    }
}

fn depth_then_path(a: &Path, b: &Path) -> std::cmp::Ordering {
    a.components()
        .count()
        .cmp(&b.components().count())
        .then_with(|| a.cmp(b))
}

/// `None` when `path` exists; otherwise its first component below `root` that does not.
fn first_missing(path: &Path, root: &Path) -> Result<Option<PathBuf>, BundleError> {
    match std::fs::symlink_metadata(path) {
        Ok(_) => return Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => {
            return Err(BundleError::Inspect {
                path: path.to_owned(),
                source,
            });
        }
    }
    let mut missing = path.to_owned();
    while let Some(parent) = missing.parent() {
        if parent == root || !parent.starts_with(root) {
            break;
        }
        match std::fs::symlink_metadata(parent) {
            Ok(_) => break,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => missing = parent.to_owned(),
            Err(source) => {
                return Err(BundleError::Inspect {
                    path: parent.to_owned(),
                    source,
                });
            }
        }
    }
    Ok(Some(missing))
}

fn bind(path: &Path, options: &[&str]) -> Result<Mount, BundleError> {
    Ok(MountBuilder::default()
        .destination(path)
        .typ("bind")
        .source(path)
        .options(options.iter().map(|o| (*o).to_owned()).collect::<Vec<_>>())
        .build()?)
}

fn fs_mount(
    destination: &str,
    typ: &str,
    source: &str,
    options: &[&str],
) -> Result<Mount, BundleError> {
    Ok(MountBuilder::default()
        .destination(destination)
        .typ(typ)
        .source(source)
        .options(options.iter().map(|o| (*o).to_owned()).collect::<Vec<_>>())
        .build()?)
}

fn system_mounts(identity: HostIdentity) -> Result<Vec<Mount>, BundleError> {
    let devpts: &[&str] = match identity {
        HostIdentity::Root => &[
            "nosuid",
            "noexec",
            "newinstance",
            "ptmxmode=0666",
            "mode=0620",
            "gid=5",
        ],
        HostIdentity::Rootless { .. } => &[
            "nosuid",
            "noexec",
            "newinstance",
            "ptmxmode=0666",
            "mode=0620",
        ],
    };
    let mut mounts = vec![
        fs_mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"])?,
        fs_mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        )?,
        fs_mount("/dev/pts", "devpts", "devpts", devpts)?,
        fs_mount(
            "/dev/shm",
            "tmpfs",
            "shm",
            &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        )?,
        fs_mount(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        )?,
    ];
    if identity == HostIdentity::Root {
        mounts.push(fs_mount(
            "/sys",
            "sysfs",
            "sysfs",
            &["nosuid", "noexec", "nodev", "ro"],
        )?);
    }
    mounts.push(fs_mount(
        "/tmp",
        "tmpfs",
        "tmpfs",
        &["nosuid", "nodev", "mode=1777", TMP_SIZE],
    )?);
    Ok(mounts)
}

/// The process section for a command: argv, cwd, env, rlimits, no capabilities.
///
/// # Errors
/// When oci-spec rejects a value (a bug).
pub fn command_process(command: &ContainerCommand) -> Result<Process, BundleError> {
    process(
        command.argv.clone(),
        &command.cwd,
        command
            .env
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect(),
        &command.limits,
    )
}

/// The process section of the session container's init (the workload replaces it with a
/// reaper; the arguments are never executed).
///
/// # Errors
/// When oci-spec rejects a value (a bug).
pub fn init_process() -> Result<Process, BundleError> {
    process(
        vec!["talaria-init".to_owned()],
        Path::new("/"),
        vec!["PATH=/usr/local/bin:/usr/bin:/bin".to_owned()],
        &CommandLimits {
            cpu_seconds: None,
            file_size_bytes: Some(0),
            open_files: Some(64),
        },
    )
}

fn process(
    args: Vec<String>,
    cwd: &Path,
    env: Vec<String>,
    limits: &CommandLimits,
) -> Result<Process, BundleError> {
    let none = Capabilities::new();
    let capabilities = LinuxCapabilitiesBuilder::default()
        .bounding(none.clone())
        .effective(none.clone())
        .permitted(none.clone())
        .inheritable(none.clone())
        .ambient(none)
        .build()?;
    Ok(ProcessBuilder::default()
        .terminal(false)
        .user(UserBuilder::default().uid(0_u32).gid(0_u32).build()?)
        .args(args)
        .env(env)
        .cwd(cwd)
        .no_new_privileges(true)
        .capabilities(capabilities)
        .rlimits(rlimits(limits)?)
        .build()?)
}

/// rlimits with soft = hard, each clamped to the helper's own hard limit (which it cannot
/// raise), and no core dumps.
fn rlimits(limits: &CommandLimits) -> Result<Vec<PosixRlimit>, BundleError> {
    let table = [
        (
            PosixRlimitType::RlimitCpu,
            libc::RLIMIT_CPU,
            limits.cpu_seconds,
        ),
        (
            PosixRlimitType::RlimitFsize,
            libc::RLIMIT_FSIZE,
            limits.file_size_bytes,
        ),
        (
            PosixRlimitType::RlimitNofile,
            libc::RLIMIT_NOFILE,
            limits.open_files,
        ),
        (PosixRlimitType::RlimitCore, libc::RLIMIT_CORE, Some(0)),
    ];
    let mut out = Vec::new();
    for (typ, resource, value) in table {
        let Some(value) = value else { continue };
        let value = value.min(current_hard_limit(resource));
        out.push(
            PosixRlimitBuilder::default()
                .typ(typ)
                .soft(value)
                .hard(value)
                .build()?,
        );
    }
    Ok(out)
}

#[cfg(target_env = "gnu")]
type Resource = libc::__rlimit_resource_t;
#[cfg(not(target_env = "gnu"))]
type Resource = libc::c_int;

fn current_hard_limit(resource: Resource) -> u64 {
    let mut current = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `current` is a valid, writable rlimit.
    let ret = unsafe { libc::getrlimit(resource, &raw mut current) };
    if ret == 0 { current.rlim_max } else { 0 }
}

/// Everything that goes into `config.json` besides the process.
#[derive(Debug, Clone)]
pub struct BundleSpec<'a> {
    pub plan: &'a ContainerPlan,
    pub layout: &'a MountLayout,
    /// The unpacked root filesystem (absolute).
    pub rootfs: &'a Path,
    /// Unique on this host: it names the container's cgroups.
    pub cgroups_path: String,
    pub identity: HostIdentity,
}

impl BundleSpec<'_> {
    /// The runtime spec with `process` as the container's first process.
    ///
    /// # Errors
    /// An `allow` network, limits that need cgroups when not root, or a value oci-spec rejects.
    pub fn runtime_spec(&self, process: Process) -> Result<Spec, BundleError> {
        let plan = self.plan;
        if matches!(plan.network, NetworkRules::AllowTcp { .. }) {
            return Err(BundleError::AllowList {
                profile: plan.profile.clone(),
            });
        }
        if !self.rootfs.is_absolute() {
            return Err(BundleError::Relative {
                path: self.rootfs.to_owned(),
            });
        }
        let mut namespaces: Vec<LinuxNamespace> = [
            LinuxNamespaceType::Pid,
            LinuxNamespaceType::Mount,
            LinuxNamespaceType::Ipc,
            LinuxNamespaceType::Uts,
            LinuxNamespaceType::Network,
            LinuxNamespaceType::Cgroup,
        ]
        .into_iter()
        .map(|typ| LinuxNamespaceBuilder::default().typ(typ).build())
        .collect::<Result<_, _>>()?;
        let mut linux = LinuxBuilder::default()
            .masked_paths(get_default_maskedpaths())
            .readonly_paths(get_default_readonly_paths())
            .seccomp(seccomp::oci_profile(&plan.network)?);
        match self.identity {
            HostIdentity::Root => {
                let mut resources = LinuxResourcesBuilder::default().devices(vec![
                    LinuxDeviceCgroupBuilder::default()
                        .allow(false)
                        .access("rwm")
                        .build()?,
                ]);
                if let Some(bytes) = plan.memory_bytes {
                    resources = resources.memory(
                        LinuxMemoryBuilder::default()
                            .limit(i64::try_from(bytes).unwrap_or(i64::MAX))
                            .build()?,
                    );
                }
                if let Some(tasks) = plan.tasks {
                    let limit = tasks.saturating_add(INIT_TASKS);
                    resources = resources.pids(
                        LinuxPidsBuilder::default()
                            .limit(i64::try_from(limit).unwrap_or(i64::MAX))
                            .build()?,
                    );
                }
                linux = linux
                    .resources(resources.build()?)
                    .cgroups_path(PathBuf::from(&self.cgroups_path));
            }
            HostIdentity::Rootless { uid, gid } => {
                if plan.memory_bytes.is_some() || plan.tasks.is_some() {
                    return Err(BundleError::RootlessLimits {
                        profile: plan.profile.clone(),
                    });
                }
                namespaces.push(
                    LinuxNamespaceBuilder::default()
                        .typ(LinuxNamespaceType::User)
                        .build()?,
                );
                let map = |host: u32| {
                    LinuxIdMappingBuilder::default()
                        .container_id(0_u32)
                        .host_id(host)
                        .size(1_u32)
                        .build()
                };
                linux = linux
                    .uid_mappings(vec![map(uid)?])
                    .gid_mappings(vec![map(gid)?]);
            }
        }
        let mut linux = linux.namespaces(namespaces).build()?;
        if matches!(self.identity, HostIdentity::Rootless { .. }) {
            // oci-spec's default is an empty resources section; without root there is none.
            linux.set_resources(None);
        }
        let mut mounts = system_mounts(self.identity)?;
        mounts.extend(self.layout.mounts()?);
        Ok(SpecBuilder::default()
            .version("1.0.2")
            .root(
                RootBuilder::default()
                    .path(self.rootfs)
                    .readonly(true)
                    .build()?,
            )
            .hostname("talaria")
            .mounts(mounts)
            .process(process)
            .linux(linux)
            .build()?)
    }
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use libcontainer::oci_spec::runtime::{LinuxNamespaceType, Spec};
    use talaria_sandbox::spec::{FilesystemRules, NetworkRules};

    use super::*;

    fn plan(base: &Path) -> ContainerPlan {
        let ws = base.join("ws");
        let tmp = base.join("tmp");
        std::fs::create_dir_all(ws.join(".git/hooks")).unwrap();
        std::fs::create_dir_all(&tmp).unwrap();
        ContainerPlan {
            profile: "p".into(),
            rootfs: base.join("rootfs"),
            workspace: ws.clone(),
            scratch: tmp.clone(),
            filesystem: FilesystemRules {
                read: vec![
                    "/usr".into(),
                    "/etc/ssl".into(),
                    "/".into(),
                    base.join("skills"),
                    ws.join("sub"),
                ],
                write: vec![ws.clone(), tmp, "/dev/null".into(), "/srv/cache".into()],
                protected: vec![
                    ws.join(".git/hooks"),
                    ws.join("missing/deeper/file"),
                    base.join("skills/x"),
                    "/elsewhere/y".into(),
                ],
            },
            network: NetworkRules::Off,
            memory_bytes: Some(1 << 30),
            tasks: Some(100),
        }
    }

    #[test]
    fn layout_mounts_only_session_write_roots_and_non_system_read_roots() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path();
        let plan = plan(base);
        let layout = MountLayout::for_plan(&plan).unwrap();
        let roots: Vec<(PathBuf, bool)> = layout
            .roots
            .iter()
            .map(|b| (b.path.clone(), b.writable))
            .collect();
        // /usr, /etc/ssl and / come from the image; /dev/null and /srv/cache are write roots
        // outside the workspace and ${tmp}; ws/sub is read-only inside a writable root, so it
        // is mounted read-only on top.
        let mut expected = vec![
            (base.join("ws"), true),
            (base.join("tmp"), true),
            (base.join("skills"), false),
            (base.join("ws/sub"), false),
        ];
        expected.sort_by(|a, b| depth_then_path(&a.0, &b.0));
        assert_eq!(roots, expected);
        // Existing protected paths are covered directly, missing ones at their first missing
        // component (a placeholder), and protected paths outside writable roots need nothing.
        assert_eq!(
            layout.protected,
            [base.join("ws/missing"), base.join("ws/.git/hooks")]
        );
        assert_eq!(layout.placeholders, [base.join("ws/missing")]);
    }

    fn spec_for(plan: &ContainerPlan, identity: HostIdentity) -> Result<Spec, BundleError> {
        let layout = MountLayout::for_plan(plan).unwrap();
        BundleSpec {
            plan,
            layout: &layout,
            rootfs: Path::new("/images/rootfs"),
            cgroups_path: "/talaria-oci/t-1".into(),
            identity,
        }
        .runtime_spec(init_process().unwrap())
    }

    #[test]
    fn root_spec_has_cgroup_limits_no_capabilities_and_a_read_only_root() {
        let dir = tempfile::tempdir().unwrap();
        let spec = spec_for(&plan(dir.path()), HostIdentity::Root).unwrap();
        let root = spec.root().as_ref().unwrap();
        assert_eq!(root.readonly(), Some(true));
        let linux = spec.linux().as_ref().unwrap();
        let resources = linux.resources().as_ref().unwrap();
        assert_eq!(resources.memory().as_ref().unwrap().limit(), Some(1 << 30));
        assert_eq!(resources.pids().as_ref().unwrap().limit(), 101);
        let namespaces: Vec<LinuxNamespaceType> = linux
            .namespaces()
            .as_ref()
            .unwrap()
            .iter()
            .map(|n| n.typ())
            .collect();
        assert!(namespaces.contains(&LinuxNamespaceType::Network));
        assert!(!namespaces.contains(&LinuxNamespaceType::User));
        assert!(linux.seccomp().is_some());
        assert!(
            linux
                .masked_paths()
                .as_ref()
                .unwrap()
                .contains(&"/proc/kcore".to_owned())
        );
        let process = spec.process().as_ref().unwrap();
        assert_eq!(process.no_new_privileges(), Some(true));
        let caps = process.capabilities().as_ref().unwrap();
        for set in [
            caps.bounding(),
            caps.effective(),
            caps.permitted(),
            caps.ambient(),
        ] {
            assert!(set.as_ref().unwrap().is_empty());
        }
        let mounts = spec.mounts().as_ref().unwrap();
        let destinations: Vec<&Path> = mounts.iter().map(|m| m.destination().as_path()).collect();
        let tmp = destinations
            .iter()
            .position(|d| *d == Path::new("/tmp"))
            .unwrap();
        let ws = destinations
            .iter()
            .position(|d| *d == dir.path().join("ws"))
            .unwrap();
        assert!(
            tmp < ws,
            "binds must come after the /tmp tmpfs: {destinations:?}"
        );
    }

    #[test]
    fn rootless_gets_a_user_namespace_and_refuses_cgroup_limits() {
        let dir = tempfile::tempdir().unwrap();
        let mut plan = plan(dir.path());
        let rootless = HostIdentity::Rootless {
            uid: 1000,
            gid: 1000,
        };
        assert!(matches!(
            spec_for(&plan, rootless),
            Err(BundleError::RootlessLimits { .. })
        ));
        plan.memory_bytes = None;
        plan.tasks = None;
        let spec = spec_for(&plan, rootless).unwrap();
        let linux = spec.linux().as_ref().unwrap();
        assert!(
            linux
                .namespaces()
                .as_ref()
                .unwrap()
                .iter()
                .any(|n| n.typ() == LinuxNamespaceType::User)
        );
        let map = &linux.uid_mappings().as_ref().unwrap()[0];
        assert_eq!(
            (map.container_id(), map.host_id(), map.size()),
            (0, 1000, 1)
        );
        assert!(linux.resources().is_none());
    }

    #[test]
    fn allow_lists_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut plan = plan(dir.path());
        plan.network = NetworkRules::AllowTcp { ports: vec![443] };
        assert!(matches!(
            spec_for(&plan, HostIdentity::Root),
            Err(BundleError::AllowList { .. })
        ));
    }

    #[test]
    fn rlimits_are_clamped_to_the_helpers_hard_limits() {
        let process = command_process(&ContainerCommand {
            argv: vec!["true".into()],
            cwd: "/".into(),
            env: vec![],
            limits: CommandLimits {
                cpu_seconds: Some(5),
                file_size_bytes: None,
                open_files: Some(u64::MAX),
            },
            stdin: None,
            timeout: std::time::Duration::from_secs(1),
            output_limit: 1,
        })
        .unwrap();
        let rlimits = process.rlimits().as_ref().unwrap();
        let nofile = rlimits
            .iter()
            .find(|r| r.typ() == PosixRlimitType::RlimitNofile)
            .unwrap();
        assert_eq!(nofile.hard(), current_hard_limit(libc::RLIMIT_NOFILE));
        assert_eq!(nofile.soft(), nofile.hard());
        assert!(
            rlimits
                .iter()
                .any(|r| r.typ() == PosixRlimitType::RlimitCore && r.hard() == 0)
        );
        assert!(
            !rlimits
                .iter()
                .any(|r| r.typ() == PosixRlimitType::RlimitFsize)
        );
    }
}

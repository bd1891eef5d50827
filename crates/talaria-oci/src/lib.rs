//! Talaria's OCI container backend: every command of an agent session runs in that session's
//! container, built from a local root filesystem with youki's `libcontainer`.
//!
//! # Threat model
//!
//! The same as the Landlock backend's (`talaria_sandbox`): the command is hostile and tries to
//! read secrets outside its roots, write outside its writable roots, reach the network, attack
//! the kernel through rarely used system calls, outlive its tool call, or exhaust the host. The
//! kernel, the executor and the policy are trusted, and so is the root filesystem image (it is
//! the operator's, read-only in the container).
//!
//! # What a container enforces
//!
//! See [`bundle`] for the `config.json` (mounts, namespaces, cgroups, capabilities, rlimits) and
//! [`seccomp`] for the system-call filter, which is the Landlock backend's own. In short: the
//! image's root read-only; the workspace and `${tmp}` (and only write roots inside them)
//! read-write at their host paths; protected paths read-only on top; no network (or loopback
//! only); memory and pids cgroups; no capabilities; `no_new_privs`.
//!
//! # Processes
//!
//! libcontainer forks, so it runs only in a single-threaded process: the `talaria-oci-helper`
//! binary ([`helper`]), one per session, spawned by the executor (which is a tokio program)
//! and spoken to over JSON lines ([`protocol`]; [`client`] is the executor's side). The
//! session's first command creates the container ([`container::SessionContainer`]), whose init
//! is a reaper that never execs ([`workload`]); each command is exec'd into it with
//! libcontainer's tenant builder and supervised by the helper ([`capture`]): stdin, capped
//! output, timeout, and afterwards every process of the command is killed ([`procs`]), so
//! nothing outlives its tool call but the files it wrote. The container's `/tmp` lives as long
//! as the session.
//!
//! # What is not enforced
//!
//! * **`network.allow` lists**: refused (a container's network namespace has no route out).
//! * **Without root**: a user namespace maps container root to the caller, but there are no
//!   cgroups (profiles with `memory`/`tasks` are refused) and no loopback.
//! * **Write roots outside the workspace and `${tmp}`** are not mounted; read roots under
//!   [`bundle::IMAGE_OWNED`] come from the image, not the host.
//! * **`limits.memory`** is the memory cgroup limit of the whole container (the Landlock backend
//!   sets `RLIMIT_AS` per process); `limits.tasks` counts the container's processes plus its init.
//! * **Placeholders** for missing protected paths exist on the host (as empty directories) for
//!   as long as the session container does.
//! * **Mount points** for roots that the image lacks (`/home/u/project`) are created in the root
//!   filesystem directory on the host, as runc does; the image's files are never changed.
//! * **A helper killed with SIGKILL** leaves its container's state and cgroups until the next
//!   helper starts on the same state root; its init dies with it (`PR_SET_PDEATHSIG`), except
//!   in the instant between the init's creation and its `prctl`.
//! * **The OOM killer** may pick the container's init when a command exhausts the memory limit;
//!   the next command then gets a new container (and an empty `/tmp`).

pub mod bundle;
pub mod capture;
pub mod client;
pub mod container;
pub mod helper;
pub mod image;
pub mod plan;
pub mod procs;
pub mod protocol;
pub mod seccomp;
pub mod state;
mod sys;
pub mod workload;

pub use capture::{Finished, Outcome, Watch};
pub use container::{ContainerError, SessionContainer, run_fresh};
pub use plan::{CommandLimits, ContainerCommand, ContainerPlan};
pub use state::StateDir;
pub use sys::ExitStatus;

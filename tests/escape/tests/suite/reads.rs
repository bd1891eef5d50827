//! The read tools (`read_file`, `search_files`, the read half of `patch`) against the sandbox,
//! on both backends, through `Executor::run` with the real helpers: their file requests reach
//! exactly what the profile lists and nothing the agent's own uid could read beyond it.
//!
//! Local backend: each attack is refused naming the path and the rule, next to its harmless
//! twin. OCI backend: a read runs inside the container (a shell script with the same refusals),
//! where a host path outside the mounts does not exist at all; a walk needs the helper's own
//! code, which the container does not hold, so every search is refused there by name.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use talaria_bus::exec::files::{FileRequest, FileText, OutputMode, SearchRequest, SearchTarget};

use super::world::{Backend, Profile, World};

/// Set the world up, skip a backend this host cannot run, run `body` on a runtime.
fn with_world(backend: Backend, body: impl AsyncFnOnce(&mut World)) {
    if let Some(reason) = backend.missing() {
        eprintln!("SKIP: {reason}");
        return;
    }
    let mut world = World::new(backend);
    std::fs::write(world.outside.join("secret.txt"), "top-secret-content\n").unwrap();
    std::fs::write(world.ws.join("notes.txt"), "workspace-notes\n").unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(body(&mut world));
    world.end_session();
}

fn read(path: impl Into<std::path::PathBuf>) -> FileRequest {
    FileRequest::Read {
        path: path.into(),
        max_bytes: 1 << 20,
    }
}

fn search(world: &World, root: impl Into<std::path::PathBuf>, pattern: &str) -> FileRequest {
    FileRequest::Search(SearchRequest {
        root: root.into(),
        base: world.ws.clone(),
        pattern: pattern.into(),
        target: SearchTarget::Content,
        file_glob: None,
        limit: 100,
        offset: 0,
        output_mode: OutputMode::Content,
        context: 0,
    })
}

async fn read_file(world: &mut World, request: &FileRequest) -> Result<String, String> {
    world
        .file_request("read_file", Profile::Standard, request)
        .await
        .map(|json| serde_json::from_str::<FileText>(&json).unwrap().text)
}

/// The answer must be a refusal containing `local` (local backend) or `oci` (in the
/// container, where a host path outside the mounts does not exist at all), and no secret.
fn refused_with(world: &World, answer: Result<String, String>, local: &str, oci: &str) {
    let needle = match world.backend {
        Backend::Local => local,
        Backend::Oci => oci,
    };
    let message = answer.expect_err("the read must be refused");
    assert!(message.contains(needle), "wanted {needle:?}: {message}");
    assert!(!message.contains("top-secret-content"), "{message}");
    assert!(!message.contains("sk-home"), "{message}");
}

/// The OCI backend cannot walk: every search is refused there, naming the way out.
const OCI_NO_SEARCH: &str = "cannot run search_files";

fn both(case: impl Fn(Backend)) {
    case(Backend::Local);
    case(Backend::Oci);
}

#[test]
fn reads_outside_the_roots_are_refused_and_inside_work() {
    both(|backend| {
        with_world(backend, async |world| {
            let outside = world.outside.join("secret.txt");
            let dotdot = world.ws.join("../outside/secret.txt");
            for path in [outside.clone(), dotdot] {
                let answer = read_file(world, &read(&path)).await;
                let local = "is outside profile workspace-write";
                refused_with(world, answer, local, "does not exist");
            }
            std::os::unix::fs::symlink(&outside, world.ws.join("link")).unwrap();
            let answer = read_file(world, &read(world.ws.join("link"))).await;
            let local = "leads outside profile workspace-write";
            refused_with(world, answer, local, "does not exist");
            // The Talaria home is never a root: its config through a link in the workspace.
            std::os::unix::fs::symlink(world.home.join("config.toml"), world.ws.join("cfg"))
                .unwrap();
            let answer = read_file(world, &read(world.ws.join("cfg"))).await;
            refused_with(world, answer, "outside profile", "does not exist");
            // Root-only files under a read root stay unreadable (the sandbox never runs as
            // host root); the container's /etc is its own root filesystem's.
            let answer = read_file(world, &read("/etc/shadow")).await;
            refused_with(
                world,
                answer,
                "`/etc/shadow` is not readable",
                "`/etc/shadow`",
            );
            // The twin.
            let answer = read_file(world, &read(world.ws.join("notes.txt"))).await;
            assert_eq!(answer.unwrap(), "workspace-notes\n");
        });
    });
}

#[test]
fn special_files_are_refused_quickly() {
    both(|backend| {
        with_world(backend, async |world| {
            let answer = read_file(world, &read("/dev/zero")).await;
            let under_dev = "`/dev/zero` is under /dev";
            refused_with(world, answer, under_dev, under_dev);
            std::os::unix::fs::symlink("/dev/zero", world.ws.join("zero")).unwrap();
            let answer = read_file(world, &read(world.ws.join("zero"))).await;
            let local = "is a character device, not a regular file";
            refused_with(world, answer, local, "is not a regular file");
            let fifo = world.ws.join("fifo");
            assert!(
                std::process::Command::new("mkfifo")
                    .arg(&fifo)
                    .status()
                    .unwrap()
                    .success()
            );
            let started = Instant::now();
            let answer = read_file(world, &read(&fifo)).await;
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "a FIFO hung the read"
            );
            let local = "is a FIFO, not a regular file";
            refused_with(world, answer, local, "is not a regular file");
            let request = search(world, "/proc/self", "x");
            let answer = world
                .file_request("search_files", Profile::Standard, &request)
                .await;
            refused_with(world, answer, "`/proc/self` is under /proc", OCI_NO_SEARCH);
        });
    });
}

#[test]
fn walks_never_leave_the_roots() {
    both(|backend| {
        with_world(backend, async |world| {
            std::os::unix::fs::symlink(&world.outside, world.ws.join("out-dir")).unwrap();
            std::os::unix::fs::symlink(&world.home, world.ws.join("home-dir")).unwrap();
            std::os::unix::fs::symlink(world.outside.join("secret.txt"), world.ws.join("s"))
                .unwrap();
            let pattern = "top-secret-content|sk-home|workspace-notes";
            let starts = [
                world.ws.clone(),
                world.ws.join(".."),
                world.ws.join("home-dir/.."),
            ];
            for root in starts {
                let request = search(world, &root, pattern);
                let answer = world
                    .file_request("search_files", Profile::Standard, &request)
                    .await;
                if world.backend == Backend::Oci {
                    refused_with(world, answer, "", OCI_NO_SEARCH);
                    continue;
                }
                let found = answer.unwrap();
                assert!(
                    !found.contains("top-secret-content") && !found.contains("sk-home"),
                    "{found}"
                );
                // The twin: the workspace's own file is found from each start.
                assert!(
                    found.contains("workspace-notes"),
                    "{}: {found}",
                    root.display()
                );
            }
            let request = search(world, world.outside.clone(), pattern);
            let answer = world
                .file_request("search_files", Profile::Standard, &request)
                .await;
            let local = "is outside profile workspace-write";
            refused_with(world, answer, local, OCI_NO_SEARCH);
        });
    });
}

#[test]
fn a_symlink_swapped_during_reads_never_leaks() {
    both(|backend| {
        with_world(backend, async |world| {
            let link = world.ws.join("swap");
            std::os::unix::fs::symlink("notes.txt", &link).unwrap();
            let stop = Arc::new(AtomicBool::new(false));
            let targets = [
                std::path::PathBuf::from("notes.txt"),
                world.outside.join("secret.txt"),
                world.home.join("config.toml"),
            ];
            let swapper = {
                let (stop, link) = (stop.clone(), link.clone());
                std::thread::spawn(move || {
                    let tmp = link.with_file_name("swap.tmp");
                    let mut i = 0usize;
                    while !stop.load(Ordering::Relaxed) {
                        let _ = std::fs::remove_file(&tmp);
                        std::os::unix::fs::symlink(&targets[i % targets.len()], &tmp).unwrap();
                        std::fs::rename(&tmp, &link).unwrap();
                        i += 1;
                    }
                })
            };
            let (mut read_ok, mut refused, mut leaks) = (0, 0, 0);
            for _ in 0..200 {
                match read_file(world, &read(&link)).await {
                    Ok(text) if text == "workspace-notes\n" => read_ok += 1,
                    Ok(_) => leaks += 1,
                    Err(message) => {
                        assert!(
                            !message.contains("top-secret-content") && !message.contains("sk-home")
                        );
                        refused += 1;
                    }
                }
            }
            stop.store(true, Ordering::Relaxed);
            swapper.join().unwrap();
            eprintln!(
                "{}: 200 reads of a swapped link: {read_ok} read the workspace file, {refused} refused, {leaks} leaks",
                world.backend.name()
            );
            assert_eq!(leaks, 0);
            assert!(refused > 0);
        });
    });
}

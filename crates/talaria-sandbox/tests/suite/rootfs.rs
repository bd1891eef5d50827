//! The private root filesystem: host paths that are not roots, above all pathname UNIX sockets
//! (the D-Bus system bus, `/run/docker.sock`, a tmux server under `/tmp`), do not exist inside;
//! listed roots keep their absolute paths; the new root cannot be written at its top level. Each
//! escape sits next to a twin inside the roots that must work.

use std::os::unix::net::{UnixDatagram, UnixListener};
use std::path::{Path, PathBuf};
use std::process::Command;

use super::support::{
    Case, HELPER, Outcome, PY_ATTEMPT, base_features, namespace_features, private_root_implied,
    probe, python,
};

const SYSTEM_BUS: &str = "/run/dbus/system_bus_socket";

/// A socket the host listens on; removed again when dropped.
struct HostSocket {
    path: PathBuf,
    stream: Option<UnixListener>,
    datagram: Option<UnixDatagram>,
}

impl HostSocket {
    fn stream(path: PathBuf) -> Self {
        let listener = UnixListener::bind(&path).unwrap();
        listener.set_nonblocking(true).unwrap();
        Self {
            path,
            stream: Some(listener),
            datagram: None,
        }
    }

    fn datagram(path: PathBuf) -> Self {
        let socket = UnixDatagram::bind(&path).unwrap();
        socket.set_nonblocking(true).unwrap();
        Self {
            path,
            stream: None,
            datagram: Some(socket),
        }
    }

    /// Whether anything connected or sent a datagram.
    fn reached(&self) -> bool {
        if let Some(listener) = &self.stream {
            return listener.accept().is_ok();
        }
        if let Some(socket) = &self.datagram {
            return socket.recv(&mut [0; 16]).is_ok();
        }
        false
    }
}

impl Drop for HostSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// A directory under `/run` the test may create sockets in (`/run/dbus` when it exists), or
/// `None` with a message when `/run` is not writable here.
fn run_dir() -> Option<PathBuf> {
    ["/run/dbus", "/run"]
        .iter()
        .map(PathBuf::from)
        .find(|dir| {
            let probe = dir.join(format!(".talaria-sandbox-probe-{}", std::process::id()));
            let writable = std::fs::write(&probe, "").is_ok();
            let _ = std::fs::remove_file(&probe);
            writable
        })
        .or_else(|| {
            eprintln!("SKIP (part): /run is not writable here; no listener under /run");
            None
        })
}

/// The errno a connect to a host socket outside the roots must fail with: it does not exist in
/// the private root; with Landlock ABI 9 and no private root, Landlock denies it.
fn outside_errno(private_root: bool) -> &'static str {
    if private_root { "ENOENT" } else { "EACCES" }
}

const CONNECT: &str = r#"
def stream(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM); s.settimeout(5); s.connect(path)
    s.sendall(b"hi")
def datagram(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); s.sendto(b"hi", path)
"#;

fn host_sockets_case(namespaces: bool) {
    let Some(py) = python() else { return };
    let mut case = Case::new("host-sockets");
    if namespaces {
        case.namespaces(true, true, true, true);
    }
    let tag = format!("{}-{}", std::process::id(), u8::from(namespaces));
    // Outside every root: a tmux-style server in a host directory, a syslog-style datagram
    // socket next to it, listeners under /run, and the system bus.
    let mut outside = vec![
        ("tmux", HostSocket::stream(case.out.join("tmux.sock"))),
        ("log", HostSocket::datagram(case.out.join("log.sock"))),
    ];
    if let Some(run) = run_dir() {
        outside.push((
            "run",
            HostSocket::stream(run.join(format!("talaria-sandbox-test-{tag}.sock"))),
        ));
    }
    let system_bus = if Path::new(SYSTEM_BUS).exists() {
        Some(PathBuf::from(SYSTEM_BUS))
    } else {
        None
    };
    if system_bus.is_none()
        && let Some(run) = run_dir()
    {
        eprintln!("{SYSTEM_BUS} does not exist here; using a listener of our own under {run:?}");
        outside.push((
            "bus",
            HostSocket::stream(run.join(format!("talaria-sandbox-test-bus-{tag}"))),
        ));
    }
    // The twins, inside the workspace.
    let inside = [
        ("ws-stream", HostSocket::stream(case.ws.join("own.sock"))),
        (
            "ws-datagram",
            HostSocket::datagram(case.ws.join("own.dgram")),
        ),
    ];

    let mut code = format!("{PY_ATTEMPT}{CONNECT}");
    for (name, socket) in outside.iter().chain(&inside) {
        let kind = if socket.stream.is_some() {
            "stream"
        } else {
            "datagram"
        };
        code.push_str(&format!(
            "attempt({name:?}, lambda: {kind}({:?}))\n",
            socket.path.display().to_string()
        ));
    }
    if let Some(bus) = &system_bus {
        code.push_str(&format!(
            "attempt(\"system-bus\", lambda: stream({:?}))\n",
            bus.display().to_string()
        ));
    }
    case.py(&py, &code);
    let out = case.run();
    out.ok();

    let errno = outside_errno(namespaces || private_root_implied());
    for (name, socket) in &outside {
        out.expect_line(&format!("{name} {errno}"));
        assert!(
            !socket.reached(),
            "{name}: the sandbox reached {:?}",
            socket.path
        );
    }
    if system_bus.is_some() {
        out.expect_line(&format!("system-bus {errno}"));
    }
    for (name, socket) in &inside {
        out.expect_line(&format!("{name} OK"));
        assert!(
            socket.reached(),
            "{name}: the twin inside the workspace did not arrive"
        );
    }
}

#[test]
fn host_unix_sockets_outside_the_roots_are_unreachable() {
    if !base_features() {
        return;
    }
    host_sockets_case(false);
}

#[test]
fn host_unix_sockets_are_unreachable_with_every_namespace() {
    if !namespace_features() {
        return;
    }
    host_sockets_case(true);
}

/// A case whose spec asks for a mount namespace, so it gets the private root on every kernel.
fn private_root_case(profile: &str) -> Case {
    let mut case = Case::new(profile);
    case.namespaces(true, true, false, false);
    case
}

fn canonical_roots(case: &Case) -> Vec<PathBuf> {
    let fs = &case.spec.filesystem;
    fs.read
        .iter()
        .chain(&fs.write)
        .filter_map(|r| r.canonicalize().ok())
        .collect()
}

#[test]
fn unlisted_host_paths_do_not_exist_and_roots_keep_their_paths() {
    if !namespace_features() {
        return;
    }
    let Some(py) = python() else { return };
    let mut case = private_root_case("view");
    std::fs::write(case.out.join("secret"), "TOP-SECRET").unwrap();
    std::fs::write(case.ws.join("public"), "public").unwrap();
    let absent: Vec<String> = ["/root", "/home", "/run", "/var", "/boot", "/srv", "/mnt"]
        .iter()
        .filter(|p| Path::new(p).exists())
        .map(|p| (*p).to_owned())
        .chain([
            case.out.display().to_string(),
            case.out.join("secret").display().to_string(),
        ])
        .collect();
    let present: Vec<String> = canonical_roots(&case)
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    case.py(
        &py,
        &format!(
            r#"{PY_ATTEMPT}
for p in {absent:?}:
    attempt("absent " + p, lambda: os.stat(p))
for p in {present:?}:
    attempt("present " + p, lambda: os.stat(p))
attempt("listdir /root", lambda: os.listdir("/root"))
print("cwd", os.getcwd())
print("public", open("public").read())
for line in open("/proc/self/mountinfo"):
    print("mount", line.split()[4])
"#
        ),
    );
    let out = case.run();
    out.ok();
    for path in &absent {
        out.expect_line(&format!("absent {path} ENOENT"));
    }
    for path in &present {
        out.expect_line(&format!("present {path} OK"));
    }
    out.expect_line("listdir /root ENOENT");
    out.expect_line(&format!("cwd {}", case.ws.display()));
    out.expect_line("public public");
    assert!(!out.stdout.contains("TOP-SECRET"));
    // The host's tree is gone: every mount is the new root, a listed root (or below one).
    let roots = canonical_roots(&case);
    let mounts: Vec<&str> = out
        .stdout
        .lines()
        .filter_map(|l| l.strip_prefix("mount "))
        .collect();
    assert!(mounts.contains(&"/"), "{mounts:?}");
    for mount in &mounts {
        assert!(
            *mount == "/" || roots.iter().any(|r| Path::new(mount).starts_with(r)),
            "{mount} is mounted in the sandbox but is not under a listed root: {mounts:?}"
        );
    }
}

#[test]
fn the_new_root_cannot_be_written_at_its_top_level() {
    if !namespace_features() {
        return;
    }
    let Some(py) = python() else { return };
    let mut case = private_root_case("view");
    let tmp_parent = case.ws.parent().unwrap().to_path_buf();
    case.py(
        &py,
        &format!(
            r#"{PY_ATTEMPT}
attempt("mkdir", lambda: os.mkdir("/planted"))
attempt("create", lambda: os.close(os.open("/planted-file", os.O_CREAT | os.O_WRONLY, 0o755)))
attempt("symlink", lambda: os.symlink("/usr/bin/sh", "/planted-link"))
attempt("beside-workspace", lambda: os.mkdir({beside:?}))
attempt("rename-workspace", lambda: os.rename({ws:?}, {beside:?}))
attempt("rmdir-workspace", lambda: os.rmdir({ws:?}))
attempt("inside", lambda: open("inside", "w").write("ok"))
MNT_DETACH = 2
attempt("umount-root", lambda: check(libc.umount2(b"/usr", MNT_DETACH)))
attempt("remount-rw", lambda: check(libc.mount(None, b"/", None, 0x20 | 0x1000, None)))
for line in open("/proc/self/mountinfo"):
    f = line.split()
    if f[4] == "/":
        print("root", f[5].split(",")[0], line.split(" - ")[1].split()[0])
"#,
            beside = tmp_parent.join("planted-dir").display().to_string(),
            ws = case.ws.display().to_string(),
        ),
    );
    let out = case.run();
    out.ok();
    for name in ["mkdir", "create", "symlink", "beside-workspace"] {
        out.expect_line(&format!("{name} EROFS"));
    }
    // The workspace is a mount point on a read-only directory: neither can be renamed away.
    for name in ["rename-workspace", "rmdir-workspace"] {
        assert!(
            ["EROFS", "EBUSY"]
                .iter()
                .any(|e| out.has_line(&format!("{name} {e}"))),
            "{name}:\n{}",
            out.stdout
        );
    }
    out.expect_line("inside OK");
    // seccomp keeps the command from undoing any of it.
    out.expect_line("umount-root EPERM");
    out.expect_line("remount-rw EPERM");
    out.expect_line("root ro tmpfs");
    assert_eq!(
        std::fs::read_to_string(case.ws.join("inside")).unwrap(),
        "ok"
    );
    assert!(!tmp_parent.join("planted-dir").exists());
    assert!(case.ws.is_dir());
}

#[test]
fn symlinked_roots_still_work_and_links_out_of_the_roots_lead_nowhere() {
    if !namespace_features() {
        return;
    }
    let mut case = private_root_case("view");
    // A read root and a write root listed through symlinks, as a caller that does not
    // canonicalize would list them.
    std::fs::create_dir_all(case.out.join("real-ro")).unwrap();
    std::fs::write(case.out.join("real-ro/data"), "read-through-link").unwrap();
    std::os::unix::fs::symlink("real-ro", case.out.join("ro-link")).unwrap();
    std::fs::create_dir_all(case.out.join("real-rw")).unwrap();
    std::os::unix::fs::symlink(case.out.join("real-rw"), case.out.join("rw-link")).unwrap();
    std::fs::write(case.out.join("not-listed"), "NOT-LISTED").unwrap();
    case.spec.filesystem.read.push(case.out.join("ro-link"));
    case.spec.filesystem.write.push(case.out.join("rw-link"));
    // Inside the workspace: a link to a listed root and one to an unlisted host directory.
    std::os::unix::fs::symlink(case.out.join("real-ro"), case.ws.join("to-listed")).unwrap();
    std::os::unix::fs::symlink(&case.out, case.ws.join("to-outside")).unwrap();
    case.sh(r#"cat "$OUT/ro-link/data"; echo
        cat "$OUT/real-ro/data"; echo
        echo written > "$OUT/rw-link/new" && echo rw-link-ok
        readlink "$OUT/ro-link"
        cat to-listed/data; echo
        cat to-outside/not-listed 2>/dev/null || echo outside-absent
        cat "$OUT/not-listed" 2>/dev/null || echo not-listed-absent
        /bin/sh -c 'echo via-bin-sh'
        test -L /bin && readlink /bin"#);
    let out = case.run();
    out.ok();
    for line in [
        "read-through-link",
        "rw-link-ok",
        "real-ro",
        "outside-absent",
        "not-listed-absent",
        "via-bin-sh",
    ] {
        out.expect_line(line);
    }
    assert_eq!(
        out.stdout.matches("read-through-link").count(),
        3,
        "{}",
        out.stdout
    );
    assert!(!out.stdout.contains("NOT-LISTED"));
    if let Ok(target) = std::fs::read_link("/bin") {
        // Merged /usr: the alias is there inside, pointing where it points on the host.
        out.expect_line(&target.display().to_string());
    }
    assert_eq!(
        std::fs::read_to_string(case.out.join("real-rw/new")).unwrap(),
        "written\n"
    );
}

#[test]
fn listed_device_nodes_work_and_unlisted_ones_do_not_exist() {
    if !namespace_features() {
        return;
    }
    let mut case = private_root_case("view");
    case.spec.filesystem.read.push("/dev/zero".into());
    let unlisted: Vec<&str> = ["/dev/mem", "/dev/kmsg", "/dev/tty", "/dev/vda", "/dev/sda"]
        .into_iter()
        .filter(|p| Path::new(p).exists())
        .collect();
    let mut script = String::from(
        r#"head -c 5 /dev/zero | wc -c
        echo gone > /dev/null && echo null-ok
        echo to-stdout > /dev/stdout
        "#,
    );
    for dev in &unlisted {
        script.push_str(&format!("test -e {dev} || echo absent {dev}\n"));
    }
    case.sh(&script);
    let out = case.run();
    out.ok();
    out.expect_line("5");
    out.expect_line("null-ok");
    out.expect_line("to-stdout");
    assert!(
        !unlisted.is_empty(),
        "the host has none of the probed device nodes"
    );
    for dev in &unlisted {
        out.expect_line(&format!("absent {dev}"));
    }
}

/// Runs the helper in a user namespace of its own whose `max_user_namespaces` is 0, so the
/// helper cannot create one.
fn run_without_user_namespaces(case: &Case) -> Option<Outcome> {
    if !Path::new("/usr/bin/unshare").exists() {
        eprintln!("SKIP: util-linux unshare is not installed");
        return None;
    }
    let spec = case.out.join("no-userns-spec.json");
    std::fs::write(&spec, serde_json::to_vec(&case.spec).unwrap()).unwrap();
    let mut cmd = Command::new("/usr/bin/unshare");
    cmd.args([
        "--user",
        "--map-root-user",
        "/bin/sh",
        "-c",
        r#"echo 0 > /proc/sys/user/max_user_namespaces || exit 99; exec "$0" --spec "$1""#,
        HELPER,
    ])
    .arg(&spec)
    .stdin(std::process::Stdio::null());
    let out = Case::run_command(&mut cmd);
    assert_ne!(
        out.code, 99,
        "cannot lower max_user_namespaces: {}",
        out.stderr
    );
    Some(out)
}

#[test]
fn without_user_namespaces_only_landlock_abi_9_can_hide_host_sockets() {
    if !namespace_features() {
        return;
    }
    let mut case = Case::new("no-userns");
    case.sh(r#"echo ran; touch "$WS/ran""#);
    let Some(out) = run_without_user_namespaces(&case) else {
        return;
    };
    if probe().landlock_unix_sockets {
        // Landlock alone keeps the sockets out of reach: no namespace needed.
        out.expect_line("ran");
        assert!(case.ws.join("ran").exists());
    } else {
        assert_eq!(out.code, 125, "{out:?}");
        assert!(out.stdout.is_empty(), "something ran: {}", out.stdout);
        assert!(
            out.stderr
                .contains("hiding the host's pathname unix sockets needs Landlock ABI 9")
                && out.stderr.contains("user namespaces are not usable"),
            "{}",
            out.stderr
        );
        assert!(!case.ws.join("ran").exists());
    }
    // Twin: the same spec with user namespaces available runs.
    let mut twin = Case::new("no-userns");
    twin.sh(r#"echo ran; touch "$WS/ran""#);
    twin.run().expect_line("ran");
    assert!(twin.ws.join("ran").exists());
}

#[test]
fn path_entries_that_reach_a_root_through_symlinks_still_find_programs() {
    if !namespace_features() {
        return;
    }
    let mut case = private_root_case("view");
    // Like NixOS's /run/current-system/sw/bin -> /nix/store/...: a PATH entry outside every
    // root that leads into one through a symlink.
    std::fs::create_dir_all(case.ws.join("store/sw/bin")).unwrap();
    let tool = case.ws.join("store/sw/bin/talaria-hello");
    std::fs::write(&tool, "#!/bin/sh\necho hello-from-the-store\n").unwrap();
    std::fs::set_permissions(&tool, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    std::os::unix::fs::symlink(case.ws.join("store/sw"), case.out.join("current-system")).unwrap();
    // And one that leads out of every root, which must not appear.
    std::fs::create_dir_all(case.out.join("private/bin")).unwrap();
    std::os::unix::fs::symlink(case.out.join("private"), case.out.join("elsewhere")).unwrap();
    let path = format!(
        "{}:{}:/usr/bin:/bin",
        case.out.join("current-system/bin").display(),
        case.out.join("elsewhere/bin").display()
    );
    for (name, value) in &mut case.spec.env {
        if name == "PATH" {
            *value = path.clone();
        }
    }
    case.sh(r#"talaria-hello; test -e "$OUT/elsewhere" || echo elsewhere-absent"#);
    let out = case.run();
    out.ok();
    out.expect_line("hello-from-the-store");
    out.expect_line("elsewhere-absent");
}

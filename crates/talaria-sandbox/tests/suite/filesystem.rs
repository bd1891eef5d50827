//! Landlock: writes outside the writable roots, by every path trick, and reads outside the
//! read roots, each next to a twin inside the roots that must work.

use super::support::{Case, base_features};

#[test]
fn write_outside_by_absolute_path_fails_and_inside_works() {
    if !base_features() {
        return;
    }
    let mut case = Case::new("fs");
    case.sh(r#"echo x > "$OUT/abs" || echo denied; echo y > "$WS/inside" && echo inside-ok"#);
    let out = case.run();
    out.expect_line("denied");
    out.expect_line("inside-ok");
    assert!(!case.out.join("abs").exists());
    assert_eq!(
        std::fs::read_to_string(case.ws.join("inside")).unwrap(),
        "y\n"
    );
}

#[test]
fn write_outside_through_dotdot_fails() {
    if !base_features() {
        return;
    }
    let mut case = Case::new("fs");
    // cwd is <base>/ws, the outside directory is <base>/outside.
    case.sh("echo x > ../outside/dotdot || echo denied; mkdir sub && echo y > sub/../twin && echo twin-ok");
    let out = case.run();
    out.expect_line("denied");
    out.expect_line("twin-ok");
    assert!(!case.out.join("dotdot").exists());
    assert!(case.ws.join("twin").exists());
}

#[test]
fn symlinks_cannot_carry_writes_outside() {
    if !base_features() {
        return;
    }
    let mut case = Case::new("fs");
    std::fs::write(case.out.join("target"), "original").unwrap();
    std::os::unix::fs::symlink(&case.out, case.ws.join("planted-dir")).unwrap();
    std::os::unix::fs::symlink(case.out.join("target"), case.ws.join("planted-file")).unwrap();
    std::os::unix::fs::symlink(case.out.join("dangling-new"), case.ws.join("dangling")).unwrap();
    case.sh(r#"
        echo x > planted-dir/new || echo dir-denied
        echo x > planted-file || echo file-denied
        echo x > dangling || echo dangling-denied
        ln -s "$OUT/target" made-here && { echo x > made-here || echo made-denied; }
        echo inside > real && ln -s real link-in && echo via-link >> link-in && echo twin-ok
        "#);
    let out = case.run();
    for line in [
        "dir-denied",
        "file-denied",
        "dangling-denied",
        "made-denied",
        "twin-ok",
    ] {
        out.expect_line(line);
    }
    assert_eq!(
        std::fs::read_to_string(case.out.join("target")).unwrap(),
        "original"
    );
    assert!(!case.out.join("new").exists());
    assert!(!case.out.join("dangling-new").exists());
    assert_eq!(
        std::fs::read_to_string(case.ws.join("real")).unwrap(),
        "inside\nvia-link\n"
    );
}

#[test]
fn hardlinks_and_renames_across_the_boundary_fail() {
    if !base_features() {
        return;
    }
    let mut case = Case::new("fs");
    std::fs::write(case.out.join("secret"), "s3cret").unwrap();
    std::fs::write(case.ws.join("mine"), "mine").unwrap();
    case.sh(r#"
        ln "$OUT/secret" hl 2>/dev/null || echo link-denied
        mv "$OUT/secret" stolen 2>/dev/null || echo rename-in-denied
        mv mine "$OUT/mine" 2>/dev/null || echo rename-out-denied
        mkdir d && mv mine d/mine && ln d/mine d/hl2 && echo twin-ok
        "#);
    let out = case.run();
    for line in [
        "link-denied",
        "rename-in-denied",
        "rename-out-denied",
        "twin-ok",
    ] {
        out.expect_line(line);
    }
    assert!(!case.ws.join("hl").exists());
    assert_eq!(
        std::fs::read_to_string(case.out.join("secret")).unwrap(),
        "s3cret"
    );
    assert!(!case.out.join("mine").exists());
    assert!(case.ws.join("d/hl2").exists());
}

#[test]
fn proc_self_root_does_not_bypass_landlock() {
    if !base_features() {
        return;
    }
    let mut case = Case::new("fs");
    case.sh(r#"echo x > "/proc/self/root$OUT/via-proc" || echo denied
        echo y > "/proc/self/root$WS/via-proc" && echo twin-ok"#);
    let out = case.run();
    out.expect_line("denied");
    out.expect_line("twin-ok");
    assert!(!case.out.join("via-proc").exists());
    assert!(case.ws.join("via-proc").exists());
}

#[test]
fn unlisted_directories_cannot_be_read() {
    if !base_features() {
        return;
    }
    let mut case = Case::new("fs");
    std::fs::write(case.out.join("secret"), "TOP-SECRET-VALUE").unwrap();
    std::fs::write(case.ws.join("public"), "public-value").unwrap();
    case.sh(r#"cat "$OUT/secret"; ls "$OUT" || echo list-denied; cat public"#);
    let out = case.run();
    assert!(!out.stdout.contains("TOP-SECRET-VALUE"), "{}", out.stdout);
    out.expect_line("list-denied");
    out.expect_line("public-value");
}

#[test]
fn read_roots_are_read_only_including_truncate() {
    if !base_features() {
        return;
    }
    let mut case = Case::new("fs");
    let ro = case.out.join("ro");
    std::fs::create_dir(&ro).unwrap();
    std::fs::write(ro.join("file"), "keep me").unwrap();
    case.spec.filesystem.read.push(ro.clone());
    case.sh(r#"cat "$OUT/ro/file"; echo
        true > "$OUT/ro/file" || echo trunc-open-denied
        truncate -s 0 "$OUT/ro/file" || echo truncate-denied
        echo x >> "$OUT/ro/file" || echo append-denied
        rm "$OUT/ro/file" || echo rm-denied
        echo abc > w && truncate -s 1 w && echo twin-ok"#);
    let out = case.run();
    for line in [
        "keep me",
        "trunc-open-denied",
        "truncate-denied",
        "append-denied",
        "rm-denied",
        "twin-ok",
    ] {
        out.expect_line(line);
    }
    assert_eq!(std::fs::read_to_string(ro.join("file")).unwrap(), "keep me");
}

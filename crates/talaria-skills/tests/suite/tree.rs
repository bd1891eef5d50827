//! The canonical tree hash and the limits on what a skill directory may hold.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use talaria_skills::tree::{MAX_FILES, MAX_SKILL_MD_BYTES, MAX_TREE_BYTES, check_path};
use talaria_skills::{Mode, SkillTree, validate_dir};

const SKILL_MD: &str = "---\nname: demo\ndescription: A demo.\n---\nBody\n";

fn write(dir: &Path, path: &str, content: &[u8]) {
    let target = dir.join(path);
    fs::create_dir_all(target.parent().unwrap()).unwrap();
    fs::write(target, content).unwrap();
}

fn demo(order: &[&str]) -> (tempfile::TempDir, std::path::PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("demo");
    for path in order {
        let content = if *path == "SKILL.md" {
            SKILL_MD.as_bytes().to_vec()
        } else {
            format!("content of {path}\n").into_bytes()
        };
        write(&dir, path, &content);
    }
    (tmp, dir)
}

#[test]
fn the_same_files_hash_the_same_whatever_their_creation_order() {
    let paths = [
        "SKILL.md",
        "scripts/run.sh",
        "references/a.md",
        "assets/b.txt",
    ];
    let (_a, first) = demo(&paths);
    let mut reversed = paths;
    reversed.reverse();
    let (_b, second) = demo(&reversed);
    let one = SkillTree::read_dir(&first).unwrap();
    let two = SkillTree::read_dir(&second).unwrap();
    assert_eq!(one.hash(), two.hash());
    assert_eq!(one.hash().len(), 64);
}

#[test]
fn one_changed_byte_or_the_executable_bit_changes_the_hash() {
    let (_tmp, dir) = demo(&["SKILL.md", "scripts/run.sh"]);
    let before = SkillTree::read_dir(&dir).unwrap().hash();
    write(&dir, "scripts/run.sh", b"content of scripts/run.sh\r");
    let edited = SkillTree::read_dir(&dir).unwrap().hash();
    assert_ne!(before, edited);
    fs::set_permissions(
        dir.join("scripts/run.sh"),
        fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    assert_ne!(SkillTree::read_dir(&dir).unwrap().hash(), edited);
}

#[test]
fn the_hash_follows_the_documented_encoding() {
    use sha2::{Digest, Sha256};
    let mut tree = SkillTree::new();
    tree.insert(
        "SKILL.md",
        talaria_skills::SkillFile {
            executable: false,
            content: b"x".to_vec(),
        },
    )
    .unwrap();
    let mut expected = b"talaria-skill-tree-v1\n".to_vec();
    expected.extend(8u64.to_be_bytes());
    expected.extend(b"SKILL.md");
    expected.push(0);
    expected.extend(1u64.to_be_bytes());
    expected.extend(b"x");
    let digest: String = Sha256::digest(&expected)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(tree.hash(), digest);
}

#[test]
fn symlinks_are_refused_not_followed() {
    let (_tmp, dir) = demo(&["SKILL.md"]);
    std::os::unix::fs::symlink("/etc/passwd", dir.join("references")).unwrap();
    let problems = SkillTree::read_dir(&dir).unwrap_err();
    assert_eq!(problems.len(), 1);
    assert_eq!(problems[0].field, "references");
    assert!(
        problems[0].message.contains("symbolic link"),
        "{}",
        problems[0]
    );
    assert!(!validate_dir(&dir, Mode::Lenient).is_valid());
}

#[test]
fn oversized_skill_md_too_many_files_and_too_many_bytes_are_refused() {
    let (_tmp, dir) = demo(&["SKILL.md"]);
    let big = format!("{SKILL_MD}{}", "x".repeat(MAX_SKILL_MD_BYTES as usize));
    fs::write(dir.join("SKILL.md"), big).unwrap();
    let report = validate_dir(&dir, Mode::Lenient);
    assert!(
        report
            .errors()
            .any(|p| p.field == "SKILL.md" && p.message.contains("at most 65536")),
        "{:?}",
        report.problems
    );

    let (_tmp, dir) = demo(&["SKILL.md"]);
    for i in 0..MAX_FILES {
        write(&dir, &format!("assets/f{i}"), b"x");
    }
    let report = validate_dir(&dir, Mode::Lenient);
    assert!(
        report
            .errors()
            .any(|p| p.field == "tree" && p.message.contains("201 files; at most 200")),
        "{:?}",
        report.problems
    );

    let (_tmp, dir) = demo(&["SKILL.md"]);
    let mib = vec![b'x'; 1024 * 1024];
    for i in 0..=(MAX_TREE_BYTES / (1024 * 1024)) {
        write(&dir, &format!("assets/big{i}"), &mib);
    }
    let report = validate_dir(&dir, Mode::Lenient);
    assert!(
        report
            .errors()
            .any(|p| p.field == "tree" && p.message.contains("bytes in all")),
        "{:?}",
        report.problems
    );
}

#[test]
fn absolute_dot_dot_and_odd_paths_are_refused() {
    for bad in [
        "/etc/passwd",
        "../x",
        "scripts/../../x",
        "a//b",
        "./a",
        "a\\b",
        "a\nb",
        "",
    ] {
        assert!(check_path(bad).is_err(), "{bad:?} accepted");
    }
    for good in [
        "SKILL.md",
        "scripts/run.sh",
        "assets/img/logo.png",
        ".hidden",
    ] {
        check_path(good).unwrap();
    }
}

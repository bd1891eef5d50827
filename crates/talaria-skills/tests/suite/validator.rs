//! Golden validator cases: every directory under `fixtures/valid` passes strict validation;
//! every one under `fixtures/invalid` fails with exactly the problems in `<case>.expected`.
//! `UPDATE_GOLDEN=1` rewrites the expectations (review the diff before committing).

use std::fs;
use std::path::Path;

use talaria_skills::{Mode, Severity, validate_dir};

use super::fixtures;

fn rendered(dir: &Path, mode: Mode) -> String {
    validate_dir(dir, mode)
        .problems
        .iter()
        .map(|p| format!("{p}\n"))
        .collect()
}

fn check_golden(dir: &Path, expected_file: &Path, mode: Mode) {
    let actual = rendered(dir, mode);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        fs::write(expected_file, &actual).unwrap();
        return;
    }
    let expected = fs::read_to_string(expected_file)
        .unwrap_or_else(|e| panic!("{}: {e}", expected_file.display()));
    assert_eq!(actual, expected, "{}", dir.display());
}

fn cases(group: &str) -> Vec<std::path::PathBuf> {
    let mut dirs: Vec<_> = fs::read_dir(fixtures().join(group))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    assert!(!dirs.is_empty(), "no fixtures in {group}");
    dirs
}

#[test]
fn valid_fixtures_pass_strict_validation_without_warnings() {
    for dir in cases("valid") {
        let report = validate_dir(&dir, Mode::Strict);
        assert!(
            report.problems.is_empty(),
            "{}: {:?}",
            dir.display(),
            report.problems
        );
        let fm = report.front_matter.unwrap();
        assert_eq!(fm.name, dir.file_name().unwrap().to_str().unwrap());
    }
}

#[test]
fn invalid_fixtures_fail_with_exactly_their_expected_problems() {
    for dir in cases("invalid") {
        let report = validate_dir(&dir, Mode::Strict);
        assert!(!report.is_valid(), "{} passed", dir.display());
        check_golden(&dir, &dir.with_extension("expected"), Mode::Strict);
    }
}

#[test]
fn a_hermes_skill_passes_lenient_with_warnings_and_fails_strict() {
    let dir = fixtures().join("hermes/github-pr-workflow");
    let lenient = validate_dir(&dir, Mode::Lenient);
    assert!(lenient.is_valid(), "{:?}", lenient.problems);
    assert!(
        lenient
            .problems
            .iter()
            .all(|p| p.severity == Severity::Warning)
    );
    let strict = validate_dir(&dir, Mode::Strict);
    assert!(!strict.is_valid());
    let fields: Vec<&str> = strict.errors().map(|p| p.field.as_str()).collect();
    for field in [
        "version",
        "author",
        "platforms",
        "required_environment_variables",
        "metadata.hermes",
        "tags",
    ] {
        assert!(fields.contains(&field), "{field} not reported: {fields:?}");
    }
    check_golden(&dir, &dir.with_extension("strict.expected"), Mode::Strict);
    check_golden(&dir, &dir.with_extension("lenient.expected"), Mode::Lenient);
}

#[test]
fn unicode_names_are_refused_in_strict_mode_and_warned_about_in_lenient() {
    let tmp = tempfile::tempdir().unwrap();
    // Cyrillic "ѕ" and "і": looks exactly like "skill".
    let dir = tmp.path().join("ѕkіll");
    fs::create_dir(&dir).unwrap();
    fs::write(
        dir.join("SKILL.md"),
        "---\nname: ѕkіll\ndescription: look-alike\n---\n",
    )
    .unwrap();
    let strict = validate_dir(&dir, Mode::Strict);
    assert_eq!(
        rendered(&dir, Mode::Strict),
        "error: name: must be ASCII (a-z, 0-9, -) for skills the agent writes\n"
    );
    assert!(!strict.is_valid());
    let lenient = validate_dir(&dir, Mode::Lenient);
    assert!(lenient.is_valid());
    assert_eq!(lenient.problems.len(), 1);
}

#[test]
fn a_missing_skill_md_and_a_lowercase_one_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("lower");
    fs::create_dir(&dir).unwrap();
    assert_eq!(
        rendered(&dir, Mode::Strict),
        "error: SKILL.md: missing; every skill needs one\n"
    );
    fs::write(
        dir.join("skill.md"),
        "---\nname: lower\ndescription: d\n---\n",
    )
    .unwrap();
    assert_eq!(
        rendered(&dir, Mode::Strict),
        "error: SKILL.md: missing; rename skill.md to SKILL.md\n"
    );
}

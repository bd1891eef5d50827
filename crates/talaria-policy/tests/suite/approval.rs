//! Approval rules: first match wins, no match allows, examples are checked at load.

use talaria_policy::Decision;

use super::support::{PolicyDir, errors_of};

const RULES: &str = r#"
[[approval]]
pattern = '^git\s+push\s+.*--force'
decision = "forbidden"
reason = "rewrites shared history"
match = ["git push origin main --force"]

[[approval]]
pattern = '^git\s+push\b'
decision = "prompt"
reason = "publishes commits"
match = ["git push", "git push origin main --force"]
not_match = ["git pull", "git pushy"]

[[approval]]
pattern = '^git\b'
decision = "allow"
"#;

#[test]
fn first_matching_rule_wins_and_no_rule_allows() {
    let dir = PolicyDir::new(&[("p", RULES)]);
    let set = dir.load().unwrap();
    let p = set.profile("p").unwrap();
    assert_eq!(
        p.decide("git push origin main --force"),
        Decision::Forbidden {
            reason: "rewrites shared history".into()
        }
    );
    assert_eq!(
        p.decide("git push origin main"),
        Decision::Prompt {
            reason: "publishes commits".into()
        }
    );
    assert_eq!(p.decide("git status"), Decision::Allow);
    assert_eq!(p.decide("make test"), Decision::Allow);
}

#[test]
fn patterns_search_the_full_command_line() {
    let dir = PolicyDir::new(&[(
        "p",
        "[[approval]]\npattern = 'shutdown'\ndecision = \"forbidden\"\nreason = \"no\"\n",
    )]);
    let set = dir.load().unwrap();
    let p = set.profile("p").unwrap();
    // Unanchored patterns match anywhere in the line, arguments included.
    assert_eq!(p.decide("echo ok && shutdown -h now").strictness(), 2);
    assert_eq!(p.decide("ls shutdown-notes.txt").strictness(), 2);
}

#[test]
fn a_rule_that_fails_its_own_example_refuses_to_load() {
    let text = "[[approval]]\npattern = '^rm\\s+-rf\\s+/'\ndecision = \"forbidden\"\nreason = \"root\"\nmatch = [\n  \"rm -rf /\",\n  \"rm  -fr /etc\",\n]\nnot_match = [\"rm -rf ./build\", \"rm -rf /tmp/x\"]\n";
    let (dir, errors) = errors_of(&[("p", text)]);
    let file = dir.file("p");
    assert_eq!(
        errors,
        vec![
            format!(
                "{file}:7: bad value for `approval[0].match`: example \"rm  -fr /etc\" does not match pattern `^rm\\s+-rf\\s+/`"
            ),
            format!(
                "{file}:9: bad value for `approval[0].not_match`: example \"rm -rf /tmp/x\" matches pattern `^rm\\s+-rf\\s+/`, but is listed as one that must not"
            ),
        ]
    );
}

#[test]
fn child_rules_come_before_parent_rules() {
    let dir = PolicyDir::new(&[(
        "strict",
        "inherits = \"workspace-write\"\n[[approval]]\npattern = '(^|[;&|]\\s*)sudo\\s'\ndecision = \"forbidden\"\nreason = \"never as root here\"\nmatch = [\"sudo ls\"]\n",
    )]);
    let set = dir.load_over_shipped().unwrap();
    assert_eq!(
        set.profile("strict").unwrap().decide("sudo ls"),
        Decision::Forbidden {
            reason: "never as root here".into()
        }
    );
    // The parent's rules still apply after the child's.
    assert_eq!(
        set.profile("strict")
            .unwrap()
            .decide("rm -rf /")
            .strictness(),
        2
    );
    assert_eq!(
        set.profile("workspace-write").unwrap().decide("sudo ls"),
        Decision::Prompt {
            reason: "runs a command as another user".into()
        }
    );
}

//! Unified diffs between two versions of a skill.

use similar::TextDiff;

use crate::tree::SkillTree;

/// A unified diff of every file that differs between `a` and `b` (labelled `a/…` and `b/…`),
/// in path order. Binary files and mode changes get one line each. Empty when the trees are
/// identical.
pub fn unified(a: &SkillTree, b: &SkillTree) -> String {
    let mut paths: Vec<&str> = a.files().map(|(p, _)| p).collect();
    paths.extend(b.files().map(|(p, _)| p).filter(|p| a.get(p).is_none()));
    paths.sort_unstable();
    let mut out = String::new();
    for path in paths {
        let (old, new) = (a.get(path), b.get(path));
        if old == new {
            continue;
        }
        let old_exec = old.is_some_and(|f| f.executable);
        let new_exec = new.is_some_and(|f| f.executable);
        if old.is_some() && new.is_some() && old_exec != new_exec {
            out.push_str(&format!(
                "mode {path}: {} -> {}\n",
                if old_exec { "755" } else { "644" },
                if new_exec { "755" } else { "644" }
            ));
        }
        let empty: &[u8] = &[];
        let old_bytes = old.map_or(empty, |f| &f.content);
        let new_bytes = new.map_or(empty, |f| &f.content);
        if old_bytes == new_bytes {
            continue;
        }
        match (
            std::str::from_utf8(old_bytes),
            std::str::from_utf8(new_bytes),
        ) {
            (Ok(old_text), Ok(new_text)) => {
                let old_label = if old.is_some() {
                    format!("a/{path}")
                } else {
                    "/dev/null".to_owned()
                };
                let new_label = if new.is_some() {
                    format!("b/{path}")
                } else {
                    "/dev/null".to_owned()
                };
                let diff = TextDiff::from_lines(old_text, new_text);
                out.push_str(
                    &diff
                        .unified_diff()
                        .context_radius(3)
                        .header(&old_label, &new_label)
                        .to_string(),
                );
            }
            _ => out.push_str(&format!("Binary files a/{path} and b/{path} differ\n")),
        }
    }
    out
}

//! Whether one profile grants more than another: the check that keeps a profile someone else
//! chose (a skill's declared profile, written by the model) from widening what the tool that
//! runs it may do.
//!
//! Judged on the profiles as written, dimension by dimension, and conservatively: anything not
//! provably within the base counts as wider. A profile is within its base when every root it
//! reads lies under one the base reads or writes, every root it writes under one the base
//! writes, its network is no more than the base's, every limit the base sets is set at most as
//! high, it passes no environment variable the base does not, and it keeps every namespace and
//! protected path of the base. Backends and `env.set` values do not widen access to the host and
//! are not compared; nor are approval rules: they are the owner's net for commands the sandbox
//! would allow, not the boundary (a read-only profile without the base's `rm -rf /` rule can
//! still delete nothing).

use crate::narrow::intersect_roots;
use crate::profile::{NetworkMode, Profile};
use crate::template::PathTemplate;
use crate::units::{format_duration, format_size};

impl Profile {
    /// The first way in which `self` grants more than `base`, in words (`writes /srv, which
    /// workspace-write does not`); `None` when `self` is within `base`.
    pub fn widening_over(&self, base: &Profile) -> Option<String> {
        let other = base.name();
        let covered =
            |root: &PathTemplate, roots: &[&PathTemplate]| roots.iter().any(|r| root.is_within(r));
        let base_writes: Vec<&PathTemplate> = base.write.iter().collect();
        let base_reads: Vec<&PathTemplate> = base.read.iter().chain(&base.write).collect();
        if let Some(root) = self.write.iter().find(|w| !covered(w, &base_writes)) {
            return Some(format!("writes {root}, which {other} does not"));
        }
        if let Some(root) = self.read.iter().find(|r| !covered(r, &base_reads)) {
            return Some(format!("reads {root}, which {other} does not"));
        }
        let (mine, theirs) = (&self.network, &base.network);
        if mine.mode > theirs.mode {
            return Some(format!(
                "network {} is more than {other}'s {}",
                mine.mode.name(),
                theirs.mode.name()
            ));
        }
        if mine.mode == NetworkMode::Allow
            && let Some(endpoint) = mine.allow.iter().find(|e| !theirs.allow.contains(e))
        {
            return Some(format!("reaches {endpoint}, which {other} does not"));
        }
        if let Some(why) = self.limits_over(base) {
            return Some(why);
        }
        if let Some(name) = self.env_pass.iter().find(|n| !base.env_pass.contains(n)) {
            return Some(format!("passes ${name} in, which {other} does not"));
        }
        let (ns, base_ns) = (&self.namespaces, &base.namespaces);
        for (kind, has, base_has) in [
            ("user", ns.user, base_ns.user),
            ("mount", ns.mount, base_ns.mount),
            ("pid", ns.pid, base_ns.pid),
            ("net", ns.net, base_ns.net),
        ] {
            if base_has && !has {
                return Some(format!(
                    "shares the host's {kind} namespace, which {other} does not"
                ));
            }
        }
        // A protected path the base keeps read-only must stay so wherever self may write it.
        let writable =
            |p: &PathTemplate| !intersect_roots(std::slice::from_ref(p), &self.write).is_empty();
        if let Some(path) = base
            .protected
            .iter()
            .find(|p| writable(p) && !self.protected.contains(p))
        {
            return Some(format!("may write {path}, which {other} protects"));
        }
        None
    }

    fn limits_over(&self, base: &Profile) -> Option<String> {
        let (mine, theirs) = (&self.limits, &base.limits);
        let other = base.name();
        let check =
            |name: &str, mine: Option<u64>, theirs: Option<u64>, show: &dyn Fn(u64) -> String| {
                match (mine, theirs) {
                    (_, None) => None,
                    (None, Some(limit)) => Some(format!(
                        "sets no limits.{name}, where {other} allows {}",
                        show(limit)
                    )),
                    (Some(mine), Some(limit)) if mine > limit => Some(format!(
                        "allows limits.{name} = {}, more than {other}'s {}",
                        show(mine),
                        show(limit)
                    )),
                    _ => None,
                }
            };
        let secs = |d: Option<std::time::Duration>| d.map(|d| d.as_secs());
        let duration = |s: u64| format_duration(std::time::Duration::from_secs(s));
        let count = |n: u64| n.to_string();
        check(
            "wall_time",
            secs(mine.wall_time),
            secs(theirs.wall_time),
            &duration,
        )
        .or_else(|| {
            check(
                "cpu_time",
                secs(mine.cpu_time),
                secs(theirs.cpu_time),
                &duration,
            )
        })
        .or_else(|| check("memory", mine.memory, theirs.memory, &format_size))
        .or_else(|| check("tasks", mine.tasks, theirs.tasks, &count))
        .or_else(|| check("file_size", mine.file_size, theirs.file_size, &format_size))
        .or_else(|| check("open_files", mine.open_files, theirs.open_files, &count))
        .or_else(|| check("output", mine.output, theirs.output, &format_size))
    }
}

#[cfg(test)]
mod tests {
    use crate::PolicySet;

    #[test]
    fn shipped_profiles_are_ordered_as_their_descriptions_say() {
        let set = PolicySet::shipped(crate::backend::TEST_BACKENDS).unwrap();
        let p = |name: &str| set.profile(name).unwrap();
        let within = |a: &str, b: &str| p(a).widening_over(p(b));
        assert_eq!(within("read-only", "workspace-write"), None);
        assert_eq!(within("oci", "workspace-write"), None);
        assert_eq!(within("workspace-write", "workspace-write"), None);
        assert_eq!(
            within("networked", "workspace-write").as_deref(),
            Some("network allow is more than workspace-write's off")
        );
        assert_eq!(
            within("workspace-write", "read-only").as_deref(),
            Some("writes ${workspace}, which read-only does not")
        );
    }
}

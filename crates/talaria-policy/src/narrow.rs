//! Narrowing a profile for the surface a request came in on.
//!
//! A tool maps to a profile; who asked can only take rights away. Each surface has a ceiling
//! and the narrowed profile is the profile intersected with it, dimension by dimension, so
//! narrowing never widens anything and narrowing twice changes nothing more:
//!
//! | dimension | owner | allow-listed user                              | webhook                       |
//! |-----------|-------|------------------------------------------------|-------------------------------|
//! | write     | as is | within `${workspace}`, `${tmp}`, `/dev/null`   | the same                      |
//! | network   | as is | off                                            | off                           |
//! | limits    | as is | at most [`ALLOWLISTED_USER_LIMITS`]            | at most [`WEBHOOK_LIMITS`]    |
//! | approvals | as is | as is                                          | `prompt` becomes `forbidden`  |
//!
//! Write roots outside the ceiling stay readable (read access is part of write access); read
//! roots, protected paths, namespaces, the environment and backends are unchanged.

use std::time::Duration;

use crate::profile::{Limits, Network, Profile, RuleDecision, Surface};
use crate::template::{Base, PathTemplate, Variable};

/// The most an allow-listed chat user's command may use.
pub const ALLOWLISTED_USER_LIMITS: Limits = Limits {
    wall_time: Some(Duration::from_secs(10 * 60)),
    cpu_time: Some(Duration::from_secs(10 * 60)),
    memory: Some(4 << 30),
    tasks: Some(512),
    file_size: Some(1 << 30),
    open_files: Some(1024),
    output: Some(1 << 20),
};

/// The most a webhook-triggered command may use.
pub const WEBHOOK_LIMITS: Limits = Limits {
    wall_time: Some(Duration::from_secs(5 * 60)),
    cpu_time: Some(Duration::from_secs(5 * 60)),
    memory: Some(2 << 30),
    tasks: Some(256),
    file_size: Some(256 << 20),
    open_files: Some(1024),
    output: Some(256 << 10),
};

/// The ceiling of one surface.
struct Ceiling {
    write: Vec<PathTemplate>,
    network: Network,
    limits: Limits,
    prompt_is_forbidden: bool,
}

impl Ceiling {
    /// `None` for the owner: no ceiling.
    fn of(surface: Surface) -> Option<Ceiling> {
        // `/dev/null` is a sink, not storage: `cmd 2>/dev/null` must keep working.
        let write = vec![
            PathTemplate::variable(Variable::Workspace, &[]),
            PathTemplate::variable(Variable::Tmp, &[]),
            PathTemplate {
                base: Base::Root,
                components: vec!["dev".to_owned(), "null".to_owned()],
            },
        ];
        match surface {
            Surface::Owner => None,
            Surface::AllowlistedUser => Some(Ceiling {
                write,
                network: Network::OFF,
                limits: ALLOWLISTED_USER_LIMITS,
                prompt_is_forbidden: false,
            }),
            Surface::Webhook => Some(Ceiling {
                write,
                network: Network::OFF,
                limits: WEBHOOK_LIMITS,
                prompt_is_forbidden: true,
            }),
        }
    }
}

/// The paths under both `a` and `b`: for each pair, the deeper one when one contains the
/// other. Judged on the text of the templates, so paths with different bases never overlap —
/// which can only make the result smaller.
pub(crate) fn intersect_roots(a: &[PathTemplate], b: &[PathTemplate]) -> Vec<PathTemplate> {
    let mut out: Vec<PathTemplate> = Vec::new();
    for x in a {
        for y in b {
            let deeper = if x.is_within(y) {
                x
            } else if y.is_within(x) {
                y
            } else {
                continue;
            };
            if !out.contains(deeper) {
                out.push(deeper.clone());
            }
        }
    }
    out
}

impl Profile {
    /// This profile as `surface` may use it. Never wider than `self` in any dimension;
    /// narrowing an already narrowed profile keeps the stricter surface.
    pub fn narrow(&self, surface: Surface) -> Profile {
        let surface = self.surface.max(surface);
        let mut narrowed = self.clone();
        narrowed.surface = surface;
        let Some(ceiling) = Ceiling::of(surface) else {
            return narrowed;
        };
        narrowed.write = intersect_roots(&self.write, &ceiling.write);
        for root in &self.write {
            let still_writable = narrowed.write.iter().any(|w| root.is_within(w));
            if !still_writable && !narrowed.read.contains(root) {
                narrowed.read.push(root.clone());
            }
        }
        narrowed.network = self.network.intersect(&ceiling.network);
        narrowed.limits = self.limits.intersect(&ceiling.limits);
        if ceiling.prompt_is_forbidden {
            for rule in &mut narrowed.approval {
                match rule.decision {
                    RuleDecision::Prompt => {
                        rule.decision = RuleDecision::Forbidden;
                        rule.reason = format!(
                            "{} (this needs approval, and a {} has nobody to ask)",
                            rule.reason,
                            surface.name()
                        );
                    }
                    RuleDecision::Allow | RuleDecision::Forbidden => {}
                }
            }
        }
        narrowed
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::endpoint::Endpoint;
    use crate::profile::NetworkMode;

    fn roots(list: &[&str]) -> Vec<PathTemplate> {
        list.iter()
            .map(|t| PathTemplate::parse(t).unwrap())
            .collect()
    }

    #[test]
    fn root_intersection_keeps_the_deeper_path() {
        let a = roots(&["${workspace}", "${tmp}/cache", "/srv"]);
        let b = roots(&["${workspace}/src", "${tmp}", "/dev/null"]);
        assert_eq!(
            intersect_roots(&a, &b),
            roots(&["${workspace}/src", "${tmp}/cache"])
        );
        let mut swapped = intersect_roots(&b, &a);
        swapped.sort();
        let mut expected = roots(&["${workspace}/src", "${tmp}/cache"]);
        expected.sort();
        assert_eq!(swapped, expected);
        assert!(intersect_roots(&a, &[]).is_empty());
    }

    #[test]
    fn network_intersection_is_the_lesser_of_both() {
        let e = |t: &str| Endpoint::parse(t).unwrap();
        let allow = |list: &[&str]| Network {
            mode: NetworkMode::Allow,
            allow: list.iter().map(|t| e(t)).collect(),
        };
        let loopback = Network {
            mode: NetworkMode::Loopback,
            allow: Vec::new(),
        };
        let a = allow(&["crates.io:443", "pypi.org:443"]);
        let b = allow(&["pypi.org:443", "example.org:80"]);
        assert_eq!(a.intersect(&b), allow(&["pypi.org:443"]));
        assert_eq!(a.intersect(&allow(&["example.org:80"])), Network::OFF);
        assert_eq!(a.intersect(&loopback), loopback);
        assert_eq!(loopback.intersect(&a), loopback);
        assert_eq!(a.intersect(&Network::OFF), Network::OFF);
        for x in [&a, &b, &loopback, &Network::OFF] {
            for y in [&a, &b, &loopback, &Network::OFF] {
                let both = x.intersect(y);
                assert_eq!(both, y.intersect(x));
                assert!(both.mode <= x.mode && both.mode <= y.mode);
                assert!(
                    both.allow
                        .iter()
                        .all(|e| x.allow.contains(e) && y.allow.contains(e))
                );
            }
        }
    }

    #[test]
    fn limit_intersection_is_the_minimum_with_none_as_unlimited() {
        let a = Limits {
            tasks: Some(10),
            memory: None,
            wall_time: Some(Duration::from_secs(60)),
            ..Limits::default()
        };
        let b = Limits {
            tasks: Some(20),
            memory: Some(5),
            wall_time: None,
            ..Limits::default()
        };
        let both = a.intersect(&b);
        assert_eq!(both, b.intersect(&a));
        assert_eq!(both.tasks, Some(10));
        assert_eq!(both.memory, Some(5));
        assert_eq!(both.wall_time, Some(Duration::from_secs(60)));
        assert_eq!(both.open_files, None);
        assert_eq!(a.intersect(&Limits::default()), a);
    }
}

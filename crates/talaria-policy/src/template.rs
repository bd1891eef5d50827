//! Paths and values with variables, as written in profiles.
//!
//! A path is absolute (`/usr`) or starts with a variable (`${workspace}/.git/hooks`); variables
//! appear nowhere else in a path, and `.`/`..` components are refused, so what a path names can
//! be read off its text: `${workspace}/../x` would name something outside the workspace while
//! looking like it is inside. Environment values may use variables anywhere (`${tmp}/cache`).

use std::fmt;
use std::path::{Path, PathBuf};

/// A variable a profile may use; its value comes from the [`crate::ResolveContext`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Variable {
    Workspace,
    Home,
    Tmp,
    TalariaHome,
}

impl Variable {
    pub(crate) const ALL: [Variable; 4] = [
        Variable::Workspace,
        Variable::Home,
        Variable::Tmp,
        Variable::TalariaHome,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Variable::Workspace => "workspace",
            Variable::Home => "home",
            Variable::Tmp => "tmp",
            Variable::TalariaHome => "talaria_home",
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.name() == name)
    }
}

/// The values of the variables for one resolution.
#[derive(Debug, Clone)]
pub(crate) struct Variables {
    pub(crate) workspace: PathBuf,
    pub(crate) home: PathBuf,
    pub(crate) tmp: PathBuf,
    pub(crate) talaria_home: PathBuf,
}

impl Variables {
    pub(crate) fn get(&self, variable: Variable) -> &Path {
        match variable {
            Variable::Workspace => &self.workspace,
            Variable::Home => &self.home,
            Variable::Tmp => &self.tmp,
            Variable::TalariaHome => &self.talaria_home,
        }
    }
}

fn known_variables() -> String {
    Variable::ALL
        .iter()
        .map(|v| format!("${{{}}}", v.name()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Where a [`PathTemplate`] starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Base {
    /// The filesystem root: the template is an absolute path.
    Root,
    Variable(Variable),
}

/// A path as written in a profile, checked but not yet resolved.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct PathTemplate {
    pub(crate) base: Base,
    /// Normal components after the base: no `.`, `..`, empty parts or variables.
    pub(crate) components: Vec<String>,
}

impl PathTemplate {
    /// Parse a path as written in a profile.
    ///
    /// # Errors
    /// A message naming what is wrong with `text`.
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        let (base, rest) = if let Some(after) = text.strip_prefix("${") {
            let (name, rest) = after
                .split_once('}')
                .ok_or_else(|| format!("unterminated variable in {text:?}"))?;
            let variable = Variable::from_name(name).ok_or_else(|| {
                format!(
                    "unknown variable ${{{name}}} in {text:?} (known: {})",
                    known_variables()
                )
            })?;
            if !(rest.is_empty() || rest.starts_with('/')) {
                return Err(format!(
                    "in {text:?} the variable must be followed by `/` or end the path"
                ));
            }
            (Base::Variable(variable), rest)
        } else if text.starts_with('/') {
            (Base::Root, text)
        } else {
            return Err(format!(
                "{text:?} is not an absolute path (start it with `/` or a variable such as ${{workspace}})"
            ));
        };
        let mut components = Vec::new();
        for part in rest.split('/').filter(|p| !p.is_empty()) {
            match part {
                "." | ".." => {
                    return Err(format!(
                        "{text:?} contains `{part}`; write the path plainly"
                    ));
                }
                _ if part.contains("${") => {
                    return Err(format!(
                        "{text:?} uses a variable after its start; variables may only begin a path"
                    ));
                }
                _ if part.contains('\0') => {
                    return Err(format!("{text:?} contains a NUL byte"));
                }
                _ => components.push(part.to_owned()),
            }
        }
        Ok(Self { base, components })
    }

    pub(crate) fn variable(variable: Variable, components: &[&str]) -> Self {
        Self {
            base: Base::Variable(variable),
            components: components.iter().map(|c| (*c).to_owned()).collect(),
        }
    }

    /// Whether this path is `other` or below it, judged on the text alone (no symlinks, and
    /// paths from different bases are never related).
    pub(crate) fn is_within(&self, other: &PathTemplate) -> bool {
        self.base == other.base && self.components.starts_with(&other.components)
    }

    /// The path with its variable replaced.
    pub(crate) fn substitute(&self, variables: &Variables) -> PathBuf {
        let mut path = match self.base {
            Base::Root => PathBuf::from("/"),
            Base::Variable(v) => variables.get(v).to_path_buf(),
        };
        path.extend(&self.components);
        path
    }
}

impl fmt::Display for PathTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.base {
            Base::Root => {
                if self.components.is_empty() {
                    return f.write_str("/");
                }
            }
            Base::Variable(v) => write!(f, "${{{}}}", v.name())?,
        }
        for component in &self.components {
            write!(f, "/{component}")?;
        }
        Ok(())
    }
}

/// Text with variables anywhere, for environment values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ValueTemplate {
    text: String,
}

impl ValueTemplate {
    /// Check that every `${…}` in `text` names a known variable.
    ///
    /// # Errors
    /// A message naming the unknown or unterminated variable.
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        if text.contains('\0') {
            return Err(format!("{text:?} contains a NUL byte"));
        }
        let mut rest = text;
        while let Some(start) = rest.find("${") {
            let after = &rest[start + 2..];
            let (name, tail) = after
                .split_once('}')
                .ok_or_else(|| format!("unterminated variable in {text:?}"))?;
            if Variable::from_name(name).is_none() {
                return Err(format!(
                    "unknown variable ${{{name}}} in {text:?} (known: {})",
                    known_variables()
                ));
            }
            rest = tail;
        }
        Ok(Self {
            text: text.to_owned(),
        })
    }

    pub(crate) fn as_str(&self) -> &str {
        &self.text
    }

    pub(crate) fn substitute(&self, variables: &Variables) -> String {
        let mut out = self.text.clone();
        for v in Variable::ALL {
            out = out.replace(
                &format!("${{{}}}", v.name()),
                &variables.get(v).to_string_lossy(),
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn paths_parse_and_print_back() {
        for text in [
            "/",
            "/usr",
            "${workspace}",
            "${workspace}/.git/hooks",
            "/nix/store",
        ] {
            assert_eq!(PathTemplate::parse(text).unwrap().to_string(), text);
        }
        assert_eq!(
            PathTemplate::parse("/usr//lib/").unwrap().to_string(),
            "/usr/lib"
        );
    }

    #[test]
    fn bad_paths_say_why() {
        let cases = [
            ("usr/lib", "is not an absolute path"),
            ("~/x", "is not an absolute path"),
            ("${nope}/x", "unknown variable ${nope}"),
            ("${workspace", "unterminated variable"),
            ("${workspace}x", "must be followed by `/`"),
            ("${workspace}/../x", "contains `..`"),
            ("/a/./b", "contains `.`"),
            ("/a/${tmp}", "variables may only begin a path"),
        ];
        for (text, expected) in cases {
            let err = PathTemplate::parse(text).unwrap_err();
            assert!(err.contains(expected), "{text}: {err}");
        }
    }

    #[test]
    fn within_is_textual_and_component_wise() {
        let p = |t| PathTemplate::parse(t).unwrap();
        assert!(p("${workspace}/a/b").is_within(&p("${workspace}")));
        assert!(p("${workspace}").is_within(&p("${workspace}")));
        assert!(!p("${workspace}/ab").is_within(&p("${workspace}/a")));
        assert!(!p("${tmp}").is_within(&p("${workspace}")));
        assert!(p("/usr/lib").is_within(&p("/")));
    }

    #[test]
    fn values_substitute_everywhere() {
        let vars = Variables {
            workspace: "/w".into(),
            home: "/h".into(),
            tmp: "/t".into(),
            talaria_home: "/h/.talaria".into(),
        };
        let v = ValueTemplate::parse("${tmp}/cache:${home}").unwrap();
        assert_eq!(v.substitute(&vars), "/t/cache:/h");
        assert!(ValueTemplate::parse("$5 and $HOME").is_ok());
        assert!(
            ValueTemplate::parse("${HOME}")
                .unwrap_err()
                .contains("unknown variable")
        );
    }
}

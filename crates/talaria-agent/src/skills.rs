//! The agent's side of the skill library: the catalogue in the system prompt, loading a skill
//! into a turn, and the trust rules that decide whether a skill write is quarantined.
//!
//! Recall is progressive disclosure: the prompt lists active skills by name and description
//! only; the model reads one with `skill_view` when it needs it. Only the registry's *active*
//! skills are ever shown or loaded — quarantined, rejected and archived ones never are, so a
//! skill written from a turn that saw untrusted content cannot reach a later session's context
//! until the owner approves it.
//!
//! **Untrusted content**, concretely: the result of a tool call that ran under a policy profile
//! whose network is not `off` (the executor reports it per command, see
//! [`CommandOutcome::networked`](crate::exec::CommandOutcome::networked)), later MCP and web
//! tool results, and user messages in a session that talks to anyone but the owner
//! ([`Session::person`](crate::Session::person)). A turn that saw any of it carries the flag
//! until it ends ([`TurnOutcome::untrusted_context`](crate::TurnOutcome::untrusted_context)),
//! and every skill or memory write made in it is quarantined.

use std::path::PathBuf;

use talaria_skills::{CatalogueEntry, Registry, RegistryError, SkillTree};
use talaria_store::{SkillUse, Store};

/// Tokens of text, estimated as characters / 4 (rounded up): close enough for English prose to
/// keep the catalogue inside its budget without a tokenizer for every provider.
pub fn estimate_tokens(text: &str) -> usize {
    text.chars().count().div_ceil(4)
}

/// Longest description shown in the catalogue; `skill_view` shows the rest.
const DESCRIPTION_MAX_CHARS: usize = 300;

/// The skill registry as the agent uses it.
#[derive(Debug, Clone)]
pub struct SkillLibrary {
    registry: Registry,
    store: Store,
    budget_tokens: usize,
}

/// A skill loaded for the model: its `SKILL.md` and the paths of its other files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadedSkill {
    pub name: String,
    pub skill_md: String,
    pub other_files: Vec<String>,
}

impl LoadedSkill {
    /// The text the model sees.
    pub fn render(&self) -> String {
        let mut out = format!("<skill name=\"{}\">\n{}", self.name, self.skill_md);
        if !self.other_files.is_empty() {
            out.push_str(&format!(
                "\n\nFiles of this skill (read one with skill_view name={:?} path=…): {}",
                self.name,
                self.other_files.join(", ")
            ));
        }
        out.push_str("\n</skill>");
        out
    }
}

impl SkillLibrary {
    /// The library in `store`, projecting into `skills_dir`, with a catalogue of at most
    /// `budget_tokens` (estimated) tokens.
    pub fn new(store: Store, skills_dir: impl Into<PathBuf>, budget_tokens: usize) -> Self {
        Self {
            registry: Registry::new(store.clone(), skills_dir),
            store,
            budget_tokens,
        }
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Whether the catalogue depends on the request: only when the active skills do not all
    /// fit the budget (then they are ranked). Cheap: no search, no prompt.
    ///
    /// # Errors
    /// A storage failure.
    pub async fn ranks_by_request(&self) -> Result<bool, RegistryError> {
        Ok(!self.fits(&self.registry.active_catalogue().await?))
    }

    fn fits(&self, entries: &[CatalogueEntry]) -> bool {
        let total: usize = entries
            .iter()
            .map(|e| estimate_tokens(&catalogue_line(e)))
            .sum();
        total <= self.budget_tokens
    }

    /// Notice edits made to the projected skills outside Talaria: valid ones are recorded as
    /// new versions by `user`, invalid ones refused (the registry's version stays and is
    /// written back on disk next time). Called when a session starts, before its catalogue is
    /// frozen.
    pub async fn sync_disk(&self) {
        match self.registry.sync().await {
            Ok(report) => {
                for (name, version) in &report.recorded {
                    tracing::info!(skill = %name, %version, "recorded an edit made on disk as a new version by user");
                }
                for (name, problems) in &report.refused {
                    tracing::warn!(skill = %name, problems = problems.len(), "an edit made on disk does not validate; the registry's version stays (see talaria skills sync)");
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot check the skills directory for edits"),
        }
    }

    /// The catalogue section of the system prompt, or `None` when no skill is active.
    ///
    /// When every active skill fits in the budget, all are listed by name. Otherwise pinned
    /// skills come first, then those most relevant to `request` (FTS5 over name and
    /// description), then the most used; lines are added while they fit, and the model is told
    /// how many were left out and how to find them.
    ///
    /// # Errors
    /// A storage failure.
    pub async fn catalogue(&self, request: Option<&str>) -> Result<Option<String>, RegistryError> {
        let entries = self.registry.active_catalogue().await?;
        if entries.is_empty() {
            return Ok(None);
        }
        let ordered: Vec<&CatalogueEntry> = if self.fits(&entries) {
            entries.iter().collect()
        } else {
            self.ranked(&entries, request).await?
        };
        let mut body = String::new();
        let mut used = 0;
        let mut shown = 0;
        for entry in &ordered {
            let text = catalogue_line(entry);
            let cost = estimate_tokens(&text);
            if used + cost > self.budget_tokens {
                continue;
            }
            used += cost;
            shown += 1;
            body.push_str(&text);
        }
        let mut out = String::from(
            "# Skills\nSkills are instructions for tasks you or the owner solved before. Before a task, \
             check whether a skill below fits and load it with skill_view (its files too, by path) \
             instead of working from scratch. After a hard task, save what worked with \
             skill_manage; fix a skill that turned out wrong with skill_manage patch.\n\n",
        );
        out.push_str(&body);
        let hidden = entries.len() - shown;
        if hidden > 0 {
            out.push_str(&format!(
                "({hidden} more skills are not listed here; search them with skills_list and a query.)\n"
            ));
        }
        Ok(Some(out.trim_end().to_owned()))
    }

    async fn ranked<'e>(
        &self,
        entries: &'e [CatalogueEntry],
        request: Option<&str>,
    ) -> Result<Vec<&'e CatalogueEntry>, RegistryError> {
        let relevant = match request {
            Some(text) => {
                self.index(entries).await?;
                self.store.rank_skill_catalogue(text).await?
            }
            None => Vec::new(),
        };
        let usage = self.store.skill_usage().await?;
        let score = |name: &str| {
            usage
                .iter()
                .find(|u| u.name == name)
                .map_or(0, |u| u.uses + u.views)
        };
        let mut ordered: Vec<&CatalogueEntry> = entries.iter().collect();
        ordered.sort_by_key(|e| {
            let rank = relevant
                .iter()
                .position(|n| *n == e.name)
                .unwrap_or(usize::MAX);
            (
                !e.pinned,
                rank,
                std::cmp::Reverse(score(&e.name)),
                e.name.clone(),
            )
        });
        Ok(ordered)
    }

    async fn index(&self, entries: &[CatalogueEntry]) -> Result<(), RegistryError> {
        let rows = entries
            .iter()
            .map(|e| (e.name.clone(), e.description.clone()))
            .collect();
        self.store.index_skill_catalogue(rows).await?;
        Ok(())
    }

    /// Active skills matching `query` (all when `None`), most relevant first: `(name,
    /// description)`.
    ///
    /// # Errors
    /// A storage failure.
    pub async fn search(
        &self,
        query: Option<&str>,
    ) -> Result<Vec<(String, String)>, RegistryError> {
        let entries = self.registry.active_catalogue().await?;
        let names: Vec<String> = match query.filter(|q| !q.trim().is_empty()) {
            None => entries.iter().map(|e| e.name.clone()).collect(),
            Some(q) => {
                self.index(&entries).await?;
                self.store.rank_skill_catalogue(q).await?
            }
        };
        Ok(names
            .into_iter()
            .filter_map(|n| {
                entries
                    .iter()
                    .find(|e| e.name == n)
                    .map(|e| (e.name.clone(), e.description.clone()))
            })
            .collect())
    }

    /// The live tree of an active skill, `None` when there is no active skill of that name.
    ///
    /// # Errors
    /// A storage failure.
    pub async fn live(&self, name: &str) -> Result<Option<SkillTree>, RegistryError> {
        self.registry.live_tree(name).await
    }

    /// An active skill's files and whether the owner chose or approved the profile its current
    /// version declares (see [`talaria_skills::registry::Registry::live_run`]).
    ///
    /// # Errors
    /// A storage failure.
    pub async fn live_run(&self, name: &str) -> Result<Option<(SkillTree, bool)>, RegistryError> {
        self.registry.live_run(name).await
    }

    /// Load an active skill for the model, counting it as `kind` (a view, or a use when loaded
    /// with `/skill-name`). `None` when there is no active skill of that name.
    ///
    /// # Errors
    /// A storage failure.
    pub async fn load(
        &self,
        name: &str,
        kind: SkillUse,
    ) -> Result<Option<LoadedSkill>, RegistryError> {
        let Some(tree) = self.registry.live_tree(name).await? else {
            return Ok(None);
        };
        self.record(name, kind).await;
        Ok(Some(LoadedSkill {
            name: name.to_owned(),
            skill_md: tree.skill_md().unwrap_or_default().to_owned(),
            other_files: tree
                .files()
                .map(|(p, _)| p.to_owned())
                .filter(|p| p != "SKILL.md")
                .collect(),
        }))
    }

    /// Count a use, view or patch. A failure to count is logged, never fatal to the turn.
    pub async fn record(&self, name: &str, kind: SkillUse) {
        let now = jiff::Timestamp::now().as_millisecond();
        if let Err(e) = self.store.record_skill_use(name, kind, now).await {
            tracing::warn!(skill = name, error = %e, "cannot count a skill use");
        }
    }
}

/// The skill a chat line like `/deploy-app do it for staging` names, and the rest of the line.
/// Only names a skill could have (lowercase letters, digits, hyphens) are considered.
pub fn slash_skill(input: &str) -> Option<(&str, &str)> {
    let rest = input.trim_start().strip_prefix('/')?;
    let (name, tail) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
    let valid = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    valid.then(|| (name, tail.trim()))
}

/// One skill's line in the catalogue: `- name: description` (whitespace folded, cut short).
fn catalogue_line(entry: &CatalogueEntry) -> String {
    let description: String = entry
        .description
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .take(DESCRIPTION_MAX_CHARS)
        .collect();
    format!("- {}: {description}\n", entry.name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slash_names_a_skill() {
        assert_eq!(
            slash_skill("/deploy-app to staging"),
            Some(("deploy-app", "to staging"))
        );
        assert_eq!(slash_skill("/deploy-app"), Some(("deploy-app", "")));
        assert_eq!(slash_skill("/Model x"), None);
        assert_eq!(slash_skill("hello /x"), None);
    }

    #[test]
    fn tokens_are_quarter_chars() {
        assert_eq!(estimate_tokens(""), 0);
        assert_eq!(estimate_tokens("abcde"), 2);
    }
}

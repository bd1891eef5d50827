//! The one list of tools. Everything that depends on which tools exist — the specs of a turn,
//! a review and a memory nudge, the lazy list, the default profiles, summaries — is derived
//! from [`TOOLS`], so a tool added here is everywhere at once and a tool not here is nowhere.

use super::Tool;
use super::files::{Patch, ReadFile, WriteFile};
use super::memory_tool::Memory;
use super::process::Process;
use super::search::SearchFiles;
use super::session_search::SessionSearch;
use super::skills_tool::{SkillManage, SkillRun, SkillView, SkillsList};
use super::terminal::Terminal;
use super::todo::Todo;

/// Every tool, in the order a turn offers them.
pub static TOOLS: &[&dyn Tool] = &[
    &Terminal,
    &ReadFile,
    &WriteFile,
    &Patch,
    &SearchFiles,
    &Todo,
    &Memory,
    &Process,
    &SessionSearch,
    &SkillsList,
    &SkillView,
    &SkillManage,
    &SkillRun,
];

/// A background review's tools: the skill tools without scripts, and memory — nothing that
/// runs a command or writes outside the agent's own state.
pub static REVIEW: &[&dyn Tool] = &[&SkillsList, &SkillView, &SkillManage, &Memory];

/// A memory nudge's tools.
pub static MEMORY_NUDGE: &[&dyn Tool] = &[&Memory];

/// The tool the model calls `name`.
pub fn find(name: &str) -> Option<&'static dyn Tool> {
    TOOLS.iter().copied().find(|t| t.name() == name)
}

/// Each tool that declares a default profile, with it: what the executor falls back to when
/// the policy's `[tools]` table does not map the tool, and what `talaria policy` lists.
pub fn default_profiles() -> impl Iterator<Item = (&'static str, &'static str)> {
    TOOLS
        .iter()
        .filter_map(|t| t.default_profile().map(|profile| (t.name(), profile)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_not_tool_search() {
        let mut names: Vec<&str> = TOOLS.iter().map(|t| t.name()).collect();
        names.sort_unstable();
        let count = names.len();
        names.dedup();
        assert_eq!(names.len(), count, "a tool name is registered twice");
        assert!(!names.contains(&super::super::tool_search::NAME));
    }

    #[test]
    fn every_spec_is_an_object_schema_with_its_summary_key() {
        for tool in TOOLS {
            let spec = tool.spec();
            assert_eq!(spec.name, tool.name());
            assert!(
                !tool.description().is_empty(),
                "{} has no description",
                tool.name()
            );
            assert_eq!(spec.parameters["type"], "object", "{}", tool.name());
            if let Some(key) = tool.summary_key() {
                assert!(
                    spec.parameters["properties"].get(key).is_some(),
                    "{}: summary key {key} is not one of its arguments",
                    tool.name()
                );
            }
        }
    }

    #[test]
    fn review_and_nudge_tools_are_registered_and_never_touch_the_machine() {
        for tool in REVIEW.iter().chain(MEMORY_NUDGE) {
            assert!(
                find(tool.name()).is_some(),
                "{} is not in TOOLS",
                tool.name()
            );
            assert_eq!(
                tool.default_profile(),
                None,
                "{} runs commands",
                tool.name()
            );
        }
    }
}

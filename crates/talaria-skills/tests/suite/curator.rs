//! The curator with an injected clock: active → stale → archived by disuse, pinned skills left
//! alone, a dry run changes nothing, and archiving never deletes.

use talaria_skills::curator::{self, CuratorChange, CuratorPolicy};
use talaria_skills::{Provenance, Registry, SkillState};
use talaria_store::{SkillUse, Store};

const DAY: i64 = 24 * 60 * 60 * 1000;
const POLICY: CuratorPolicy = CuratorPolicy {
    stale_after_days: 30,
    archive_after_days: 90,
};

fn skill_md(name: &str) -> String {
    format!("---\nname: {name}\ndescription: Does {name} things.\n---\nSteps.\n")
}

async fn state(registry: &Registry, name: &str) -> SkillState {
    let list = registry.list().await.unwrap();
    list.into_iter().find(|s| s.name == name).unwrap().state
}

#[tokio::test]
async fn unused_skills_go_stale_then_archived_and_are_never_deleted() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(&tmp.path().join("state.db")).await.unwrap();
    let skills = tmp.path().join("skills");
    let registry = Registry::new(store.clone(), &skills);
    for name in ["idle-one", "kept-pinned", "busy-one"] {
        registry
            .create(name, &skill_md(name), Provenance::user())
            .await
            .unwrap();
    }
    registry.set_pinned("kept-pinned", true).await.unwrap();
    let created = registry.list().await.unwrap()[0].updated_at;

    // Day 10: nothing is idle long enough.
    let report = curator::run(&registry, &store, POLICY, created + 10 * DAY, false)
        .await
        .unwrap();
    assert!(report.changes.is_empty());
    store
        .record_skill_use("busy-one", SkillUse::Use, created + 20 * DAY)
        .await
        .unwrap();

    // Day 40: idle-one goes stale; the pinned one is left alone; busy-one was used on day 20.
    let report = curator::run(&registry, &store, POLICY, created + 40 * DAY, false)
        .await
        .unwrap();
    assert_eq!(
        report.changes,
        [CuratorChange::MarkedStale {
            name: "idle-one".into(),
            idle_days: 40
        }]
    );
    assert_eq!(report.pinned_idle, ["kept-pinned"]);
    assert_eq!(state(&registry, "idle-one").await, SkillState::Active);
    assert!(
        skills.join("idle-one/SKILL.md").is_file(),
        "stale skills stay live"
    );

    // Day 100, dry run: reports the archive and changes nothing.
    let dry = curator::run(&registry, &store, POLICY, created + 100 * DAY, true)
        .await
        .unwrap();
    assert!(dry.changes.contains(&CuratorChange::Archived {
        name: "idle-one".into(),
        idle_days: 100
    }));
    assert!(
        dry.to_markdown("day 100")
            .contains("dry run: nothing was changed")
    );
    assert_eq!(state(&registry, "idle-one").await, SkillState::Active);
    assert_eq!(registry.log(Some("idle-one")).await.unwrap().len(), 1);
    let busy = store.skill_usage_of("busy-one").await.unwrap().unwrap();
    assert_eq!(busy.stale_since, None, "a dry run marks nothing stale");

    // Day 100 for real: idle-one is archived (kept), busy-one goes stale, pinned untouched.
    let report = curator::run(&registry, &store, POLICY, created + 100 * DAY, false)
        .await
        .unwrap();
    assert!(report.changes.contains(&CuratorChange::Archived {
        name: "idle-one".into(),
        idle_days: 100
    }));
    assert!(report.changes.contains(&CuratorChange::MarkedStale {
        name: "busy-one".into(),
        idle_days: 80
    }));
    assert_eq!(state(&registry, "idle-one").await, SkillState::Archived);
    assert_eq!(state(&registry, "kept-pinned").await, SkillState::Active);
    assert!(
        !skills.join("idle-one").exists(),
        "archived skills are not projected"
    );
    assert_eq!(registry.versions("idle-one").await.unwrap().len(), 1);
    let log = registry.log(Some("idle-one")).await.unwrap();
    assert_eq!(log.last().unwrap().action, "delete");
    assert_eq!(log.last().unwrap().actor, "curator");
    assert_eq!(log.last().unwrap().reason, "unused for 100 days");
    assert!(registry.verify().await.unwrap().is_empty());

    // Its files are still there to bring back.
    let versions = registry.versions("idle-one").await.unwrap();
    let (_, tree) = registry
        .version_tree("idle-one", &versions[0].hash)
        .await
        .unwrap();
    assert_eq!(tree.skill_md().unwrap(), skill_md("idle-one"));

    // A use clears the stale mark.
    store
        .record_skill_use("busy-one", SkillUse::View, created + 101 * DAY)
        .await
        .unwrap();
    let busy = store.skill_usage_of("busy-one").await.unwrap().unwrap();
    assert_eq!(busy.stale_since, None);
}

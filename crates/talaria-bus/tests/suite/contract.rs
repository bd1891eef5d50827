//! The constants and the proxies' defaults name the same things.

use talaria_bus::{
    AgentProxy, ExecutorProxy, GatewayProxy, SchedulerProxy, TurnEventKind, names, paths,
};
use zbus::proxy::Defaults;

fn defaults<P: Defaults>() -> (String, String, String) {
    (
        P::INTERFACE.as_ref().unwrap().to_string(),
        P::DESTINATION.as_ref().unwrap().to_string(),
        P::PATH.as_ref().unwrap().to_string(),
    )
}

#[test]
fn proxy_defaults_match_the_name_and_path_constants() {
    for (actual, name, path) in [
        (defaults::<AgentProxy<'_>>(), names::AGENT, paths::AGENT),
        (
            defaults::<ExecutorProxy<'_>>(),
            names::EXECUTOR,
            paths::EXECUTOR,
        ),
        (
            defaults::<SchedulerProxy<'_>>(),
            names::SCHEDULER,
            paths::SCHEDULER,
        ),
        (
            defaults::<GatewayProxy<'_>>(),
            names::GATEWAY,
            paths::GATEWAY,
        ),
    ] {
        assert_eq!(actual, (name.to_owned(), name.to_owned(), path.to_owned()));
        assert_eq!(path, format!("/{}", name.replace('.', "/")));
    }
}

#[test]
fn turn_event_kinds_round_trip_through_their_wire_spelling() {
    let spellings: Vec<_> = TurnEventKind::ALL.iter().map(|k| k.as_str()).collect();
    assert_eq!(
        spellings,
        [
            "text_delta",
            "tool_started",
            "tool_finished",
            "done",
            "error",
            "notice"
        ]
    );
    for kind in TurnEventKind::ALL {
        assert_eq!(kind.as_str().parse::<TurnEventKind>(), Ok(kind));
    }
    let err = "textDelta".parse::<TurnEventKind>().unwrap_err();
    assert_eq!(err.to_string(), r#"unknown turn event kind "textDelta""#);
}

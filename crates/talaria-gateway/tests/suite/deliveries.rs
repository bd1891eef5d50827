//! `org.talaria.Gateway1`: deliveries stored for `api:` targets and fetched over HTTP.

use reqwest::StatusCode;
use serde_json::Value;
use talaria_bus::{GatewayProxy, VariantDict};
use talaria_daemon::Callers;
use zbus::{OwnedVariant, Str};

use super::harness::Setup;

async fn fetch(setup: &Setup, query: &str) -> Value {
    let response = setup
        .get(&format!("/v1/deliveries?{query}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.unwrap()
}

fn texts(list: &Value) -> Vec<&str> {
    list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["text"].as_str().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_to_api_targets_are_stored_and_fetched() {
    let setup = Setup::new().await;
    let caller = setup.bus.connect().await;
    let gateway = GatewayProxy::new(&caller).await.unwrap();
    let mut options = VariantDict::new();
    options.insert(
        "reply_to".into(),
        OwnedVariant::from(Str::from("req-earlier")),
    );
    let first = gateway
        .deliver("api:reports", "nightly report", &options)
        .await
        .unwrap();
    let second = gateway
        .deliver("api:reports", "second report", &VariantDict::new())
        .await
        .unwrap();
    gateway
        .deliver("api:elsewhere", "not for reports", &VariantDict::new())
        .await
        .unwrap();
    assert_ne!(first, second);

    let all = fetch(&setup, "target=reports").await;
    assert_eq!(texts(&all), ["nightly report", "second report"]);
    assert_eq!(all["data"][0]["id"], first);
    assert_eq!(all["data"][0]["target"], "api:reports");
    assert_eq!(all["data"][0]["reply_to"], "req-earlier");
    assert_eq!(all["last_id"], second);
    let newer = fetch(&setup, &format!("target=reports&after={first}")).await;
    assert_eq!(texts(&newer), ["second report"]);
    let none = fetch(&setup, &format!("target=api:reports&after={second}")).await;
    assert!(texts(&none).is_empty());

    let error = gateway
        .deliver("telegram:42", "no such platform here", &VariantDict::new())
        .await
        .unwrap_err();
    let (name, message) = talaria_bus::error_parts(&error).unwrap();
    assert_eq!(name, "org.freedesktop.DBus.Error.InvalidArgs");
    // The error names the target, the unknown platform and the ones this gateway has.
    assert_eq!(
        message,
        r#"target "telegram:42": unknown platform "telegram" (this gateway has: api)"#
    );

    let status = gateway.status().await.unwrap();
    assert_eq!(String::try_from(&*status["api"]).unwrap(), "listening");

    let unauthenticated = setup
        .http
        .get(setup.url("/v1/deliveries?target=reports"))
        .send()
        .await
        .unwrap();
    assert_eq!(unauthenticated.status(), StatusCode::UNAUTHORIZED);
    let no_target = setup.get("/v1/deliveries").send().await.unwrap();
    assert_eq!(no_target.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway1_refuses_callers_it_was_not_told_about() {
    // Only an unrelated uid may call: not root, not this process's uid.
    let setup = Setup::with(true, |config| {
        config.callers = Callers::only([u32::MAX - 7]);
    })
    .await;
    let caller = setup.bus.connect().await;
    let gateway = GatewayProxy::new(&caller).await.unwrap();
    let error = gateway
        .deliver("api:reports", "sneaky", &VariantDict::new())
        .await
        .unwrap_err();
    let (name, _) = talaria_bus::error_parts(&error).unwrap();
    assert_eq!(name, "org.freedesktop.DBus.Error.AccessDenied");
    let list = fetch(&setup, "target=reports").await;
    assert!(texts(&list).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_repeated_with_its_idempotency_key_is_delivered_once() {
    let setup = Setup::new().await;
    let caller = setup.bus.connect().await;
    let gateway = GatewayProxy::new(&caller).await.unwrap();
    let keyed = |key: &str| {
        let mut options = VariantDict::new();
        options.insert(
            "idempotency_key".into(),
            OwnedVariant::from(Str::from(key.to_owned())),
        );
        options
    };
    // A scheduler run interrupted after its Deliver and resumed delivers again, same run id.
    let first = gateway
        .deliver("api:reports", "nightly report", &keyed("run-0a1b"))
        .await
        .unwrap();
    let again = gateway
        .deliver("api:reports", "nightly report", &keyed("run-0a1b"))
        .await
        .unwrap();
    assert_eq!(first, again, "the repeat names the first delivery");
    // The harmless twins: another key, or none, is another delivery.
    let other = gateway
        .deliver("api:reports", "nightly report", &keyed("run-2c3d"))
        .await
        .unwrap();
    let unkeyed = gateway
        .deliver("api:reports", "nightly report", &VariantDict::new())
        .await
        .unwrap();
    assert_ne!(other, first);
    assert_ne!(unkeyed, other);
    let all = fetch(&setup, "target=reports").await;
    assert_eq!(texts(&all).len(), 3, "{all}");

    // The same key for different content is a caller bug, refused and not delivered.
    let error = gateway
        .deliver("api:reports", "another text", &keyed("run-0a1b"))
        .await
        .unwrap_err();
    let (name, message) = talaria_bus::error_parts(&error).unwrap();
    assert_eq!(name, "org.freedesktop.DBus.Error.InvalidArgs");
    assert!(message.contains("idempotency_key"), "{message}");
    let error = gateway
        .deliver("api:reports", "bad key", &keyed("a b"))
        .await
        .unwrap_err();
    let (_, message) = talaria_bus::error_parts(&error).unwrap();
    assert!(message.contains("\"a b\""), "{message}");
    assert_eq!(texts(&fetch(&setup, "target=reports").await).len(), 3);
}

//! The checked-in XML under `interfaces/` and what the mirrors serve must agree member for
//! member, argument for argument.

use std::collections::BTreeMap;

use talaria_bus::{names, paths};
use zbus::fdo::IntrospectableProxy;

use super::mirror;
use super::private_bus::PrivateBus;

/// One XML tag: element name, attributes (sorted), and whether it closes an element.
#[derive(Debug)]
enum Tag {
    Open(String, BTreeMap<String, String>, bool),
    Close(String),
}

/// A deliberately small XML tag reader: introspection data has no text content that matters,
/// so comments, declarations and text between tags are skipped.
fn tags(xml: &str) -> Vec<Tag> {
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some(start) = rest.find('<') {
        rest = &rest[start..];
        if let Some(after) = rest.strip_prefix("<!--") {
            let end = after.find("-->").expect("unterminated comment");
            rest = &after[end + 3..];
            continue;
        }
        let end = rest.find('>').expect("unterminated tag");
        let body = &rest[1..end];
        rest = &rest[end + 1..];
        if body.starts_with('!') || body.starts_with('?') {
            continue;
        }
        if let Some(name) = body.strip_prefix('/') {
            out.push(Tag::Close(name.trim().to_owned()));
            continue;
        }
        let self_closing = body.ends_with('/');
        let body = body.trim_end_matches('/');
        let (name, mut attrs_text) = body.split_once(char::is_whitespace).unwrap_or((body, ""));
        let mut attrs = BTreeMap::new();
        loop {
            attrs_text = attrs_text.trim_start();
            let Some((key, after)) = attrs_text.split_once('=') else {
                break;
            };
            let after = after.trim_start();
            let quote = after.chars().next().expect("attribute without value");
            let value_end = after[1..].find(quote).expect("unterminated attribute") + 1;
            attrs.insert(key.trim().to_owned(), after[1..value_end].to_owned());
            attrs_text = &after[value_end + 1..];
        }
        out.push(Tag::Open(name.to_owned(), attrs, self_closing));
    }
    out
}

/// The canonical form of one `org.talaria.*` interface: member → ordered argument lines.
/// Method arguments default to `in`; signal arguments carry no direction.
fn interface_shape(xml: &str, interface: &str) -> BTreeMap<String, Vec<String>> {
    let mut shape = BTreeMap::new();
    let mut inside = false;
    let mut member: Option<(String, bool)> = None;
    let mut found = false;
    for tag in tags(xml) {
        match tag {
            Tag::Open(name, attrs, self_closing) => match name.as_str() {
                "interface" if attrs.get("name").map(String::as_str) == Some(interface) => {
                    inside = !self_closing;
                    found = true;
                }
                "method" | "signal" | "property" if inside => {
                    let key = format!("{name} {}", attrs["name"]);
                    if name == "property" {
                        shape.insert(key.clone(), vec![format!("{attrs:?}")]);
                    } else {
                        shape.insert(key.clone(), Vec::new());
                    }
                    member = (!self_closing).then_some((key, name == "signal"));
                }
                "arg" if inside => {
                    let (key, is_signal) = member.as_ref().expect("arg outside a member");
                    let direction = if *is_signal {
                        "-"
                    } else {
                        attrs.get("direction").map_or("in", String::as_str)
                    };
                    let line = format!(
                        "{direction} {}: {}",
                        attrs.get("name").map_or("?", String::as_str),
                        attrs["type"]
                    );
                    shape.get_mut(key).unwrap().push(line);
                }
                "annotation" if inside => {
                    let target = member
                        .as_ref()
                        .map_or("interface".to_owned(), |m| m.0.clone());
                    shape
                        .entry(format!("{target} annotation {}", attrs["name"]))
                        .or_insert_with(Vec::new)
                        .push(attrs.get("value").cloned().unwrap_or_default());
                }
                _ => {}
            },
            Tag::Close(name) => match name.as_str() {
                "interface" => inside = false,
                "method" | "signal" | "property" => member = None,
                _ => {}
            },
        }
    }
    assert!(found, "interface {interface} missing from:\n{xml}");
    shape
}

fn checked_in(interface: &str) -> String {
    let path = format!("{}/interfaces/{interface}.xml", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {path}: {e}"))
}

#[tokio::test]
async fn served_interfaces_match_the_checked_in_xml() {
    let bus = PrivateBus::start();
    let _servers = mirror::serve_all(&bus.address).await;
    let client = bus.connect().await;
    for (name, path) in [
        (names::AGENT, paths::AGENT),
        (names::EXECUTOR, paths::EXECUTOR),
        (names::SCHEDULER, paths::SCHEDULER),
        (names::GATEWAY, paths::GATEWAY),
    ] {
        let introspectable = IntrospectableProxy::builder(&client)
            .destination(name)
            .path(path)
            .build()
            .await
            .unwrap();
        let served = introspectable.introspect().await.unwrap();
        let expected = interface_shape(&checked_in(name), name);
        let actual = interface_shape(&served, name);
        assert_eq!(
            actual, expected,
            "{name}: the served interface (left) differs from interfaces/{name}.xml (right)"
        );
        // The node must not serve any other org.talaria interface.
        for tag in tags(&served) {
            if let Tag::Open(el, attrs, _) = tag
                && el == "interface"
            {
                let iface = &attrs["name"];
                assert!(
                    iface == name || iface.starts_with("org.freedesktop."),
                    "{path} also serves {iface}"
                );
            }
        }
    }
}

#[test]
fn the_comparison_notices_a_changed_argument_type() {
    let xml = checked_in(names::GATEWAY);
    let tampered = xml.replace(r#"name="text" type="s""#, r#"name="text" type="ay""#);
    assert_ne!(tampered, xml);
    assert_ne!(
        interface_shape(&xml, names::GATEWAY),
        interface_shape(&tampered, names::GATEWAY)
    );
}

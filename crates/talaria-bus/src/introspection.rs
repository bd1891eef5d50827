//! The checked-in introspection XML (`interfaces/*.xml`) is the reviewed contract. Each unit's
//! tests introspect the object it really serves and call [`check`], so code and XML cannot
//! drift apart unnoticed.

use std::collections::BTreeMap;

/// The checked-in XML of `interface` (one of the [`crate::names`]).
pub fn checked_in(interface: &str) -> Option<&'static str> {
    Some(match interface {
        crate::names::AGENT => include_str!("../interfaces/org.talaria.Agent1.xml"),
        crate::names::EXECUTOR => include_str!("../interfaces/org.talaria.Executor1.xml"),
        crate::names::SCHEDULER => include_str!("../interfaces/org.talaria.Scheduler1.xml"),
        crate::names::GATEWAY => include_str!("../interfaces/org.talaria.Gateway1.xml"),
        _ => return None,
    })
}

/// Compares what an object serves (`served`, its `Introspect` output) with the checked-in
/// XML of `interface`, member for member and argument for argument, and checks the object
/// serves no other `org.talaria` interface.
///
/// # Errors
/// A description of every difference.
pub fn check(served: &str, interface: &str) -> Result<(), String> {
    let expected_xml =
        checked_in(interface).ok_or_else(|| format!("no checked-in XML for {interface}"))?;
    let expected = shape(expected_xml, interface)?;
    let actual = shape(served, interface)?;
    let mut problems = Vec::new();
    for (member, args) in &expected {
        match actual.get(member) {
            None => problems.push(format!("{member} is in the XML but not served")),
            Some(served) if served != args => problems.push(format!(
                "{member}: served {served:?}, the XML says {args:?}"
            )),
            Some(_) => {}
        }
    }
    for member in actual.keys().filter(|m| !expected.contains_key(*m)) {
        problems.push(format!("{member} is served but not in the XML"));
    }
    for tag in tags(served)? {
        if let Tag::Open(element, attrs, _) = tag
            && element == "interface"
            && let Some(name) = attrs.get("name")
            && name != interface
            && !name.starts_with("org.freedesktop.")
        {
            problems.push(format!("the object also serves {name}"));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{interface} differs from interfaces/{interface}.xml:\n  {}",
            problems.join("\n  ")
        ))
    }
}

/// Introspects `path` at `destination` over `connection` and [`check`]s it.
///
/// # Errors
/// The introspection call failing, or the differences.
pub async fn check_served(
    connection: &zbus::Connection,
    destination: &str,
    path: &str,
    interface: &str,
) -> Result<(), String> {
    let proxy = zbus::fdo::IntrospectableProxy::builder(connection)
        .destination(destination.to_owned())
        .path(path.to_owned())
        .build()
        .await
        .map_err(|e| e.to_string())?;
    let served = proxy.introspect().await.map_err(|e| e.to_string())?;
    check(&served, interface)
}

/// One XML tag: element name, attributes (sorted), and whether it closes itself.
#[derive(Debug)]
enum Tag {
    Open(String, BTreeMap<String, String>, bool),
    Close(String),
}

/// A deliberately small tag reader: introspection data has no text content that matters, so
/// comments, declarations and text between tags are skipped.
fn tags(xml: &str) -> Result<Vec<Tag>, String> {
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some(start) = rest.find('<') {
        rest = &rest[start..];
        if let Some(after) = rest.strip_prefix("<!--") {
            let end = after.find("-->").ok_or("unterminated comment")?;
            rest = &after[end + 3..];
            continue;
        }
        let end = rest.find('>').ok_or("unterminated tag")?;
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
            let quote = after.chars().next().ok_or("attribute without value")?;
            let value_end = after[1..].find(quote).ok_or("unterminated attribute")? + 1;
            attrs.insert(key.trim().to_owned(), after[1..value_end].to_owned());
            attrs_text = &after[value_end + 1..];
        }
        out.push(Tag::Open(name.to_owned(), attrs, self_closing));
    }
    Ok(out)
}

/// The canonical form of one interface: member → ordered argument lines. Method arguments
/// default to `in`; signal arguments carry no direction.
fn shape(xml: &str, interface: &str) -> Result<BTreeMap<String, Vec<String>>, String> {
    let mut shape: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut inside = false;
    let mut member: Option<(String, bool)> = None;
    let mut found = false;
    let attr = |attrs: &BTreeMap<String, String>, key: &str| attrs.get(key).cloned();
    for tag in tags(xml)? {
        match tag {
            Tag::Open(name, attrs, self_closing) => match name.as_str() {
                "interface" if attr(&attrs, "name").as_deref() == Some(interface) => {
                    inside = !self_closing;
                    found = true;
                }
                "method" | "signal" | "property" if inside => {
                    let key = format!("{name} {}", attr(&attrs, "name").unwrap_or_default());
                    let args = if name == "property" {
                        vec![format!("{attrs:?}")]
                    } else {
                        Vec::new()
                    };
                    shape.insert(key.clone(), args);
                    member = (!self_closing).then_some((key, name == "signal"));
                }
                "arg" if inside => {
                    let (key, is_signal) = member.as_ref().ok_or("arg outside a member")?;
                    let direction = if *is_signal {
                        "-".to_owned()
                    } else {
                        attr(&attrs, "direction").unwrap_or_else(|| "in".into())
                    };
                    let line = format!(
                        "{direction} {}: {}",
                        attr(&attrs, "name").unwrap_or_else(|| "?".into()),
                        attr(&attrs, "type").unwrap_or_default()
                    );
                    shape.entry(key.clone()).or_default().push(line);
                }
                "annotation" if inside => {
                    let target = member
                        .as_ref()
                        .map_or("interface".to_owned(), |m| m.0.clone());
                    shape
                        .entry(format!(
                            "{target} annotation {}",
                            attr(&attrs, "name").unwrap_or_default()
                        ))
                        .or_default()
                        .push(attr(&attrs, "value").unwrap_or_default());
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
    if found {
        Ok(shape)
    } else {
        Err(format!("interface {interface} is not in the XML"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_changed_argument_type_is_a_difference() {
        let xml = checked_in(crate::names::GATEWAY).unwrap_or_default();
        assert!(check(xml, crate::names::GATEWAY).is_ok());
        let tampered = xml.replace(r#"name="text" type="s""#, r#"name="text" type="ay""#);
        assert_ne!(tampered, xml);
        let error = check(&tampered, crate::names::GATEWAY).unwrap_err();
        assert!(error.contains("method Deliver"), "{error}");
    }

    #[test]
    fn a_missing_or_extra_member_is_a_difference() {
        let xml = checked_in(crate::names::SCHEDULER).unwrap_or_default();
        let without = xml.replace("<method name=\"RunNow\">", "<method name=\"RunLater\">");
        let error = check(&without, crate::names::SCHEDULER).unwrap_err();
        assert!(
            error.contains("method RunNow is in the XML but not served"),
            "{error}"
        );
        assert!(
            error.contains("method RunLater is served but not in the XML"),
            "{error}"
        );
    }
}

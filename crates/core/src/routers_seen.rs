//! The other routers on the same ClearML, as the tasks show them: each endpoint a router serves
//! carries its name in `_ROUTER_OWNER[__<endpoint>]` and its published URL in `endpoint[__...]`.
//! The status page lists them with how many endpoints each serves.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use crate::model::display_untrusted;
use crate::task::{keys, RouterIdentity};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OtherRouter {
    /// Display-safe (task-supplied text).
    pub name: String,
    /// The router's external URL as its published endpoints show it (`None`: TCP only).
    pub url: Option<String>,
    pub endpoints: usize,
}

/// The router base of a published endpoint URL: what precedes `/service/`, else the origin.
fn base_url(endpoint: &str) -> Option<String> {
    if let Some((base, _)) = endpoint.split_once("/service/") {
        return Some(base.to_owned());
    }
    let (scheme, rest) = endpoint.split_once("://")?;
    let authority = rest.split('/').next().unwrap_or(rest);
    Some(format!("{scheme}://{authority}"))
}

/// Other routers serving endpoints of `tasks` (not `me`: neither its name nor its URL).
pub fn other_routers(tasks: &[Value], me: &RouterIdentity<'_>) -> Vec<OtherRouter> {
    let mut seen: BTreeMap<String, OtherRouter> = BTreeMap::new();
    for runtime in tasks.iter().filter_map(|t| t.get("runtime").and_then(Value::as_object)) {
        for (key, owner) in runtime {
            let Some(suffix) = key.strip_prefix(keys::OWNER) else { continue };
            let Some(owner) = owner.as_str().filter(|o| !o.is_empty()) else { continue };
            let endpoint = runtime.get(&format!("{}{suffix}", keys::ENDPOINT)).and_then(Value::as_str);
            let ours = me.name == Some(owner)
                || me.url.zip(endpoint).is_some_and(|(url, ep)| ep.starts_with(&format!("{url}/")));
            if ours {
                continue;
            }
            let name = display_untrusted(owner);
            let entry = seen.entry(name.clone()).or_insert(OtherRouter { name, url: None, endpoints: 0 });
            entry.endpoints += 1;
            if entry.url.is_none() {
                entry.url = endpoint.and_then(base_url).map(|u| display_untrusted(&u));
            }
        }
    }
    seen.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn other_routers_are_counted_by_owner_key_and_this_one_is_left_out() {
        let tasks = vec![
            json!({"id": "a", "runtime": {
                "_ROUTER_OWNER": "east", "endpoint": "https://east.example/gw/service/a/",
                "_ROUTER_OWNER__ui": "east", "endpoint__ui": "https://east.example/gw/service/a_ui/",
            }}),
            json!({"id": "b", "runtime": {"_ROUTER_OWNER": "tcp-only", "external_address": "10.0.0.9"}}),
            json!({"id": "c", "runtime": {"_ROUTER_OWNER": "me", "endpoint": "http://me.example/service/c/"}}),
            // Renamed: the owner key is stale but the URL is this router's.
            json!({"id": "d", "runtime": {"_ROUTER_OWNER": "old-me", "endpoint": "http://me.example/service/d/"}}),
            json!({"id": "e", "runtime": "not an object"}),
            json!({"id": "f", "runtime": {"_ROUTER_OWNER": 7}}),
        ];
        let me = RouterIdentity { name: Some("me"), url: Some("http://me.example"), ..Default::default() };
        assert_eq!(
            other_routers(&tasks, &me),
            vec![
                OtherRouter {
                    name: "east".into(),
                    url: Some("https://east.example/gw".into()),
                    endpoints: 2
                },
                OtherRouter { name: "tcp-only".into(), url: None, endpoints: 1 },
            ]
        );
    }

    #[test]
    fn a_url_without_the_service_prefix_gives_its_origin() {
        assert_eq!(base_url("https://app.gw.example/x/y").as_deref(), Some("https://app.gw.example"));
        assert_eq!(base_url("nonsense"), None);
    }
}

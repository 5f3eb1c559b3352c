//! `*.get_all` semantics over JSON documents: filters, ordering, paging and `only_fields`.

use std::cmp::Ordering;

use regex::Regex;
use serde_json::{Map, Value};

use super::envelope::ApiError;

/// Keys that shape the answer rather than filter documents.
const CONTROL_KEYS: &[&str] = &["only_fields", "page", "page_size", "order_by"];

/// Filters documents by `query`. Understood: `name` (regex search), `tags`/`system_tags`
/// (any listed tag matches, `-tag` excludes), any key in `fields` or any dotted path (value, or
/// list of accepted values; empty list = no filter). Other keys are ignored like
/// unknown-but-harmless options (`search_hidden`, `include_subprojects`, ...).
pub fn get_all<'a>(
    docs: impl Iterator<Item = &'a Value>,
    query: &Map<String, Value>,
    fields: &[&str],
) -> Result<Vec<Value>, ApiError> {
    let filters = parse_filters(query, fields)?;
    let mut selected: Vec<&Value> = docs.filter(|doc| filters.iter().all(|f| f.matches(doc))).collect();
    sort(&mut selected, query.get("order_by"));
    let paged = page(selected, query)?;
    let only_fields = string_list(query.get("only_fields"));
    Ok(paged.into_iter().map(|doc| project(doc, &only_fields)).collect())
}

enum Filter {
    Pattern(Regex),
    Tags { field: String, include: Vec<String>, exclude: Vec<String> },
    AnyOf { path: String, values: Vec<Value> },
}

impl Filter {
    fn matches(&self, doc: &Value) -> bool {
        match self {
            Filter::Pattern(re) => doc["name"].as_str().is_some_and(|n| re.is_match(n)),
            Filter::Tags { field, include, exclude } => {
                let tags = string_list(doc.get(field.as_str()));
                (include.is_empty() || tags.iter().any(|t| include.contains(t)))
                    && !tags.iter().any(|t| exclude.contains(t))
            }
            Filter::AnyOf { path, values } => match lookup(doc, path) {
                Some(Value::Array(items)) => items.iter().any(|item| values.contains(item)),
                Some(value) => values.contains(value),
                None => values.contains(&Value::Null),
            },
        }
    }
}

fn parse_filters(query: &Map<String, Value>, fields: &[&str]) -> Result<Vec<Filter>, ApiError> {
    let mut filters = Vec::new();
    for (key, value) in query {
        if value.is_null() || CONTROL_KEYS.contains(&key.as_str()) {
            continue;
        }
        if key == "name" {
            let pattern =
                value.as_str().ok_or_else(|| ApiError::validation("name must be a string pattern"))?;
            let re = Regex::new(pattern)
                .map_err(|err| ApiError::bad_request(21, format!("Malformed regular expression: {err}")))?;
            filters.push(Filter::Pattern(re));
        } else if key == "tags" || key == "system_tags" {
            let (exclude, include): (Vec<String>, Vec<String>) =
                string_list(Some(value)).into_iter().partition(|t| t.starts_with('-'));
            filters.push(Filter::Tags {
                field: key.clone(),
                include,
                exclude: exclude.into_iter().map(|t| t[1..].to_string()).collect(),
            });
        } else if key.contains('.') || fields.contains(&key.as_str()) {
            let values = match value {
                Value::Array(items) if items.is_empty() => continue,
                Value::Array(items) => items.clone(),
                single => vec![single.clone()],
            };
            filters.push(Filter::AnyOf { path: key.clone(), values });
        }
    }
    Ok(filters)
}

/// Strings of a JSON string or list of strings (anything else is ignored).
pub fn string_list(value: Option<&Value>) -> Vec<String> {
    match value {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) => items.iter().filter_map(|v| v.as_str().map(str::to_string)).collect(),
        _ => Vec::new(),
    }
}

/// The value at a dotted path (`execution.queue`).
pub fn lookup<'a>(doc: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(doc, |node, key| node.get(key))
}

fn sort(docs: &mut [&Value], order_by: Option<&Value>) {
    let keys = string_list(order_by);
    if keys.is_empty() {
        return;
    }
    docs.sort_by(|a, b| {
        keys.iter()
            .map(|key| {
                let (path, descending) = match key.strip_prefix('-') {
                    Some(path) => (path, true),
                    None => (key.as_str(), false),
                };
                let ord = compare(lookup(a, path), lookup(b, path));
                if descending {
                    ord.reverse()
                } else {
                    ord
                }
            })
            .find(|ord| ord.is_ne())
            .unwrap_or(Ordering::Equal)
    });
}

fn compare(a: Option<&Value>, b: Option<&Value>) -> Ordering {
    match (a, b) {
        (Some(Value::Number(x)), Some(Value::Number(y))) => {
            x.as_f64().partial_cmp(&y.as_f64()).unwrap_or(Ordering::Equal)
        }
        (Some(Value::String(x)), Some(Value::String(y))) => x.cmp(y),
        (None | Some(Value::Null), None | Some(Value::Null)) => Ordering::Equal,
        (None | Some(Value::Null), _) => Ordering::Less,
        (_, None | Some(Value::Null)) => Ordering::Greater,
        (Some(x), Some(y)) => x.to_string().cmp(&y.to_string()),
    }
}

fn page<'a>(docs: Vec<&'a Value>, query: &Map<String, Value>) -> Result<Vec<&'a Value>, ApiError> {
    let number = |key: &str| -> Result<Option<usize>, ApiError> {
        match query.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_u64()
                .map(|n| Some(n as usize))
                .ok_or_else(|| ApiError::validation(format!("{key} must be a non-negative integer"))),
        }
    };
    let Some(size) = number("page_size")? else {
        return Ok(docs);
    };
    let skip = number("page")?.unwrap_or(0).saturating_mul(size);
    Ok(docs.into_iter().skip(skip).take(size).collect())
}

/// `only_fields` projection: dotted paths are copied with their nesting, `-path` removes a
/// field, and `id` is always returned.
fn project(doc: &Value, only_fields: &[String]) -> Value {
    let (exclude, include): (Vec<&String>, Vec<&String>) =
        only_fields.iter().partition(|f| f.starts_with('-'));
    let mut out = if include.is_empty() {
        doc.clone()
    } else {
        let mut out = Value::Object(Map::new());
        for path in include.into_iter().map(String::as_str).chain(["id"]) {
            if let Some(value) = lookup(doc, path) {
                set_path(&mut out, path, value.clone());
            }
        }
        out
    };
    for path in exclude {
        remove_path(&mut out, &path[1..]);
    }
    out
}

fn set_path(out: &mut Value, path: &str, value: Value) {
    let mut node = out;
    let mut keys = path.split('.').peekable();
    while let Some(key) = keys.next() {
        let Value::Object(map) = node else { return };
        if keys.peek().is_none() {
            map.insert(key.to_string(), value);
            return;
        }
        node = map.entry(key.to_string()).or_insert_with(|| Value::Object(Map::new()));
    }
}

fn remove_path(out: &mut Value, path: &str) {
    match path.rsplit_once('.') {
        Some((parent, key)) => {
            if let Some(Value::Object(map)) = lookup_mut(out, parent) {
                map.remove(key);
            }
        }
        None => {
            if let Value::Object(map) = out {
                map.remove(path);
            }
        }
    }
}

fn lookup_mut<'a>(doc: &'a mut Value, path: &str) -> Option<&'a mut Value> {
    path.split('.').try_fold(doc, |node, key| node.get_mut(key))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const FIELDS: &[&str] = &["id", "status"];

    fn docs() -> Vec<Value> {
        vec![
            json!({"id": "t1", "name": "alpha", "status": "in_progress", "system_tags": ["external_service"],
                   "execution": {"queue": "q1"}, "runtime": {"_PORT": 1}, "last_update": "2024-01-02"}),
            json!({"id": "t2", "name": "beta", "status": "in_progress", "system_tags": ["external_service", "archived"],
                   "execution": {"queue": "q2"}, "runtime": {}, "last_update": "2024-01-03"}),
            json!({"id": "t3", "name": "gamma", "status": "stopped", "system_tags": [],
                   "execution": {"queue": null}, "runtime": {}, "last_update": "2024-01-01"}),
        ]
    }

    fn ids(query: Value) -> Vec<String> {
        get_all(docs().iter(), query.as_object().unwrap(), FIELDS)
            .unwrap()
            .into_iter()
            .map(|d| d["id"].as_str().unwrap().to_string())
            .collect()
    }

    #[test]
    fn filters_by_status_tags_and_nested_fields() {
        assert_eq!(ids(json!({"status": ["in_progress"]})), ["t1", "t2"]);
        assert_eq!(ids(json!({"status": []})), ["t1", "t2", "t3"]);
        assert_eq!(ids(json!({"system_tags": ["external_service"]})), ["t1", "t2"]);
        assert_eq!(ids(json!({"system_tags": ["external_service", "-archived"]})), ["t1"]);
        assert_eq!(ids(json!({"system_tags": ["-archived"]})), ["t1", "t3"]);
        assert_eq!(ids(json!({"execution.queue": ["q2", "q9"]})), ["t2"]);
        assert_eq!(ids(json!({"execution.queue": "q1"})), ["t1"]);
        assert_eq!(ids(json!({"id": ["t3", "t1"]})), ["t1", "t3"]);
        assert_eq!(ids(json!({"name": "^(alpha|gamma)$"})), ["t1", "t3"]);
        assert_eq!(ids(json!({"name": "a$"})), ["t1", "t2", "t3"]);
        assert_eq!(ids(json!({"unknown_option": true})), ["t1", "t2", "t3"]);
    }

    #[test]
    fn orders_and_pages() {
        assert_eq!(ids(json!({"order_by": ["-last_update"]})), ["t2", "t1", "t3"]);
        assert_eq!(ids(json!({"order_by": ["last_update"], "page": 1, "page_size": 2})), ["t2"]);
        assert_eq!(ids(json!({"page_size": 2})), ["t1", "t2"]);
    }

    #[test]
    fn projects_only_fields() {
        let query = json!({"id": ["t1"], "only_fields": ["status", "execution.queue", "runtime"]});
        let out = get_all(docs().iter(), query.as_object().unwrap(), FIELDS).unwrap();
        assert_eq!(
            out,
            vec![
                json!({"id": "t1", "status": "in_progress", "execution": {"queue": "q1"}, "runtime": {"_PORT": 1}})
            ]
        );
        let query = json!({"id": ["t3"], "only_fields": ["-runtime", "-execution.queue"]});
        let out = get_all(docs().iter(), query.as_object().unwrap(), FIELDS).unwrap();
        assert!(out[0].get("runtime").is_none());
        assert_eq!(out[0]["execution"], json!({}));
    }

    #[test]
    fn rejects_bad_patterns() {
        let query = json!({"name": "("});
        let err = get_all(docs().iter(), query.as_object().unwrap(), FIELDS).unwrap_err();
        assert_eq!((err.code, err.subcode), (400, 21));
    }
}

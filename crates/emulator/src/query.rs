//! `*.get_all` semantics over JSON documents: filters, ordering, paging and `only_fields`, as
//! clearml-server applies them (`apiserver/database/model/base.py`): every answer is capped at
//! `max_page_size` (500) documents, also when no paging is asked for; `page` + `page_size` or
//! `size` + `scroll_id` page through; date fields take `">=<iso>"`-style conditions.

use std::cmp::Ordering;
use std::collections::HashMap;

use regex::Regex;
use serde_json::{Map, Value};

use super::envelope::ApiError;

/// Keys that shape the answer rather than filter documents.
const CONTROL_KEYS: &[&str] =
    &["only_fields", "page", "page_size", "order_by", "size", "scroll_id", "refresh_scroll"];

/// The open-source server's `services._mongo.max_page_size`: no answer holds more documents.
pub const MAX_PAGE_SIZE: usize = 500;

/// Date fields filtered by conditions (`">=2026-11-29T10:00:00"`, `["from", "to"]`).
const DATE_FIELDS: &[&str] = &["last_update", "last_change", "status_changed"];

/// Positions of open scrolls (`scroll_id` -> documents already returned), as the server keeps
/// them in Redis.
#[derive(Debug, Default)]
pub struct Scrolls {
    positions: HashMap<String, usize>,
}

/// One page of a `get_all`, and the scroll to continue with when the caller scrolls.
pub struct Page {
    pub docs: Vec<Value>,
    pub scroll_id: Option<String>,
}

/// Filters documents by `query`. Understood: `name` (regex search), `tags`/`system_tags`
/// (any listed tag matches, `-tag` excludes), any key in `fields` or any dotted path (value, or
/// list of accepted values; empty list = no filter). Other keys are ignored like
/// unknown-but-harmless options (`search_hidden`, `include_subprojects`, ...).
pub fn get_all<'a>(
    docs: impl Iterator<Item = &'a Value>,
    query: &Map<String, Value>,
    fields: &[&str],
) -> Result<Vec<Value>, ApiError> {
    Ok(get_page(docs, query, fields, &mut Scrolls::default())?.docs)
}

/// [`get_all`] with scrolling: `size` + `scroll_id` continue where the scroll left off.
pub fn get_page<'a>(
    docs: impl Iterator<Item = &'a Value>,
    query: &Map<String, Value>,
    fields: &[&str],
    scrolls: &mut Scrolls,
) -> Result<Page, ApiError> {
    let filters = parse_filters(query, fields)?;
    let mut selected: Vec<&Value> = docs.filter(|doc| filters.iter().all(|f| f.matches(doc))).collect();
    sort(&mut selected, query.get("order_by"));
    let (skip, take, scroll_id) = window(query, scrolls)?;
    let only_fields = string_list(query.get("only_fields"));
    let docs: Vec<Value> =
        selected.into_iter().skip(skip).take(take).map(|doc| project(doc, &only_fields)).collect();
    if let Some(id) = &scroll_id {
        scrolls.positions.insert(id.clone(), skip + docs.len());
    }
    Ok(Page { docs, scroll_id })
}

enum Filter {
    Pattern(Regex),
    /// A date field against `(operator, normalised date)` conditions, all of which must hold.
    Dates {
        field: String,
        conditions: Vec<(Ordering, bool, String)>,
    },
    Tags {
        field: String,
        include: Vec<String>,
        exclude: Vec<String>,
    },
    AnyOf {
        path: String,
        values: Vec<Value>,
    },
}

impl Filter {
    fn matches(&self, doc: &Value) -> bool {
        match self {
            Filter::Pattern(re) => doc["name"].as_str().is_some_and(|n| re.is_match(n)),
            Filter::Dates { field, conditions } => {
                let Some(value) = doc.get(field.as_str()).and_then(Value::as_str).map(normalise_date) else {
                    return false;
                };
                conditions.iter().all(|(wanted, or_equal, bound)| {
                    let ord = value.as_str().cmp(bound.as_str());
                    ord == *wanted || (*or_equal && ord == Ordering::Equal)
                })
            }
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
        } else if DATE_FIELDS.contains(&key.as_str()) {
            filters.push(Filter::Dates { field: key.clone(), conditions: date_conditions(key, value)? });
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

/// `(skip, take, scroll id)` for the query, with the server's rules: `scroll_id` (present, even
/// null) scrolls by `size` (required, >= 1); otherwise `page` * `page_size`, where `page_size`
/// defaults to and is capped at [`MAX_PAGE_SIZE`].
fn window(
    query: &Map<String, Value>,
    scrolls: &mut Scrolls,
) -> Result<(usize, usize, Option<String>), ApiError> {
    let number = |key: &str| -> Result<Option<usize>, ApiError> {
        match query.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_u64()
                .map(|n| Some(n as usize))
                .ok_or_else(|| ApiError::validation(format!("{key} must be a non-negative integer"))),
        }
    };
    if query.contains_key("scroll_id") {
        let size = number("size")?.filter(|s| *s >= 1).ok_or_else(|| {
            ApiError::validation(
                "Integer size parameter greater than 1 should be provided when working with scroll",
            )
        })?;
        let id = match query.get("scroll_id").and_then(Value::as_str).filter(|id| !id.is_empty()) {
            Some(id) => id.to_owned(),
            None => super::ids::new_id(),
        };
        let position = scrolls.positions.get(&id).copied().unwrap_or(0);
        if query.get("refresh_scroll").and_then(Value::as_bool).unwrap_or(false) {
            return Ok((0, position.max(size), Some(id)));
        }
        return Ok((position, size, Some(id)));
    }
    let size = match number("page_size")? {
        Some(0) => return Err(ApiError::validation("page_size must be >0")),
        Some(size) => size.min(MAX_PAGE_SIZE),
        None => MAX_PAGE_SIZE,
    };
    let skip = number("page")?.unwrap_or(0).saturating_mul(size);
    Ok((skip, size, None))
}

/// Conditions of a date filter: `">=<date>"` strings (`>`, `>=`, `<`, `<=`; a bare date is
/// equality), or a two-item `[from, to]` range, both ends included.
fn date_conditions(field: &str, value: &Value) -> Result<Vec<(Ordering, bool, String)>, ApiError> {
    let items = match value {
        Value::Array(items) => items.clone(),
        single => vec![single.clone()],
    };
    let as_str = |v: &Value| {
        v.as_str()
            .map(str::to_owned)
            .ok_or_else(|| ApiError::validation(format!("{field}: dates must be strings")))
    };
    let has_operator = |v: &Value| v.as_str().is_some_and(|s| s.starts_with(['<', '>']));
    if items.len() == 2 && !items.iter().any(has_operator) {
        let mut out = Vec::new();
        if !items[0].is_null() {
            out.push((Ordering::Greater, true, normalise_date(&as_str(&items[0])?)));
        }
        if !items[1].is_null() {
            out.push((Ordering::Less, true, normalise_date(&as_str(&items[1])?)));
        }
        return Ok(out);
    }
    let mut out = Vec::new();
    for item in &items {
        let text = as_str(item)?;
        let (wanted, or_equal, rest) = if let Some(rest) = text.strip_prefix(">=") {
            (Ordering::Greater, true, rest)
        } else if let Some(rest) = text.strip_prefix("<=") {
            (Ordering::Less, true, rest)
        } else if let Some(rest) = text.strip_prefix('>') {
            (Ordering::Greater, false, rest)
        } else if let Some(rest) = text.strip_prefix('<') {
            (Ordering::Less, false, rest)
        } else {
            (Ordering::Equal, true, text.as_str())
        };
        out.push((wanted, or_equal, normalise_date(rest)));
    }
    Ok(out)
}

/// A UTC date as `YYYY-MM-DDTHH:MM:SS.ffffff`, so that dates compare as strings: the zone suffix
/// (`+00:00`, `Z`) is dropped, a space separator becomes `T`, and missing parts are zero.
fn normalise_date(raw: &str) -> String {
    let trimmed = raw.trim().trim_end_matches('Z').trim_end_matches("+00:00").replacen(' ', "T", 1);
    let (main, fraction) = trimmed.split_once('.').unwrap_or((trimmed.as_str(), ""));
    let template = "0000-01-01T00:00:00";
    let main = if main.len() < template.len() {
        format!("{main}{}", &template[main.len()..])
    } else {
        main.to_owned()
    };
    format!("{main}.{:0<6}", &fraction[..fraction.len().min(6)])
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
        assert!(get_all(docs().iter(), json!({"page_size": 0}).as_object().unwrap(), &[]).is_err());
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

    #[test]
    fn every_answer_is_capped_and_scrolls_continue() {
        let many: Vec<Value> = (0..1_201).map(|i| json!({"id": format!("t{i:04}")})).collect();
        let query = |v: Value| v.as_object().unwrap().clone();
        assert_eq!(get_all(many.iter(), &query(json!({})), &[]).unwrap().len(), MAX_PAGE_SIZE);
        assert_eq!(
            get_all(many.iter(), &query(json!({"page_size": 2000})), &[]).unwrap().len(),
            MAX_PAGE_SIZE
        );
        let third = get_all(many.iter(), &query(json!({"page": 2, "page_size": 500})), &[]).unwrap();
        assert_eq!(third.len(), 201);
        let mut scrolls = Scrolls::default();
        let first = get_page(many.iter(), &query(json!({"scroll_id": null, "size": 700})), &[], &mut scrolls)
            .unwrap();
        let id = first.scroll_id.clone().unwrap();
        assert_eq!(first.docs.len(), 700, "a scroll's size is not capped by max_page_size");
        let next =
            get_page(many.iter(), &query(json!({"scroll_id": id, "size": 700})), &[], &mut scrolls).unwrap();
        assert_eq!(next.docs.len(), 501);
        assert_eq!(next.docs[0]["id"], "t0700");
        let missing_size = get_page(many.iter(), &query(json!({"scroll_id": null})), &[], &mut scrolls);
        assert!(missing_size.is_err());
    }

    #[test]
    fn date_fields_take_conditions_and_ranges() {
        let docs = [
            json!({"id": "a", "last_update": "2026-11-29T10:00:00.000000+00:00"}),
            json!({"id": "b", "last_update": "2026-11-29T10:00:05.500000+00:00"}),
            json!({"id": "c"}),
        ];
        let ids = |v: Value| -> Vec<String> {
            get_all(docs.iter(), v.as_object().unwrap(), &[])
                .unwrap()
                .iter()
                .map(|d| d["id"].as_str().unwrap().to_owned())
                .collect()
        };
        assert_eq!(ids(json!({"last_update": ">=2026-11-29T10:00:00"})), ["a", "b"]);
        assert_eq!(ids(json!({"last_update": ">2026-11-29T10:00:00"})), ["b"]);
        assert_eq!(ids(json!({"last_update": ["<2026-11-29T10:00:05", ">=2026-11-29T09:00:00"]})), ["a"]);
        assert_eq!(ids(json!({"last_update": ["2026-11-29T10:00:01", null]})), ["b"]);
    }
}

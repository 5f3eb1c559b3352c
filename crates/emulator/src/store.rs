//! An insertion-ordered set of JSON documents keyed by their `id` (tasks, queues).

use std::collections::HashMap;

use serde_json::Value;

#[derive(Debug, Default)]
pub struct Collection {
    order: Vec<String>,
    docs: HashMap<String, Value>,
}

impl Collection {
    /// Stores `doc` under its `id` field, replacing a document with the same id.
    pub fn insert(&mut self, doc: Value) -> String {
        let id = doc["id"].as_str().unwrap_or_default().to_string();
        if self.docs.insert(id.clone(), doc).is_none() {
            self.order.push(id.clone());
        }
        id
    }

    pub fn get(&self, id: &str) -> Option<&Value> {
        self.docs.get(id)
    }

    pub fn get_mut(&mut self, id: &str) -> Option<&mut Value> {
        self.docs.get_mut(id)
    }

    pub fn remove(&mut self, id: &str) -> Option<Value> {
        let doc = self.docs.remove(id)?;
        self.order.retain(|other| other != id);
        Some(doc)
    }

    /// Every document, in no particular order.
    pub fn values_mut(&mut self) -> impl Iterator<Item = &mut Value> {
        self.docs.values_mut()
    }

    /// Documents in creation order (the server's default order is also creation-based).
    pub fn values(&self) -> impl Iterator<Item = &Value> {
        self.order.iter().filter_map(|id| self.docs.get(id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keeps_creation_order() {
        let mut docs = Collection::default();
        docs.insert(json!({"id": "b"}));
        docs.insert(json!({"id": "a"}));
        docs.insert(json!({"id": "b", "v": 2}));
        let ids: Vec<_> = docs.values().map(|d| d["id"].clone()).collect();
        assert_eq!(ids, vec![json!("b"), json!("a")]);
        assert_eq!(docs.get("b").unwrap()["v"], 2);
        docs.remove("b");
        assert_eq!(docs.values().count(), 1);
    }
}

//! Injected failures: a queue of one-shot faults consumed by the next matching API call.

use std::collections::VecDeque;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// One misbehaviour of the next API call (of `endpoint`, e.g. `"tasks.get_all"`, if set).
///
/// JSON form (admin API): `{"type": "status", "code": 401, "subcode": 30}`,
/// `{"type": "garbage_body", "endpoint": "tasks.get_all"}`, `{"type": "delay", "duration_ms": 500}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Fault {
    /// Answer with an error envelope and this HTTP status / subcode instead of handling the
    /// call (401/30 makes a valid token fail once).
    Status {
        code: u16,
        #[serde(default)]
        subcode: u32,
        #[serde(default)]
        endpoint: Option<String>,
    },
    /// Answer 200 with a body that is not JSON.
    GarbageBody {
        #[serde(default)]
        endpoint: Option<String>,
    },
    /// Wait, then handle the call normally.
    Delay {
        #[serde(rename = "duration_ms", with = "millis")]
        duration: Duration,
        #[serde(default)]
        endpoint: Option<String>,
    },
}

impl Fault {
    fn endpoint(&self) -> Option<&str> {
        match self {
            Fault::Status { endpoint, .. }
            | Fault::GarbageBody { endpoint }
            | Fault::Delay { endpoint, .. } => endpoint.as_deref(),
        }
    }
}

/// Pending faults, applied in injection order.
#[derive(Debug, Default)]
pub struct FaultQueue {
    pending: VecDeque<Fault>,
}

impl FaultQueue {
    pub fn push(&mut self, faults: impl IntoIterator<Item = Fault>) {
        self.pending.extend(faults);
    }

    /// Removes and returns the oldest fault aimed at `endpoint` (or at any endpoint).
    pub fn take_for(&mut self, endpoint: &str) -> Option<Fault> {
        let index = self.pending.iter().position(|f| f.endpoint().is_none_or(|e| e == endpoint))?;
        self.pending.remove(index)
    }

    pub fn clear(&mut self) {
        self.pending.clear();
    }
}

mod millis {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis() as u64)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_apply_once_in_order_and_by_endpoint() {
        let mut queue = FaultQueue::default();
        queue.push([
            Fault::GarbageBody { endpoint: Some("tasks.get_all".into()) },
            Fault::Status { code: 401, subcode: 30, endpoint: None },
        ]);
        assert!(matches!(queue.take_for("auth.login"), Some(Fault::Status { code: 401, .. })));
        assert_eq!(queue.take_for("auth.login"), None);
        assert!(matches!(queue.take_for("tasks.get_all"), Some(Fault::GarbageBody { .. })));
    }

    #[test]
    fn json_form() {
        let faults: Vec<Fault> = serde_json::from_str(
            r#"[{"type":"status","code":503},{"type":"delay","duration_ms":250,"endpoint":"tasks.edit"}]"#,
        )
        .unwrap();
        assert_eq!(
            faults[1],
            Fault::Delay { duration: Duration::from_millis(250), endpoint: Some("tasks.edit".into()) }
        );
        assert_eq!(
            serde_json::to_value(&faults[0]).unwrap(),
            serde_json::json!({"type": "status", "code": 503, "subcode": 0, "endpoint": null})
        );
    }
}

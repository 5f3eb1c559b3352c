//! Error policy, apart from reconcile: for each failing thing (the ClearML login/poll, one task's
//! write-back, a structural apply, a reload) decides when to try again. Exponential backoff with
//! jitter and a cap; permanent errors start slow. One log line when a thing starts failing and one
//! when it recovers, never one per tick.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rand::Rng;
use serde::Serialize;

/// How a failure is retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// May clear by itself (timeouts, 5xx, a proxy restarting): retried soon, then slower.
    Transient,
    /// Will fail the same way until someone acts (a refused login, a 403, an invalid config).
    Permanent,
}

/// Delays of one kind of thing.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub transient_first: Duration,
    pub permanent_first: Duration,
    pub cap: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            transient_first: Duration::from_secs(1),
            permanent_first: Duration::from_secs(30),
            cap: Duration::from_secs(300),
        }
    }
}

impl Backoff {
    /// Delay before attempt `failures + 1`: doubling from the first delay, capped, then jittered
    /// down by up to a quarter so that many failing things do not retry in step.
    pub fn delay(&self, severity: Severity, failures: u32) -> Duration {
        let first = match severity {
            Severity::Transient => self.transient_first,
            Severity::Permanent => self.permanent_first,
        };
        let exp = failures.saturating_sub(1).min(20);
        // A first delay above the cap is kept as it is (a permanent error never comes sooner).
        let full = first.saturating_mul(1u32 << exp).min(self.cap.max(first));
        let jitter = rand::thread_rng().gen_range(0.0..0.25);
        full.mul_f64(1.0 - jitter)
    }
}

/// One thing that is failing now.
#[derive(Debug, Clone)]
pub struct Failing {
    pub since: Instant,
    pub failures: u32,
    pub next_try: Instant,
    pub severity: Severity,
    pub error: String,
}

/// What the status page shows of one failing thing.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FailingView {
    pub what: String,
    pub error: String,
    pub permanent: bool,
    pub failures: u32,
    pub failing_for_seconds: u64,
    pub retry_in_seconds: u64,
}

/// The failing things of one kind, keyed by name (a task id, "structure", "clearml").
#[derive(Debug)]
pub struct ErrorPolicy {
    /// Names the kind in logs and metrics ("write-back", "apply", ...).
    pub kind: &'static str,
    backoff: Backoff,
    failing: BTreeMap<String, Failing>,
    /// Failed attempts since start (every attempt, not every state change).
    pub failures_total: u64,
    /// Attempts not made because the thing was backing off.
    pub deferred_total: u64,
    pub recoveries_total: u64,
    /// Log messages when a thing starts failing and when it recovers.
    messages: (&'static str, &'static str),
}

impl ErrorPolicy {
    pub fn new(kind: &'static str, backoff: Backoff) -> Self {
        Self {
            kind,
            backoff,
            failing: BTreeMap::new(),
            failures_total: 0,
            deferred_total: 0,
            recoveries_total: 0,
            messages: ("failing; backing off", "recovered"),
        }
    }

    /// Logs `failing` and `recovered` instead of the generic lines.
    pub fn with_messages(mut self, failing: &'static str, recovered: &'static str) -> Self {
        self.messages = (failing, recovered);
        self
    }

    /// Whether `key` may be tried now (not failing, or its backoff has run out). Counts a deferral.
    pub fn ready(&mut self, key: &str, now: Instant) -> bool {
        let ready = self.failing.get(key).is_none_or(|f| now >= f.next_try);
        if !ready {
            self.deferred_total += 1;
        }
        ready
    }

    /// Records a failed attempt; logs only when `key` starts failing or its error changes.
    pub fn failed(&mut self, key: &str, error: String, severity: Severity, now: Instant) -> Duration {
        self.failures_total += 1;
        let entry = self.failing.entry(key.to_owned());
        let f = entry.or_insert_with(|| Failing {
            since: now,
            failures: 0,
            next_try: now,
            severity,
            error: String::new(),
        });
        f.failures += 1;
        f.severity = severity;
        let delay = self.backoff.delay(severity, f.failures);
        f.next_try = now + delay;
        if f.error != error {
            tracing::warn!(
                kind = self.kind,
                what = key,
                error = %error,
                permanent = severity == Severity::Permanent,
                retry_in_s = delay.as_secs_f64(),
                "{}",
                self.messages.0
            );
            f.error = error;
        }
        delay
    }

    /// Records a success; logs once if `key` was failing.
    pub fn succeeded(&mut self, key: &str, now: Instant) {
        if let Some(f) = self.failing.remove(key) {
            self.recoveries_total += 1;
            tracing::info!(
                kind = self.kind,
                what = key,
                failures = f.failures,
                failed_for_s = now.duration_since(f.since).as_secs_f64(),
                "{}",
                self.messages.1
            );
        }
    }

    /// Forgets `key` without a recovery line (the thing is gone: a task stopped, a config replaced).
    pub fn forget(&mut self, key: &str) {
        self.failing.remove(key);
    }

    pub fn is_failing(&self, key: &str) -> bool {
        self.failing.contains_key(key)
    }

    pub fn failing_count(&self) -> usize {
        self.failing.len()
    }

    pub fn keys(&self) -> impl Iterator<Item = &String> {
        self.failing.keys()
    }

    pub fn view(&self, now: Instant) -> Vec<FailingView> {
        self.failing
            .iter()
            .map(|(what, f)| FailingView {
                what: format!("{} {what}", self.kind),
                error: f.error.clone(),
                permanent: f.severity == Severity::Permanent,
                failures: f.failures,
                failing_for_seconds: now.duration_since(f.since).as_secs(),
                retry_in_seconds: f.next_try.saturating_duration_since(now).as_secs(),
            })
            .collect()
    }
}

/// How a ClearML error is retried: refusals and client errors repeat until someone acts.
pub fn api_severity(e: &clearml_api::ApiError) -> Severity {
    use clearml_api::ApiError::*;
    match e {
        BadCredentials { .. } | Unauthorized { .. } => Severity::Permanent,
        Server { code, .. } if (400..500).contains(code) => Severity::Permanent,
        _ => Severity::Transient,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_cap_with_at_most_a_quarter_of_jitter() {
        let b = Backoff::default();
        for failures in 1..30 {
            let full = (Duration::from_secs(1) * 2u32.pow((failures - 1).min(20))).min(b.cap);
            let d = b.delay(Severity::Transient, failures);
            assert!(d <= full && d >= full.mul_f64(0.75), "{failures}: {d:?} vs {full:?}");
        }
        assert!(b.delay(Severity::Permanent, 1) >= Duration::from_secs(22));
    }

    #[test]
    fn a_failing_thing_waits_for_its_backoff_and_recovers_once() {
        let mut p = ErrorPolicy::new("write-back", Backoff::default());
        let t0 = Instant::now();
        assert!(p.ready("t1", t0));
        let d = p.failed("t1", "403".into(), Severity::Permanent, t0);
        assert!(!p.ready("t1", t0 + Duration::from_secs(1)));
        assert!(p.ready("t2", t0), "other things are not held back");
        assert!(p.ready("t1", t0 + d));
        let d2 = p.failed("t1", "403".into(), Severity::Permanent, t0 + d);
        assert!(d2 > d.mul_f64(1.4), "the second delay is longer: {d:?} then {d2:?}");
        assert_eq!(p.view(t0 + d)[0].failures, 2);
        p.succeeded("t1", t0 + d + d2);
        assert!(!p.is_failing("t1"));
        assert_eq!((p.failures_total, p.recoveries_total, p.deferred_total), (2, 1, 1));
    }
}

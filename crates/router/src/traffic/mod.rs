//! Traffic statistics per route, read from the proxy: requests, rate, mean time, p50/p99 and
//! error rate over 30 s, 60 s and 300 s windows, each target's health, the replicas an
//! autoscaled static route asks for, and an hour of 10 s points for the status page's charts.
//!
//! `sample` reads the proxy's control listener on a cadence, `store` keeps bounded rings per
//! route, `counts` computes the figures of a bucket.

pub mod counts;
pub mod ring;
pub mod sample;
pub mod store;

use std::sync::{Arc, RwLock};

pub use store::{Point, RouteTraffic, Store};

/// The key of a static route's traffic (task routes use their route id; no id has a '/').
pub fn static_key(name: &str) -> String {
    format!("static/{name}")
}

/// The store, shared by the sampler (writer) and the status server (readers).
#[derive(Clone, Default)]
pub struct Traffic(Arc<RwLock<Store>>);

impl Traffic {
    pub fn ingest(&self, doc: &store::ProxyTraffic) {
        self.0.write().expect("traffic lock").ingest(doc);
    }

    pub fn read<T>(&self, f: impl FnOnce(&Store) -> T) -> T {
        f(&self.0.read().expect("traffic lock"))
    }
}

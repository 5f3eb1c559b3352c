//! Reads the proxy's traffic on a cadence: each time, the seconds after the last one taken in.

use std::time::Duration;

use super::store::ProxyTraffic;
use super::Traffic;
use crate::apply::probe::ProxyProbe;

/// How often the proxy is read (the proxy keeps 330 s, so a missed read loses nothing).
pub const CADENCE: Duration = Duration::from_secs(2);

const TRAFFIC_PATH: &str = "/__clearml_router/traffic";

/// Runs until the process ends.
pub async fn run(probe: ProxyProbe, traffic: Traffic) {
    let mut failing = false;
    loop {
        let since = traffic.read(|s| s.settled()) + 1;
        match probe.get_as::<ProxyTraffic>(&format!("{TRAFFIC_PATH}?since={since}")).await {
            Ok(doc) => {
                traffic.ingest(&doc);
                failing = false;
            }
            // A proxy that is (re)starting: said once, at debug level after that.
            Err(e) if !failing => {
                tracing::info!(error = %format!("{e:#}"), "cannot read the proxy's traffic; retrying");
                failing = true;
            }
            Err(e) => tracing::debug!(error = %format!("{e:#}"), "cannot read the proxy's traffic"),
        }
        tokio::time::sleep(CADENCE).await;
    }
}

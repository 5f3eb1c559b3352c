//! What one time bucket of one route holds, and the figures computed from it: rate, mean time,
//! quantiles from the latency histogram, error rate.

use std::collections::BTreeMap;

use serde::Serialize;

/// Buckets of the proxy's latency histogram: its bounds plus one for the rest.
pub const LATENCY_BUCKETS: usize = 12;

/// A target's requests and failures (5xx, refused, timed out).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct TargetCounts {
    pub requests: u64,
    pub failures: u64,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Counts {
    pub requests: u64,
    /// Answers of 500 and above, the gateway's own 502/504 included.
    pub errors: u64,
    pub seconds_sum: f64,
    pub latency: [u64; LATENCY_BUCKETS],
    pub targets: BTreeMap<String, TargetCounts>,
}

impl Counts {
    pub fn merge(&mut self, other: &Counts, targets: bool) {
        self.requests += other.requests;
        self.errors += other.errors;
        self.seconds_sum += other.seconds_sum;
        for (mine, theirs) in self.latency.iter_mut().zip(other.latency) {
            *mine += theirs;
        }
        if targets {
            for (address, t) in &other.targets {
                let mine = self.targets.entry(address.clone()).or_default();
                mine.requests += t.requests;
                mine.failures += t.failures;
            }
        }
    }

    pub fn mean_seconds(&self) -> Option<f64> {
        (self.requests > 0).then(|| self.seconds_sum / self.requests as f64)
    }

    pub fn error_rate(&self) -> Option<f64> {
        (self.requests > 0).then(|| self.errors as f64 / self.requests as f64)
    }

    /// Quantile `q` of the latency, linear within the histogram bucket it falls in (`bounds`:
    /// the buckets' upper bounds; the last bucket reports its lower bound).
    pub fn quantile(&self, q: f64, bounds: &[f64]) -> Option<f64> {
        let total: u64 = self.latency.iter().sum();
        if total == 0 || bounds.len() + 1 != LATENCY_BUCKETS {
            return None;
        }
        let rank = q * total as f64;
        let mut below = 0u64;
        for (i, &count) in self.latency.iter().enumerate() {
            if count > 0 && (below + count) as f64 >= rank {
                let low = if i == 0 { 0.0 } else { bounds[i - 1] };
                let Some(&high) = bounds.get(i) else { return Some(low) };
                let within = ((rank - below as f64) / count as f64).clamp(0.0, 1.0);
                return Some(low + (high - low) * within);
            }
            below += count;
        }
        bounds.last().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOUNDS: [f64; 11] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

    #[test]
    fn quantiles_interpolate_within_the_bucket() {
        let mut c = Counts::default();
        c.latency[6] = 100; // (0.25, 0.5]
        assert_eq!(c.quantile(0.5, &BOUNDS), Some(0.375));
        c.latency[0] = 100; // [0, 0.005]
        assert_eq!(c.quantile(0.5, &BOUNDS), Some(0.005));
        assert_eq!(c.quantile(0.99, &BOUNDS), Some(0.25 + 0.25 * 0.98));
        c.latency[11] = 10_000; // over 10 s: the bound is what is known
        assert_eq!(c.quantile(0.99, &BOUNDS), Some(10.0));
        assert_eq!(Counts::default().quantile(0.5, &BOUNDS), None);
        assert_eq!(c.quantile(0.5, &BOUNDS[..5]), None, "a histogram of another shape is not read");
    }

    #[test]
    fn merge_adds_up_and_rates_follow() {
        let mut a = Counts { requests: 2, errors: 1, seconds_sum: 0.5, ..Counts::default() };
        a.targets.insert("10.0.0.1:80".into(), TargetCounts { requests: 2, failures: 1 });
        let mut total = Counts::default();
        total.merge(&a, true);
        total.merge(&a, false);
        assert_eq!((total.requests, total.errors, total.targets["10.0.0.1:80"].requests), (4, 2, 2));
        assert_eq!((total.mean_seconds(), total.error_rate()), (Some(0.25), Some(0.5)));
        assert_eq!(Counts::default().mean_seconds(), None);
    }
}

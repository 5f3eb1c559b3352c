//! A fixed ring of time buckets: slot `(second / resolution) % len`, stamped with the bucket's
//! start, so old data is overwritten in place and memory never grows.

use super::counts::Counts;

pub struct Ring {
    resolution: u64,
    slots: Vec<(u64, Counts)>,
}

impl Ring {
    pub fn new(resolution: u64, len: usize) -> Self {
        Self { resolution, slots: vec![(u64::MAX, Counts::default()); len] }
    }

    pub fn resolution(&self) -> u64 {
        self.resolution
    }

    /// The bucket start of `second`.
    pub fn start_of(&self, second: u64) -> u64 {
        second - second % self.resolution
    }

    /// Adds `counts` of `second` (targets only with `targets`).
    pub fn add(&mut self, second: u64, counts: &Counts, targets: bool) {
        let start = self.start_of(second);
        let index = (start / self.resolution) as usize % self.slots.len();
        let slot = &mut self.slots[index];
        if slot.0 != start {
            *slot = (start, Counts::default());
        }
        slot.1.merge(counts, targets);
    }

    /// The counts of bucket `start`, if it is still held.
    pub fn get(&self, start: u64) -> Option<&Counts> {
        let index = (start / self.resolution) as usize % self.slots.len();
        let slot = &self.slots[index];
        (slot.0 == start).then_some(&slot.1)
    }

    /// Everything of the buckets starting in `(after, up_to]`, added up.
    pub fn sum(&self, after: u64, up_to: u64) -> Counts {
        let mut total = Counts::default();
        for (start, counts) in &self.slots {
            if *start != u64::MAX && *start > after && *start <= up_to {
                total.merge(counts, true);
            }
        }
        total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(requests: u64) -> Counts {
        Counts { requests, ..Counts::default() }
    }

    #[test]
    fn buckets_are_overwritten_when_the_ring_comes_around() {
        let mut ring = Ring::new(10, 3);
        ring.add(100, &one(1), false);
        ring.add(109, &one(2), false);
        ring.add(110, &one(4), false);
        assert_eq!(ring.get(100).unwrap().requests, 3);
        assert_eq!(ring.sum(99, 120).requests, 7);
        assert_eq!(ring.sum(100, 120).requests, 4, "bucket 100 is not after 100");
        ring.add(130, &one(8), false);
        assert!(ring.get(100).is_none(), "130 took 100's slot");
        assert_eq!(ring.sum(0, 1000).requests, 12);
    }
}

//! Zoned pools (ADR 14): which StatefulSet and pod each worker of a pool is, and how
//! its replicas split over zones.
//!
//! A pool's workers are numbered 0.. as one sequence whatever its zones: worker `k`
//! runs in zone `k % zones`, as pod `k / zones` of that zone's StatefulSet. Scaling
//! the pool from `n` to `n - 1` removes worker `n - 1`, the highest pod of the last
//! zone holding the most, so the zones stay balanced at every step, and the scale-down
//! (ADR 13) goes on leaving one worker at a time.

/// The label naming a zoned pod's zone.
pub const ZONE: &str = "lgtm.coordinated.dev/zone";

/// The node label a zone is matched against, unless the zone names other labels.
pub const TOPOLOGY_ZONE: &str = "topology.kubernetes.io/zone";

/// A pool's StatefulSets and pods: one set named after the pool, or one per zone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolLayout {
    pub pool: String,
    /// Zone names in rollout order; empty for an unzoned pool.
    pub zones: Vec<String>,
}

impl PoolLayout {
    pub fn new(pool: &str, zones: Vec<String>) -> Self {
        Self {
            pool: pool.to_string(),
            zones,
        }
    }

    pub fn is_zoned(&self) -> bool {
        !self.zones.is_empty()
    }

    /// The StatefulSet of a zone (`None`: the unzoned pool's own).
    pub fn statefulset(&self, zone: Option<&str>) -> String {
        match zone {
            Some(zone) => format!("{}-{zone}", self.pool),
            None => self.pool.clone(),
        }
    }

    /// Every StatefulSet name with its zone, in zone order.
    pub fn statefulsets(&self) -> Vec<(Option<&str>, String)> {
        if self.zones.is_empty() {
            return vec![(None, self.statefulset(None))];
        }
        self.zones
            .iter()
            .map(|z| (Some(z.as_str()), self.statefulset(Some(z))))
            .collect()
    }

    /// The pod of worker `ordinal`.
    pub fn pod(&self, ordinal: i32) -> String {
        if self.zones.is_empty() {
            return format!("{}-{ordinal}", self.pool);
        }
        let count = self.zone_count();
        let zone = &self.zones[usize::try_from(ordinal.rem_euclid(count)).unwrap_or(0)];
        format!("{}-{}", self.statefulset(Some(zone)), ordinal / count)
    }

    /// The worker ordinal of a pod of this pool, `None` for any other name.
    pub fn ordinal(&self, pod: &str) -> Option<i32> {
        let index_after = |prefix: &str| -> Option<i32> {
            let rest = pod.strip_prefix(prefix)?.strip_prefix('-')?;
            rest.bytes()
                .all(|b| b.is_ascii_digit())
                .then(|| rest.parse().ok())?
        };
        if self.zones.is_empty() {
            return index_after(&self.pool);
        }
        let count = self.zone_count();
        self.zones.iter().enumerate().find_map(|(z, zone)| {
            let index = index_after(&self.statefulset(Some(zone)))?;
            Some(index * count + i32::try_from(z).ok()?)
        })
    }

    /// Each StatefulSet's replicas for `replicas` workers: even, the remainder to the
    /// first zones.
    pub fn split(&self, replicas: i32) -> Vec<i32> {
        if self.zones.is_empty() {
            return vec![replicas];
        }
        let count = self.zone_count();
        (0..count)
            .map(|z| replicas / count + i32::from(z < replicas % count))
            .collect()
    }

    fn zone_count(&self) -> i32 {
        i32::try_from(self.zones.len()).unwrap_or(i32::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn zoned() -> PoolLayout {
        PoolLayout::new(
            "ingest",
            vec!["zone-a".into(), "zone-b".into(), "zone-c".into()],
        )
    }

    #[test]
    fn an_unzoned_pool_is_one_statefulset_named_after_it() {
        let layout = PoolLayout::new("ingest", vec![]);
        assert_eq!(layout.statefulsets(), [(None, "ingest".to_string())]);
        assert_eq!(layout.pod(4), "ingest-4");
        assert_eq!(layout.ordinal("ingest-4"), Some(4));
        assert_eq!(layout.ordinal("ingest-zone-a-4"), None);
        assert_eq!(layout.split(5), [5]);
    }

    #[test]
    fn workers_go_round_the_zones() {
        let layout = zoned();
        let pods: Vec<String> = (0..5).map(|k| layout.pod(k)).collect();
        assert_eq!(
            pods,
            [
                "ingest-zone-a-0",
                "ingest-zone-b-0",
                "ingest-zone-c-0",
                "ingest-zone-a-1",
                "ingest-zone-b-1"
            ]
        );
        assert_eq!(layout.split(5), [2, 2, 1]);
        assert_eq!(layout.split(0), [0, 0, 0]);
        assert_eq!(layout.ordinal("ingest-zone-b-1"), Some(4));
        assert_eq!(layout.ordinal("ingest-zone-b-x"), None);
        assert_eq!(layout.ordinal("ingest-1"), None);
    }

    proptest! {
        /// Removing the highest worker takes one pod from a zone with the most, so
        /// zones never differ by more than one; and names map back to ordinals.
        #[test]
        fn the_highest_worker_keeps_the_zones_balanced(replicas in 1..200i32) {
            let layout = zoned();
            let before = layout.split(replicas);
            let after = layout.split(replicas - 1);
            let max = *before.iter().max().expect("three zones");
            let min = *after.iter().min().expect("three zones");
            prop_assert!(*after.iter().max().expect("three zones") - min <= 1);
            prop_assert_eq!(before.iter().sum::<i32>(), replicas);
            let leaving = layout.pod(replicas - 1);
            let zone = before.iter().zip(&after).position(|(b, a)| b != a).expect("three zones");
            prop_assert_eq!(before[zone], max);
            prop_assert!(leaving.starts_with(&layout.statefulset(Some(&layout.zones[zone]))));
            prop_assert_eq!(layout.ordinal(&leaving), Some(replicas - 1));
        }
    }
}

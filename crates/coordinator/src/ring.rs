//! The consistent-hash ring of live workers, with virtual nodes (on the `hashring` crate).
//!
//! Built from the sorted worker ids alone, so every coordinator that sees the same
//! membership routes every key to the same worker.

use std::sync::Arc;

use hashring::HashRing;

/// One of a worker's points on the ring.
#[derive(Debug, Clone, Hash, PartialEq, Eq)]
struct VirtualNode {
    worker: Arc<str>,
    replica: u32,
}

#[derive(Debug, Clone, Default)]
pub struct Ring {
    ring: HashRing<VirtualNode>,
    workers: Vec<Arc<str>>,
}

impl Ring {
    pub fn new<'a>(workers: impl IntoIterator<Item = &'a str>, virtual_nodes: usize) -> Self {
        let mut workers: Vec<Arc<str>> = workers.into_iter().map(Arc::from).collect();
        workers.sort();
        workers.dedup();
        let mut ring = HashRing::new();
        let replicas = u32::try_from(virtual_nodes.max(1)).unwrap_or(u32::MAX);
        ring.batch_add(
            workers
                .iter()
                .flat_map(|worker| {
                    (0..replicas).map(|replica| VirtualNode {
                        worker: worker.clone(),
                        replica,
                    })
                })
                .collect(),
        );
        Self { ring, workers }
    }

    /// The worker ids on the ring, sorted.
    pub fn workers(&self) -> &[Arc<str>] {
        &self.workers
    }

    pub fn is_empty(&self) -> bool {
        self.workers.is_empty()
    }

    /// The worker that owns `key`.
    pub fn owner(&self, key: u64) -> Option<&Arc<str>> {
        self.ring.get(&key).map(|node| &node.worker)
    }

    /// Every worker, in the order a call for `key` tries them: the owner, then the next
    /// distinct workers clockwise (where the key moves if the owner leaves).
    pub fn candidates(&self, key: u64) -> Vec<Arc<str>> {
        let Some(owner) = self.owner(key) else {
            return Vec::new();
        };
        let mut order = vec![owner.clone()];
        if self.workers.len() > 1 {
            // Walking the whole ring copies it; only calls that fail over get here.
            let points = self.ring.len();
            for node in self
                .ring
                .get_with_replicas(&key, points)
                .unwrap_or_default()
            {
                if !order.contains(&node.worker) {
                    order.push(node.worker);
                    if order.len() == self.workers.len() {
                        break;
                    }
                }
            }
        }
        order
    }

    /// The owner and the worker a call fails over to, without walking the whole ring
    /// unless the owner is excluded.
    pub fn first_available(&self, key: u64, excluded: &[Arc<str>]) -> Option<Arc<str>> {
        let owner = self.owner(key)?;
        if !excluded.contains(owner) {
            return Some(owner.clone());
        }
        self.candidates(key)
            .into_iter()
            .find(|worker| !excluded.contains(worker))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const KEYS: u64 = 20_000;

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("worker-{i:03}")).collect()
    }

    fn owners(ring: &Ring, keys: &[u64]) -> Vec<Arc<str>> {
        keys.iter()
            .map(|k| ring.owner(*k).expect("non-empty ring").clone())
            .collect()
    }

    fn keys(seed: u64) -> Vec<u64> {
        // A splitmix sequence: arbitrary, well-spread affinity keys.
        let mut state = seed;
        (0..KEYS)
            .map(|_| {
                state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
                let mut z = state;
                z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
                z ^ (z >> 31)
            })
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        /// Adding one worker to N moves about 1/(N+1) of the keys, all of them to the new
        /// worker; removing it moves exactly those keys back.
        #[test]
        fn one_worker_more_moves_about_one_nth(n in 2usize..12, seed in any::<u64>()) {
            let keys = keys(seed);
            let before_names = names(n);
            let mut after_names = before_names.clone();
            after_names.push("worker-new".into());
            let before = Ring::new(before_names.iter().map(String::as_str), 128);
            let after = Ring::new(after_names.iter().map(String::as_str), 128);
            let (b, a) = (owners(&before, &keys), owners(&after, &keys));
            let mut moved = 0;
            for (old, new) in b.iter().zip(&a) {
                if old != new {
                    moved += 1;
                    prop_assert_eq!(&**new, "worker-new", "a key moved between old workers");
                }
            }
            let fraction = moved as f64 / keys.len() as f64;
            let expected = 1.0 / (n as f64 + 1.0);
            prop_assert!(
                (fraction - expected).abs() < expected * 0.5,
                "moved {fraction:.3} of keys, expected about {expected:.3}"
            );
        }

        /// Removing one of N workers moves only the keys it owned.
        #[test]
        fn one_worker_less_moves_only_its_keys(n in 2usize..12, gone in 0usize..12, seed in any::<u64>()) {
            let gone = gone % n;
            let keys = keys(seed);
            let all = names(n);
            let rest: Vec<&str> = all.iter().enumerate()
                .filter(|(i, _)| *i != gone).map(|(_, w)| w.as_str()).collect();
            let before = Ring::new(all.iter().map(String::as_str), 128);
            let after = Ring::new(rest, 128);
            for (key, (old, new)) in keys.iter().zip(owners(&before, &keys).iter().zip(owners(&after, &keys))) {
                if **old != *all[gone] {
                    prop_assert_eq!(old, &new, "key {} moved though its worker stayed", key);
                } else {
                    // It goes where failover sent it: the next distinct worker on the ring.
                    prop_assert_eq!(&before.candidates(*key)[1], &new);
                }
            }
        }

        /// With 128 virtual nodes, every worker owns within 35% of a fair share.
        #[test]
        fn load_spreads_within_tolerance(n in 2usize..12, seed in any::<u64>()) {
            let keys = keys(seed);
            let workers = names(n);
            let ring = Ring::new(workers.iter().map(String::as_str), 128);
            let owned = owners(&ring, &keys);
            let fair = keys.len() as f64 / n as f64;
            for worker in &workers {
                let count = owned.iter().filter(|o| ***o == **worker).count() as f64;
                prop_assert!(
                    (count - fair).abs() < fair * 0.35,
                    "{worker} owns {count} keys, fair share {fair}"
                );
            }
        }
    }

    #[test]
    fn candidates_are_every_worker_once_owner_first() {
        let workers = names(5);
        let ring = Ring::new(workers.iter().map(String::as_str), 64);
        for key in keys(7).into_iter().take(200) {
            let order = ring.candidates(key);
            assert_eq!(order.len(), 5);
            assert_eq!(Some(&order[0]), ring.owner(key));
            let mut sorted = order.clone();
            sorted.sort();
            sorted.dedup();
            assert_eq!(sorted.len(), 5);
            assert_eq!(
                ring.first_available(key, &order[..2]),
                Some(order[2].clone())
            );
        }
    }

    #[test]
    fn a_worker_listed_twice_is_one_worker() {
        let ring = Ring::new(["c", "b", "a", "a"], 32);
        assert_eq!(ring.workers().len(), 3);
        for key in keys(3).into_iter().take(1000) {
            assert_eq!(ring.candidates(key).len(), 3);
        }
        assert!(Ring::new(std::iter::empty(), 8).owner(1).is_none());
    }
}

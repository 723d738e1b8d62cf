//! The communication graph: who masks with whom and who holds whose shares.
//!
//! [`GraphKind::Complete`] is Bonawitz et al.; [`GraphKind::Harary`] is the
//! SecAgg+ random `k`-regular graph: U1 is placed on a ring in an order drawn
//! from a seed that hashes every advertised key in U1, and each participant is
//! linked to the `k/2` nearest on either side. The coordinator cannot choose
//! the order without re-running key generation for the participants.

use std::collections::HashMap;

use chacha20::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};
use sha2::{Digest, Sha256};

use crate::config::GraphKind;

/// Neighbourhoods over the survivors of the advertise stage (U1).
#[derive(Debug, Clone)]
pub struct Graph {
    members: Vec<u32>,
    /// `None` for the complete graph.
    ring: Option<Ring>,
}

#[derive(Debug, Clone)]
struct Ring {
    half_degree: usize,
    order: Vec<u32>,
    position: HashMap<u32, usize>,
}

/// Seed of the ring permutation: SHA-256 over the session id and every U1 entry.
pub fn graph_seed<'a>(
    session_id: &[u8; 32],
    entries: impl Iterator<Item = (u32, &'a [u8; 32], &'a [u8; 32])>,
) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"fedrisk-secagg/v1/harary-order\0");
    h.update(session_id);
    for (id, c, s) in entries {
        h.update(id.to_le_bytes());
        h.update(c);
        h.update(s);
    }
    h.finalize().into()
}

fn uniform_below(rng: &mut ChaCha20Rng, n: usize) -> usize {
    let n = n as u64;
    let zone = u64::MAX - (u64::MAX % n);
    loop {
        let v = rng.next_u64();
        if v < zone {
            return (v % n) as usize;
        }
    }
}

impl Graph {
    /// Builds the graph over `members` (U1, strictly increasing).
    pub fn build(kind: GraphKind, members: &[u32], seed: [u8; 32]) -> Graph {
        let members = members.to_vec();
        let ring = match kind {
            GraphKind::Harary { degree, .. } if (degree as usize) + 1 < members.len() => {
                let mut order = members.clone();
                let mut rng = ChaCha20Rng::from_seed(seed);
                for i in (1..order.len()).rev() {
                    let j = uniform_below(&mut rng, i + 1);
                    order.swap(i, j);
                }
                let position = order.iter().enumerate().map(|(p, &id)| (id, p)).collect();
                Some(Ring {
                    half_degree: degree as usize / 2,
                    order,
                    position,
                })
            }
            _ => None,
        };
        Graph { members, ring }
    }

    /// Whether `id` is in U1.
    pub fn contains(&self, id: u32) -> bool {
        self.members.binary_search(&id).is_ok()
    }

    /// U1.
    pub fn members(&self) -> &[u32] {
        &self.members
    }

    /// The share group of `id`: its neighbours and itself, sorted. Empty if `id`
    /// is not in U1.
    pub fn group(&self, id: u32) -> Vec<u32> {
        match &self.ring {
            None => {
                if self.contains(id) {
                    self.members.clone()
                } else {
                    Vec::new()
                }
            }
            Some(r) => {
                let Some(&p) = r.position.get(&id) else {
                    return Vec::new();
                };
                let m = r.order.len();
                let mut g: Vec<u32> = (0..=2 * r.half_degree)
                    .map(|o| r.order[(p + m + o - r.half_degree) % m])
                    .collect();
                g.sort_unstable();
                g
            }
        }
    }

    /// Whether `a` and `b` (distinct) share masks.
    pub fn adjacent(&self, a: u32, b: u32) -> bool {
        if a == b || !self.contains(a) || !self.contains(b) {
            return false;
        }
        match &self.ring {
            None => true,
            Some(r) => match (r.position.get(&a), r.position.get(&b)) {
                (Some(&pa), Some(&pb)) => {
                    let m = r.order.len();
                    let d = pa.abs_diff(pb);
                    d.min(m - d) <= r.half_degree
                }
                _ => false,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn harary_is_regular_and_symmetric() {
        let members: Vec<u32> = (0..50).map(|i| i * 2).collect();
        let g = Graph::build(
            GraphKind::Harary {
                degree: 6,
                share_threshold: 5,
            },
            &members,
            [9; 32],
        );
        for &a in &members {
            let grp = g.group(a);
            assert_eq!(grp.len(), 7);
            assert!(grp.contains(&a));
            for &b in &members {
                assert_eq!(g.adjacent(a, b), g.adjacent(b, a));
                assert_eq!(g.adjacent(a, b), a != b && grp.contains(&b));
            }
        }
        let other = Graph::build(
            GraphKind::Harary {
                degree: 6,
                share_threshold: 5,
            },
            &members,
            [10; 32],
        );
        assert_ne!(
            g.group(0),
            other.group(0),
            "different seeds give different rings"
        );
    }

    #[test]
    fn complete_graph_links_everyone() {
        let g = Graph::build(GraphKind::Complete, &[1, 4, 9], [0; 32]);
        assert_eq!(g.group(4), vec![1, 4, 9]);
        assert!(g.adjacent(1, 9));
        assert!(!g.adjacent(1, 1));
        assert!(g.group(5).is_empty());
    }
}

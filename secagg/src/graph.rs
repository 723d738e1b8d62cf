//! The communication graph: who masks with whom and who holds whose shares.
//!
//! [`GraphKind::Complete`] is Bonawitz et al.; [`GraphKind::Harary`] is the
//! SecAgg+ random `k`-regular graph: U1 is placed on a ring in an order drawn
//! from a seed that hashes every advertised key in U1, and each participant is
//! linked to the `k/2` nearest on either side. The coordinator cannot choose
//! the order without re-running key generation for the participants.

use std::borrow::Cow;
use std::collections::HashMap;

use chacha20::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};
use sha2::{Digest, Sha256};

use crate::config::GraphKind;

/// Neighbourhoods over the survivors of the advertise stage (U1).
#[derive(Debug, Clone)]
pub struct Graph {
    members: Vec<u32>,
    /// The seed it was built from, which hashes every U1 entry: signed with U3 in the
    /// consistency check, so members that were shown different key lists (and so would
    /// build different graphs) find out before any share is released.
    seed: [u8; 32],
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
    /// The hash of U1 this graph was built from.
    pub fn u1_digest(&self) -> &[u8; 32] {
        &self.seed
    }

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
        Graph {
            members,
            seed,
            ring,
        }
    }

    /// Whether `id` is in U1.
    pub fn contains(&self, id: u32) -> bool {
        self.members.binary_search(&id).is_ok()
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

    /// `id`'s share group and `id`'s index in it; `None` if `id` is not in U1.
    /// Borrows U1 for the complete graph instead of copying it.
    fn group_and_index(&self, id: u32) -> Option<(Cow<'_, [u32]>, usize)> {
        let g = match &self.ring {
            None => Cow::Borrowed(self.members.as_slice()),
            Some(_) => Cow::Owned(self.group(id)),
        };
        let p = g.binary_search(&id).ok()?;
        Some((g, p))
    }

    /// Offset of group member `i` after the dealer at `p`, going round the
    /// sorted group `m` long: `1..m` for the others, 0 for the dealer.
    fn offset(i: usize, p: usize, m: usize) -> usize {
        (i + m - p) % m
    }

    /// `D_u`, the recipients whose shares of `id`'s secrets are *derived* from
    /// pairwise keys instead of sent (see [`crate::crypto::derived_shares`]):
    /// with `id`'s share group sorted increasingly as `g[0..m]` and `id = g[p]`,
    /// the members `g[(p + k) mod m]` for `k = 1..=min(t - 1, m - 1)`, i.e. the
    /// `t - 1` members following `id` in id order, wrapping round. `t` is the
    /// session's share threshold. Returned sorted by id.
    pub fn derived_recipients(&self, id: u32, t: usize) -> Vec<u32> {
        let Some((g, p)) = self.group_and_index(id) else {
            return Vec::new();
        };
        let m = g.len();
        g.iter()
            .enumerate()
            .filter(|&(i, _)| {
                let o = Self::offset(i, p, m);
                o >= 1 && o < t
            })
            .map(|(_, &v)| v)
            .collect()
    }

    /// The recipients `id` sends encrypted shares to: its share group minus
    /// itself minus [`Self::derived_recipients`], sorted by id.
    pub fn sent_recipients(&self, id: u32, t: usize) -> Vec<u32> {
        let Some((g, p)) = self.group_and_index(id) else {
            return Vec::new();
        };
        let m = g.len();
        g.iter()
            .enumerate()
            .filter(|&(i, _)| Self::offset(i, p, m) >= t.max(1))
            .map(|(_, &v)| v)
            .collect()
    }

    /// Whether `to` is in `D_from` ([`Self::derived_recipients`]`(from, t)`).
    pub fn is_derived(&self, from: u32, to: u32, t: usize) -> bool {
        from != to
            && self.group_and_index(from).is_some_and(|(g, p)| {
                g.binary_search(&to)
                    .is_ok_and(|i| Self::offset(i, p, g.len()) < t)
            })
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

    /// `D_u` is the `t - 1` group members after `u` (wrapping), disjoint from
    /// the sent recipients, and `is_derived` agrees, on both graph kinds.
    #[test]
    fn derived_and_sent_recipients_partition_the_group() {
        let members: Vec<u32> = (0..40).map(|i| i * 3 + 1).collect();
        let complete = Graph::build(GraphKind::Complete, &members, [1; 32]);
        let harary = Graph::build(
            GraphKind::Harary {
                degree: 8,
                share_threshold: 6,
            },
            &members,
            [2; 32],
        );
        for (g, t) in [(&complete, 27usize), (&harary, 6)] {
            for &u in &members {
                let grp = g.group(u);
                let d = g.derived_recipients(u, t);
                let s = g.sent_recipients(u, t);
                assert_eq!(d.len(), t - 1);
                assert_eq!(d.len() + s.len() + 1, grp.len());
                let p = grp.binary_search(&u).unwrap();
                let mut expect: Vec<u32> = (1..t).map(|k| grp[(p + k) % grp.len()]).collect();
                expect.sort_unstable();
                assert_eq!(d, expect);
                for &v in &members {
                    assert_eq!(g.is_derived(u, v, t), d.contains(&v), "{u} -> {v}");
                    assert!(!(d.contains(&v) && s.contains(&v)));
                }
            }
        }
        assert_eq!(complete.derived_recipients(members[39], 3), vec![1, 4]);
        assert!(complete.derived_recipients(2, 3).is_empty());
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

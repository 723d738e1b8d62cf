//! Joins a secagg message the coordinator delivered in parts (`SecAggDelivery.more`).
//!
//! The coordinator cuts every message larger than `fedrisk_proto::DELIVERY_PART` into parts
//! sent in order on the agent's one task stream, so that what it holds per stream stays
//! small. A part of another session or stage than the one being joined means the earlier
//! message was cut off (its stream's queue overflowed, or the session moved on): it is
//! dropped and the new part starts a message of its own.

use fedrisk_proto::MAX_MESSAGE_BYTES;
use prost::bytes::Bytes;

/// The message being joined: whose parts have come so far.
#[derive(Default)]
pub struct Reassembly {
    pending: Option<Pending>,
}

struct Pending {
    job_id: u64,
    round: u32,
    session_id: Vec<u8>,
    stage: i32,
    bytes: Vec<u8>,
}

/// A message in parts that grew past the largest message either end accepts.
#[derive(Debug, thiserror::Error)]
#[error("a secagg message delivered in parts grew past {MAX_MESSAGE_BYTES} bytes")]
pub struct TooLarge;

/// Where a part belongs: the task's job, round and session, and the secagg stage.
#[derive(Clone, Copy)]
pub struct PartOf<'a> {
    pub job_id: u64,
    pub round: u32,
    pub session_id: &'a [u8],
    pub stage: i32,
}

impl Reassembly {
    /// Takes one delivery; answers the whole message once its last part came.
    pub fn push(
        &mut self,
        of: PartOf<'_>,
        payload: &Bytes,
        more: bool,
    ) -> Result<Option<Bytes>, TooLarge> {
        let continues = self.pending.as_ref().is_some_and(|p| {
            p.job_id == of.job_id
                && p.round == of.round
                && p.session_id == of.session_id
                && p.stage == of.stage
        });
        if !continues {
            self.pending = None;
            if !more {
                return Ok(Some(payload.clone()));
            }
        }
        let pending = self.pending.get_or_insert_with(|| Pending {
            job_id: of.job_id,
            round: of.round,
            session_id: of.session_id.to_vec(),
            stage: of.stage,
            bytes: Vec::new(),
        });
        if pending.bytes.len() + payload.len() > MAX_MESSAGE_BYTES {
            self.pending = None;
            return Err(TooLarge);
        }
        pending.bytes.extend_from_slice(payload);
        if more {
            return Ok(None);
        }
        Ok(self.pending.take().map(|p| Bytes::from(p.bytes)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SID: &[u8] = &[7; 32];

    fn of(stage: i32) -> PartOf<'static> {
        PartOf {
            job_id: 1,
            round: 2,
            session_id: SID,
            stage,
        }
    }

    /// The coordinator's cutting, as `coordinator::hub::delivery_parts` does it.
    fn cut(message: &[u8], part: usize) -> Vec<(Bytes, bool)> {
        let chunks: Vec<&[u8]> = message.chunks(part).collect();
        let last = chunks.len().saturating_sub(1);
        chunks
            .into_iter()
            .enumerate()
            .map(|(i, c)| (Bytes::copy_from_slice(c), i < last))
            .collect()
    }

    #[test]
    fn parts_in_order_make_the_message_and_a_whole_one_passes_as_it_is() {
        let message: Vec<u8> = (0..20_000u32).map(|i| (i % 251) as u8).collect();
        let mut r = Reassembly::default();
        let mut got = None;
        for (part, more) in cut(&message, 6144) {
            assert!(got.is_none(), "nothing before the last part");
            got = r.push(of(1), &part, more).expect("within the limit");
        }
        assert_eq!(got.as_deref(), Some(&message[..]));
        let whole = Bytes::from_static(b"small");
        assert_eq!(r.push(of(2), &whole, false).expect("ok"), Some(whole));
    }

    #[test]
    fn a_cut_off_message_is_dropped_and_never_joined_to_the_next() {
        let mut r = Reassembly::default();
        let first = Bytes::from_static(b"first half of a key list");
        assert_eq!(r.push(of(1), &first, true).expect("ok"), None);
        // The next stage's message starts afresh: nothing of the cut-off one in it.
        let next = Bytes::from_static(b"share bundle");
        assert_eq!(r.push(of(2), &next, false).expect("ok"), Some(next.clone()));
        // Another session's part does not continue this session's message either.
        assert_eq!(r.push(of(3), &first, true).expect("ok"), None);
        let other = PartOf {
            session_id: &[8; 32],
            ..of(3)
        };
        assert_eq!(r.push(other, &next, false).expect("ok"), Some(next));
    }

    #[test]
    fn parts_past_the_message_limit_are_refused_and_forgotten() {
        let mut r = Reassembly::default();
        let big = Bytes::from(vec![0u8; 4 * 1024 * 1024]);
        for _ in 0..4 {
            assert_eq!(r.push(of(1), &big, true).expect("within"), None);
        }
        assert!(r.push(of(1), &Bytes::from_static(b"x"), false).is_err());
        let small = Bytes::from_static(b"after");
        assert_eq!(r.push(of(1), &small, false).expect("ok"), Some(small));
    }
}

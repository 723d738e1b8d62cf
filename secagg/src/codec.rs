//! Length-checked binary reader/writer shared by the message and config codecs.
//!
//! Every count read from the wire is checked against the bytes actually left
//! before anything is allocated, so a hostile length prefix cannot make us
//! allocate more than a small multiple of the input's own size (at most 32
//! bytes of ids per byte of an id bitmap).

use crate::error::{Result, SecAggError};

/// Wire format version written first in every encoded message and config.
///
/// Version 2: only the shares of non-derived recipients are sent
/// ([`crate::ShareKeys`]), and [`crate::ShareBundle`] lists the senders whose
/// shares the recipient derives itself. Version 3: a [`crate::MaskedInput`] carries the
/// sender's signed commitment to its input and the blinding's limbs
/// ([`crate::commit`]). Version 4: the commitment moves into the signed
/// [`crate::Advertise`] (and the key list); a masked input carries only the vector.
/// Version 5: the messages are version 4's, but share keys and derived shares come from
/// [`crate::crypto::session_channel_secret`] (channel keys may be kept for a job) and the
/// mask PRG is AES-256-CTR ([`crate::crypto::prg_accumulate`]), so a version-4 peer could
/// neither read the shares nor cancel the masks. Earlier versions are rejected.
pub const WIRE_VERSION: u8 = 5;

#[derive(Default)]
pub(crate) struct Writer {
    pub(crate) buf: Vec<u8>,
}

impl Writer {
    pub(crate) fn with_header(tag: u8, capacity: usize) -> Self {
        let mut buf = Vec::with_capacity(capacity + 2);
        buf.push(WIRE_VERSION);
        buf.push(tag);
        Writer { buf }
    }
    pub(crate) fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }
    pub(crate) fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    pub(crate) fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    pub(crate) fn f64(&mut self, v: f64) {
        self.u64(v.to_bits());
    }
    pub(crate) fn bytes(&mut self, v: &[u8]) {
        self.buf.extend_from_slice(v);
    }
    /// A length prefix; lengths in this crate are bounded far below `u32::MAX`.
    pub(crate) fn len(&mut self, n: usize) {
        self.u32(u32::try_from(n).unwrap_or(u32::MAX));
    }
    pub(crate) fn ids(&mut self, ids: &[u32]) {
        self.len(ids.len());
        for &id in ids {
            self.u32(id);
        }
    }
    /// An id list inside a message (not the configuration, whose encoding the
    /// session id hashes): a form byte, then either [`ID_LIST_EXPLICIT`]
    /// (`u32` count, then each id) or, when the ids are strictly increasing and
    /// that is shorter, [`ID_LIST_BITMAP`] (`u32` count, `u32` first id, `u32`
    /// span in bits, then `ceil(span / 8)` bytes whose bit `i` (LSB first)
    /// marks id `first + i`; the first and last bits are set and padding bits
    /// are zero).
    pub(crate) fn id_list(&mut self, ids: &[u32]) {
        let explicit = 4 * ids.len();
        let bitmap = match (ids.first(), ids.last()) {
            (Some(&first), Some(&last))
                if last - first < u32::MAX && crate::strictly_increasing(ids.iter().copied()) =>
            {
                let span = u64::from(last - first) + 1;
                Some((first, span, 8 + span.div_ceil(8) as usize))
            }
            _ => None,
        };
        match bitmap {
            Some((first, span, size)) if size < explicit => {
                self.u8(ID_LIST_BITMAP);
                self.len(ids.len());
                self.u32(first);
                self.u32(span as u32);
                let mut map = vec![0u8; span.div_ceil(8) as usize];
                for &id in ids {
                    let i = (id - first) as usize;
                    map[i / 8] |= 1 << (i % 8);
                }
                self.bytes(&map);
            }
            _ => {
                self.u8(ID_LIST_EXPLICIT);
                self.ids(ids);
            }
        }
    }
    pub(crate) fn finish(self) -> Vec<u8> {
        self.buf
    }
}

/// Id-list form: a count and every id as `u32`.
pub(crate) const ID_LIST_EXPLICIT: u8 = 0;
/// Id-list form: strictly increasing ids as a bitmap over `[first, first + span)`.
pub(crate) const ID_LIST_BITMAP: u8 = 1;

pub(crate) struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    /// Checks version and tag; returns a reader positioned after them.
    pub(crate) fn with_header(buf: &'a [u8], tag: u8) -> Result<Self> {
        let mut r = Reader { buf };
        let version = r.u8()?;
        if version != WIRE_VERSION {
            return Err(SecAggError::UnsupportedVersion(version));
        }
        if r.u8()? != tag {
            return Err(SecAggError::Malformed("wrong message type"));
        }
        Ok(r)
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.buf.len() < n {
            return Err(SecAggError::Malformed("truncated"));
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }
    pub(crate) fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }
    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }
    pub(crate) fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    pub(crate) fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array()?))
    }
    pub(crate) fn f64(&mut self) -> Result<f64> {
        Ok(f64::from_bits(self.u64()?))
    }
    /// Reads a count of elements of `elem_size` bytes each, rejecting counts
    /// that the remaining input cannot possibly hold.
    pub(crate) fn count(&mut self, elem_size: usize) -> Result<usize> {
        let n = self.u32()? as usize;
        if n.saturating_mul(elem_size.max(1)) > self.buf.len() {
            return Err(SecAggError::Malformed("declared length exceeds message"));
        }
        Ok(n)
    }
    pub(crate) fn ids(&mut self) -> Result<Vec<u32>> {
        let n = self.count(4)?;
        (0..n).map(|_| self.u32()).collect()
    }
    /// Reads an id list written by [`Writer::id_list`] that `elem_size` bytes
    /// per id will follow (checked before anything is allocated). The bitmap
    /// form must be canonical (count matches, first and last bits set, zero
    /// padding), so every list has one bitmap encoding.
    pub(crate) fn id_list(&mut self, elem_size: usize) -> Result<Vec<u32>> {
        match self.u8()? {
            ID_LIST_EXPLICIT => {
                let n = self.count(4 + elem_size)?;
                (0..n).map(|_| self.u32()).collect()
            }
            ID_LIST_BITMAP => {
                let count = self.u32()? as usize;
                let first = self.u32()?;
                let span = self.u32()? as usize;
                let bytes = span.div_ceil(8);
                if count == 0
                    || count > span
                    || u64::from(first) + span as u64 > 1 << 32
                    || bytes > self.buf.len()
                    || count.saturating_mul(elem_size) > self.buf.len() - bytes
                {
                    return Err(SecAggError::Malformed("invalid id bitmap"));
                }
                let map = self.take(bytes)?;
                let bit = |i: usize| map[i / 8] >> (i % 8) & 1 == 1;
                let padding_clear = span.is_multiple_of(8) || map[bytes - 1] >> (span % 8) == 0;
                if !bit(0) || !bit(span - 1) || !padding_clear {
                    return Err(SecAggError::Malformed("invalid id bitmap"));
                }
                let ids: Vec<u32> = (0..span)
                    .filter(|&i| bit(i))
                    .map(|i| first + i as u32)
                    .collect();
                if ids.len() != count {
                    return Err(SecAggError::Malformed("id bitmap count mismatch"));
                }
                Ok(ids)
            }
            _ => Err(SecAggError::Malformed("unknown id list form")),
        }
    }
    pub(crate) fn finish(self) -> Result<()> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(SecAggError::Malformed("trailing bytes"))
        }
    }
}

//! Length-checked binary reader/writer shared by the message and config codecs.
//!
//! Every count read from the wire is checked against the bytes actually left
//! before anything is allocated, so a hostile length prefix cannot make us
//! allocate more than the input's own size.

use crate::error::{Result, SecAggError};

/// Wire format version written first in every encoded message and config.
pub const WIRE_VERSION: u8 = 1;

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
    pub(crate) fn finish(self) -> Vec<u8> {
        self.buf
    }
}

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
    pub(crate) fn finish(self) -> Result<()> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(SecAggError::Malformed("trailing bytes"))
        }
    }
}

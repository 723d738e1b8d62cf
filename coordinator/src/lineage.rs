//! The job's lineage as the engine keeps and serves it (see `fedrisk_rounds::lineage`):
//! one entry per session whose output the plan absorbed, and per skipped evaluation,
//! published by hash for agents to fetch, and made durable with the plan's state after it
//! (in the same transaction), so that a restarted coordinator serves the same lineage its
//! plan resumes from.

use std::collections::HashSet;

use fedrisk_rounds::LineageEntry;
use fedrisk_rounds::task::content_hash;

use crate::hub::Hub;
use crate::store::{JobId, Store, StoreError};

const ENTRY_PREFIX: &str = "lineage/";
const CONTENT_PREFIX: &str = "content/";

/// The lineage of the job in progress.
pub(crate) struct JobLineage {
    spec_hash: String,
    hashes: Vec<String>,
    /// Hashes of the certificates published and kept so far (each once per job).
    certificates: HashSet<String>,
    /// The blobs of the entries not yet durable.
    pending: Vec<(String, Vec<u8>)>,
}

impl JobLineage {
    /// The job's lineage so far, from the store, published with the job's specification.
    pub(crate) fn load(
        store: &Store,
        hub: &Hub,
        job: JobId,
        spec_json: &str,
    ) -> Result<Self, StoreError> {
        let spec = spec_json.as_bytes().to_vec();
        let spec_hash = content_hash(&spec);
        let mut contents = vec![(spec_hash.clone(), spec)];
        let mut hashes = Vec::new();
        for (_, blob) in store.checkpoints_under(job, ENTRY_PREFIX)? {
            let h = content_hash(&blob);
            hashes.push(h.clone());
            contents.push((h, blob));
        }
        let mut certificates = HashSet::new();
        for (_, blob) in store.checkpoints_under(job, CONTENT_PREFIX)? {
            let h = content_hash(&blob);
            certificates.insert(h.clone());
            contents.push((h, blob));
        }
        hub.publish(&contents);
        Ok(JobLineage {
            spec_hash,
            hashes,
            certificates,
            pending: Vec::new(),
        })
    }

    /// Hash of the job's specification as agents fetch it.
    pub(crate) fn spec_hash(&self) -> &str {
        &self.spec_hash
    }

    /// The entries' hashes, in order.
    pub(crate) fn hashes(&self) -> &[String] {
        &self.hashes
    }

    /// Appends an entry and the certificates it names (hash, DER), publishes them, and keeps
    /// them for the next durable write (a certificate already kept is skipped).
    pub(crate) fn push(
        &mut self,
        hub: &Hub,
        entry: &LineageEntry,
        certificates: &[(String, Vec<u8>)],
    ) {
        let bytes = entry.encode();
        let hash = content_hash(&bytes);
        let mut published = vec![(hash.clone(), bytes.clone())];
        self.pending
            .push((format!("{ENTRY_PREFIX}{:08}", self.hashes.len()), bytes));
        for (h, der) in certificates {
            if !self.certificates.insert(h.clone()) {
                continue;
            }
            self.pending
                .push((format!("{CONTENT_PREFIX}{h}"), der.clone()));
            published.push((h.clone(), der.clone()));
        }
        hub.publish(&published);
        self.hashes.push(hash);
    }

    /// The blobs to write with the plan's state.
    pub(crate) fn take_pending(&mut self) -> Vec<(String, Vec<u8>)> {
        std::mem::take(&mut self.pending)
    }
}

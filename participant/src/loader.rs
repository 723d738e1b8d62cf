//! The institution's rows from its data source (CSV, Parquet or PostgreSQL), for the round
//! kinds' cache.

use fedrisk_models::{DataSource, Dataset, LabelMode, Schema, load};
use fedrisk_rounds::{Loader, RoundError};

/// Loads the source under each job's schema.
pub struct SourceLoader {
    /// Where the rows are.
    pub source: DataSource,
}

impl Loader for SourceLoader {
    fn load(&mut self, schema: &Schema) -> Result<Dataset, RoundError> {
        let _progress =
            crate::progress::Progress::spinner(format!("loading {}", self.source.name().display()));
        load(&self.source, schema, LabelMode::Required).map_err(|e| RoundError::Data(e.to_string()))
    }
}

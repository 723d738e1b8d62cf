//! The institution's rows from a CSV file, for the round kinds' cache.

use std::path::PathBuf;

use fedrisk_models::{Dataset, LabelMode, Schema, load_csv};
use fedrisk_rounds::{Loader, RoundError};

/// Loads `path` under each job's schema.
pub struct CsvLoader {
    /// The data file.
    pub path: PathBuf,
}

impl Loader for CsvLoader {
    fn load(&mut self, schema: &Schema) -> Result<Dataset, RoundError> {
        load_csv(&self.path, schema, LabelMode::Required)
            .map_err(|e| RoundError::Data(e.to_string()))
    }
}

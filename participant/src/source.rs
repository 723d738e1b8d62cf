//! `--data` and its companions: a CSV or Parquet file, or a PostgreSQL database with
//! `--table` or `--query`. The database password comes from `--password-file` or the
//! `PGPASSWORD` environment variable, never from the command line.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use fedrisk_models::{DataSource, PgRead, PgSpec};

/// Where the rows are read from.
#[derive(clap::Args, Debug, Clone)]
pub struct SourceArgs {
    /// The data: a CSV file (header row required), a Parquet file (`.parquet`), or a
    /// PostgreSQL database `postgres://USER@HOST:PORT/DB` with --table or --query (the
    /// password in PGPASSWORD or --password-file, never in the URL).
    #[arg(long, value_name = "FILE|URL")]
    pub data: String,
    /// With a postgres:// --data: read every row of this table (`schema.table` allowed).
    #[arg(long, conflicts_with = "query")]
    pub table: Option<String>,
    /// With a postgres:// --data: read the rows of this query, e.g. `select * from loans
    /// where book = 'retail'`.
    #[arg(long)]
    pub query: Option<String>,
    /// A file holding the database password (default: the PGPASSWORD environment variable).
    #[arg(long, value_name = "FILE")]
    pub password_file: Option<PathBuf>,
    /// The root certificate (PEM) the database server's certificate must chain to, for
    /// `?sslmode=verify-full` (or `verify-ca`, or `require`, which then checks it too); the
    /// same as `sslrootcert=FILE` in the URL.
    #[arg(long, value_name = "FILE")]
    pub pg_ca: Option<PathBuf>,
}

impl SourceArgs {
    pub fn source(&self) -> Result<DataSource> {
        if !DataSource::is_postgres_url(&self.data) {
            if self.table.is_some() || self.query.is_some() {
                bail!("--table and --query go with a postgres:// --data, not a file");
            }
            return Ok(DataSource::file(std::path::Path::new(&self.data)));
        }
        let read = match (&self.table, &self.query) {
            (Some(t), None) => PgRead::Table(t.clone()),
            (None, Some(q)) => PgRead::Query(q.clone()),
            _ => bail!("a postgres:// --data needs --table TABLE or --query \"select ...\""),
        };
        Ok(DataSource::Postgres(PgSpec {
            url: self.data.clone(),
            password: password(self.password_file.as_ref())?,
            root_cert: self.pg_ca.clone(),
            read,
        }))
    }
}

/// The password from `file` (its first line) or PGPASSWORD; none if neither is given.
pub fn password(file: Option<&PathBuf>) -> Result<Option<String>> {
    match file {
        Some(f) => {
            let text = std::fs::read_to_string(f)
                .with_context(|| format!("--password-file {}", f.display()))?;
            Ok(Some(text.lines().next().unwrap_or_default().to_owned()))
        }
        None => Ok(std::env::var("PGPASSWORD").ok()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(data: &str, table: Option<&str>, query: Option<&str>) -> SourceArgs {
        SourceArgs {
            data: data.into(),
            table: table.map(Into::into),
            query: query.map(Into::into),
            password_file: None,
            pg_ca: None,
        }
    }

    #[test]
    fn files_urls_and_their_companions() {
        assert!(matches!(
            args("a.parquet", None, None).source().unwrap(),
            DataSource::Parquet(_)
        ));
        assert!(matches!(
            args("a.csv", None, None).source().unwrap(),
            DataSource::Csv(_)
        ));
        assert!(args("a.csv", Some("t"), None).source().is_err());
        assert!(args("postgres://u@h/db", None, None).source().is_err());
        let dir = tempfile::tempdir().unwrap();
        let pw = dir.path().join("pw");
        std::fs::write(&pw, "s3cret\n").unwrap();
        let mut a = args("postgres://u@h/db", Some("loans"), None);
        a.password_file = Some(pw);
        match a.source().unwrap() {
            DataSource::Postgres(spec) => {
                assert_eq!(spec.password.as_deref(), Some("s3cret"));
                assert_eq!(spec.read, PgRead::Table("loans".into()));
            }
            other => panic!("{other:?}"),
        }
    }
}

//! Data where institutions keep it: a real PostgreSQL server (initdb into a temporary folder,
//! `pg_ctl start` on a loopback port, as `nobody` when the test runs as root) and Parquet
//! files. Federations whose agents read PostgreSQL tables, and Parquet files, train the
//! same model as the CSV run; bad input from the database is refused with a located error;
//! scores are written back to a table and a Parquet file. PostgreSQL missing is a failure,
//! not a skip: `.ci/run` installs it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::Duration;

use arrow_array::{ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema as ArrowSchema};
use fedrisk_models::Schema;

use crate::harness::{
    Fed, JobOpts, free_port, participant_bin, read_json, secs, shared_data, tail,
};

/// A PostgreSQL server in a temporary folder, stopped on drop.
struct Postgres {
    _dir: tempfile::TempDir,
    data: PathBuf,
    bin: PathBuf,
    port: u16,
    as_nobody: bool,
    password_file: PathBuf,
}

const PASSWORD: &str = "fedrisk-test-pw";

/// The newest `/usr/lib/postgresql/*/bin` with `initdb`.
fn pg_bin() -> PathBuf {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((v, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, b)| b).unwrap_or_else(|| {
        panic!(
            "PostgreSQL server binaries not found (/usr/lib/postgresql/*/bin/initdb): \
             install the server (`apt-get install postgresql`; .ci/run does)"
        )
    })
}

fn check(out: Output, what: &str) -> Output {
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A server certificate for the test server and the CA that signed it, as PEM.
struct ServerTls {
    ca_pem: String,
    cert_pem: String,
    key_pem: String,
}

impl ServerTls {
    /// A fresh CA and a server certificate it signs, naming `names` (DNS names).
    fn generate(names: &[&str]) -> ServerTls {
        let (ca, ca_params, ca_key) = test_ca("fedrisk test database CA");
        let key = rcgen::KeyPair::generate().expect("server key");
        let mut params =
            rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .expect("server certificate parameters");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "fedrisk test database");
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let cert = params.signed_by(&key, &issuer).expect("signing");
        ServerTls {
            ca_pem: ca.pem(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }
}

/// A self-signed CA certificate with its parameters and key.
fn test_ca(name: &str) -> (rcgen::Certificate, rcgen::CertificateParams, rcgen::KeyPair) {
    let key = rcgen::KeyPair::generate().expect("CA key");
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    let cert = params.self_signed(&key).expect("self-signing");
    (cert, params, key)
}

impl Postgres {
    fn start() -> Postgres {
        Postgres::start_with(None)
    }

    /// A server with `ssl = on` and `tls`'s certificate when given; connections are logged.
    fn start_with(tls: Option<&ServerTls>) -> Postgres {
        let bin = pg_bin();
        let dir = tempfile::Builder::new()
            .prefix("fedrisk-pg-")
            .tempdir()
            .expect("tempdir");
        let as_nobody = Command::new("id")
            .arg("-u")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
            .unwrap_or(false);
        let password_file = dir.path().join("pw");
        std::fs::write(&password_file, format!("{PASSWORD}\n")).expect("password file");
        let mut ssl_opts = String::new();
        if let Some(t) = tls {
            use std::os::unix::fs::PermissionsExt;
            let cert = dir.path().join("server.crt");
            let key = dir.path().join("server.key");
            std::fs::write(&cert, &t.cert_pem).expect("server certificate");
            std::fs::write(&key, &t.key_pem).expect("server key");
            // The server refuses a key others can read.
            std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600))
                .expect("key permissions");
            ssl_opts = format!(
                " -c ssl=on -c ssl_cert_file={} -c ssl_key_file={} -c log_connections=on",
                cert.display(),
                key.display()
            );
        }
        if as_nobody {
            // The server refuses to run as root.
            check(
                Command::new("chown")
                    .args(["-R", "nobody"])
                    .arg(dir.path())
                    .output()
                    .expect("chown"),
                "chown",
            );
        }
        let pg = Postgres {
            data: dir.path().join("data"),
            _dir: dir,
            bin,
            port: free_port(),
            as_nobody,
            password_file,
        };
        pg.server_cmd(
            "initdb",
            &[
                "-D",
                pg.data.to_str().expect("utf-8"),
                "-U",
                "fedrisk",
                "--auth=scram-sha-256",
                "--pwfile",
                pg.password_file.to_str().expect("utf-8"),
                "-E",
                "UTF8",
                "--no-locale",
            ],
        );
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off{ssl_opts}",
            pg.port,
            pg._dir.path().display()
        );
        pg.server_cmd(
            "pg_ctl",
            &[
                "-D",
                pg.data.to_str().expect("utf-8"),
                "-l",
                pg._dir.path().join("server.log").to_str().expect("utf-8"),
                "-o",
                &opts,
                "-w",
                "-t",
                "60",
                "start",
            ],
        );
        pg
    }

    fn server_cmd(&self, tool: &str, args: &[&str]) -> Output {
        let exe = self.bin.join(tool);
        let mut cmd = if self.as_nobody {
            let mut c = Command::new("runuser");
            c.args(["-u", "nobody", "--"]).arg(&exe);
            c
        } else {
            Command::new(&exe)
        };
        cmd.args(args).current_dir(self._dir.path());
        let out = cmd
            .output()
            .unwrap_or_else(|e| panic!("running {tool}: {e}"));
        let log = std::fs::read_to_string(self._dir.path().join("server.log")).unwrap_or_default();
        assert!(
            out.status.success(),
            "{tool} failed ({}):\n{}\n{}\nserver log:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            tail(&log, 30)
        );
        out
    }

    fn url(&self) -> String {
        format!("postgres://fedrisk@127.0.0.1:{}/postgres", self.port)
    }

    /// The server's log so far.
    fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("server.log")).unwrap_or_default()
    }

    /// Runs SQL with psql (`\copy` included) and returns its output.
    fn psql(&self, sql: &str) -> String {
        let out = Command::new(self.bin.join("psql"))
            .args([
                "-X",
                "-q",
                "-At",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                "127.0.0.1",
            ])
            .args([
                "-p",
                &self.port.to_string(),
                "-U",
                "fedrisk",
                "-d",
                "postgres",
            ])
            .args(["-c", sql])
            .env("PGPASSWORD", PASSWORD)
            .output()
            .expect("psql");
        String::from_utf8_lossy(&check(out, sql).stdout).into_owned()
    }

    /// A table with the schema's columns (numbers as double precision, categories as text,
    /// the label as integer) and a `row_no` key, filled from a CSV in file order.
    fn load_table(&self, table: &str, csv: &Path, schema: &Schema) {
        let header = first_line(csv);
        let cols: Vec<String> = header
            .split(',')
            .map(|c| {
                let t = if c == schema.label.name {
                    "integer"
                } else if schema
                    .features
                    .iter()
                    .any(|f| f.name == c && !f.is_numeric())
                {
                    "text"
                } else {
                    "double precision"
                };
                format!("\"{c}\" {t}")
            })
            .collect();
        self.psql(&format!(
            "CREATE TABLE {table} (row_no bigserial primary key, {})",
            cols.join(", ")
        ));
        let quoted: Vec<String> = header.split(',').map(|c| format!("\"{c}\"")).collect();
        // The file's missing tokens (`NA`, ...) become empty fields, which COPY reads as NULL.
        let text = std::fs::read_to_string(csv).expect("csv");
        let cleaned: String = text
            .lines()
            .map(|l| {
                l.split(',')
                    .map(|f| {
                        if schema.is_missing_token(f.trim()) {
                            ""
                        } else {
                            f
                        }
                    })
                    .collect::<Vec<_>>()
                    .join(",")
                    + "\n"
            })
            .collect();
        let copy = csv.with_extension(format!("{table}.nulls.csv"));
        std::fs::write(&copy, cleaned).expect("writing the cleaned copy");
        self.psql(&format!(
            "\\copy {table} ({}) FROM '{}' WITH (FORMAT csv, HEADER true)",
            quoted.join(","),
            copy.display()
        ));
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let exe = self.bin.join("pg_ctl");
        let mut cmd = if self.as_nobody {
            let mut c = Command::new("runuser");
            c.args(["-u", "nobody", "--"]).arg(&exe);
            c
        } else {
            Command::new(&exe)
        };
        let _ = cmd
            .arg("-D")
            .arg(&self.data)
            .args(["-m", "immediate", "stop"])
            .output();
    }
}

fn first_line(path: &Path) -> String {
    std::fs::read_to_string(path)
        .expect("csv")
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// The same rows as a Parquet file in row groups of 500: numbers as Float64, categories as
/// strings, the label as Int64, empty fields as NULL.
fn write_parquet(csv: &Path, schema: &Schema, out: &Path) {
    let text = std::fs::read_to_string(csv).expect("csv");
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().expect("header").split(',').collect();
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    let mut fields = Vec::new();
    let mut arrays: Vec<ArrayRef> = Vec::new();
    for (j, name) in header.iter().enumerate() {
        let col = rows.iter().map(|r| r[j]);
        if *name == schema.label.name {
            fields.push(Field::new(*name, DataType::Int64, true));
            arrays.push(Arc::new(Int64Array::from(
                col.map(|v| v.parse::<i64>().ok()).collect::<Vec<_>>(),
            )));
        } else if schema
            .features
            .iter()
            .any(|f| f.name == *name && !f.is_numeric())
        {
            fields.push(Field::new(*name, DataType::Utf8, true));
            arrays.push(Arc::new(StringArray::from(
                col.map(|v| (!v.is_empty()).then_some(v))
                    .collect::<Vec<_>>(),
            )));
        } else {
            fields.push(Field::new(*name, DataType::Float64, true));
            arrays.push(Arc::new(Float64Array::from(
                col.map(|v| v.parse::<f64>().ok()).collect::<Vec<_>>(),
            )));
        }
    }
    let schema = Arc::new(ArrowSchema::new(fields));
    let batch = RecordBatch::try_new(schema.clone(), arrays).expect("batch");
    let props = parquet::file::properties::WriterProperties::builder()
        .set_max_row_group_row_count(Some(500))
        .build();
    let mut w = parquet::arrow::ArrowWriter::try_new(
        std::fs::File::create(out).expect("parquet file"),
        schema,
        Some(props),
    )
    .expect("writer");
    w.write(&batch).expect("write");
    w.close().expect("close");
}

/// Runs a 3-round job with each institution's agent started with `args(institution)` (its
/// data arguments) and returns the final model's coefficients and intercept.
fn federation(
    seed: u64,
    data_args: impl Fn(&Fed, &str) -> Vec<String>,
    env: &[(&str, &str)],
) -> (Vec<f64>, f64) {
    federation_in(Fed::new(seed, 3000, 3), 3, data_args, env)
}

/// [`federation`] on a prepared federation folder, every institution taking part.
fn federation_in(
    fed: Fed,
    rounds: u32,
    data_args: impl Fn(&Fed, &str) -> Vec<String>,
    env: &[(&str, &str)],
) -> (Vec<f64>, f64) {
    fed.write_config(&JobOpts {
        name: "sources",
        rounds,
        min_participants: u32::try_from(fed.institutions.len()).expect("institutions"),
        ..JobOpts::default()
    });
    let coord = fed.serve();
    let mut agents: Vec<_> = fed
        .institutions
        .iter()
        .map(|n| {
            let args = data_args(&fed, n);
            let extra: Vec<&str> = args[1..].iter().map(String::as_str).collect();
            fed.participant_as(
                n,
                &fed.institution_dir(n),
                n,
                Path::new(&args[0]),
                env,
                &extra,
            )
        })
        .collect();
    let status = fed.wait_job_end(1, Duration::from_secs(180), &coord);
    assert_eq!(
        status["state"],
        "completed",
        "{status}\n{}",
        agents
            .iter()
            .map(|a| tail(&a.stderr(), 20))
            .collect::<Vec<_>>()
            .join("\n")
    );
    for a in &mut agents {
        let s = a.wait_exit(Duration::from_secs(30));
        assert!(s.success(), "{}: {s}\n{}", a.name, tail(&a.stderr(), 20));
    }
    let model = read_json(&fed.export(1, rounds));
    let coefs = model["coefficients"]
        .as_array()
        .expect("coefficients")
        .iter()
        .map(|v| v.as_f64().expect("number"))
        .collect();
    (coefs, model["intercept"].as_f64().expect("intercept"))
}

fn assert_same_model(a: &(Vec<f64>, f64), b: &(Vec<f64>, f64), what: &str) {
    assert_eq!(a.0.len(), b.0.len(), "{what}");
    for (x, y) in a.0.iter().zip(&b.0).chain(std::iter::once((&a.1, &b.1))) {
        assert!((x - y).abs() <= 1e-9, "{what}: {x} vs {y}\n{a:?}\n{b:?}");
    }
}

fn participant(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(participant_bin());
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("running fedrisk-participant")
}

fn stderr_of_failure(out: Output, what: &str) -> String {
    assert!(
        !out.status.success(),
        "{what} should fail:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn agents_reading_postgres_and_parquet_train_the_csv_runs_model() {
    const SEED: u64 = 91;
    let pg = Postgres::start();
    let url = pg.url();
    // The data every federation of this seed generates, loaded into tables and Parquet files.
    let staging = Fed::new(SEED, 3000, 3);
    let schema = Schema::load(&staging.path("data/schema.json")).expect("schema");
    let parquet_dir = tempfile::tempdir().expect("tempdir");
    for n in &staging.institutions {
        let csv = staging.data_file(n);
        pg.load_table(n, &csv, &schema);
        write_parquet(
            &csv,
            &schema,
            &parquet_dir.path().join(format!("{n}.parquet")),
        );
    }

    let csv_model = federation(
        SEED,
        |fed, n| vec![fed.data_file(n).display().to_string()],
        &[],
    );
    let pg_model = federation(
        SEED,
        |_, n| {
            vec![
                url.clone(),
                "--query".into(),
                format!("select * from {n} order by row_no"),
            ]
        },
        &[("PGPASSWORD", PASSWORD)],
    );
    assert_same_model(&csv_model, &pg_model, "PostgreSQL agents");
    let pq = parquet_dir.path().to_owned();
    let parquet_model = federation(
        SEED,
        |_, n| vec![pq.join(format!("{n}.parquet")).display().to_string()],
        &[],
    );
    assert_same_model(&csv_model, &parquet_model, "Parquet agents");
    println!("models equal across CSV, PostgreSQL and Parquet: {csv_model:?}");

    // `check`, `schema infer` and `score` with each source; scores written back.
    let inst = &staging.institutions[0];
    let schema_path = staging.path("data/schema.json");
    let schema_arg = schema_path.to_str().expect("utf-8");
    let pw_file = pg.password_file.to_str().expect("utf-8");
    let out = participant(
        &[
            "check",
            "--data",
            &url,
            "--table",
            inst,
            "--schema",
            schema_arg,
            "--password-file",
            pw_file,
        ],
        &[],
    );
    let text = String::from_utf8_lossy(&check(out, "check on a table").stdout).into_owned();
    assert!(text.contains("OK:"), "{text}");
    let inferred = staging.path("inferred.json");
    check(
        participant(
            &[
                "schema",
                "infer",
                "--data",
                &url,
                "--table",
                inst,
                "--drop",
                "row_no",
                "--out",
                inferred.to_str().expect("utf-8"),
            ],
            &[("PGPASSWORD", PASSWORD)],
        ),
        "schema infer on a table",
    );
    let inferred = Schema::load(&inferred).expect("inferred schema");
    assert_eq!(
        inferred
            .features
            .iter()
            .map(|f| (&f.name, f.is_numeric()))
            .collect::<Vec<_>>(),
        schema
            .features
            .iter()
            .map(|f| (&f.name, f.is_numeric()))
            .collect::<Vec<_>>()
    );
    let model = staging.path("local.json");
    check(
        participant(
            &[
                "train",
                "--data",
                staging.data_file(inst).to_str().expect("utf-8"),
                "--schema",
                schema_arg,
                "--out",
                model.to_str().expect("utf-8"),
            ],
            &[],
        ),
        "train",
    );
    let model_arg = model.to_str().expect("utf-8");
    let csv_scores = staging.path("scores.csv");
    check(
        participant(
            &[
                "score",
                "--model",
                model_arg,
                "--data",
                staging.data_file(inst).to_str().expect("utf-8"),
                "--out",
                csv_scores.to_str().expect("utf-8"),
            ],
            &[],
        ),
        "score a CSV",
    );
    let csv_sum: f64 = std::fs::read_to_string(&csv_scores)
        .expect("scores")
        .lines()
        .skip(1)
        .map(|l| {
            l.split(',')
                .nth(1)
                .and_then(|p| p.parse::<f64>().ok())
                .expect("probability")
        })
        .sum();
    check(
        participant(
            &[
                "score",
                "--model",
                model_arg,
                "--data",
                &url,
                "--query",
                &format!("select * from {inst} order by row_no"),
                "--id",
                "row_no",
                "--out",
                &url,
                "--out-table",
                "scores_back",
            ],
            &[("PGPASSWORD", PASSWORD)],
        ),
        "score a table into a table",
    );
    let back = pg.psql("select count(*), sum(probability), min(row_no::bigint) from scores_back");
    let fields: Vec<&str> = back.trim().split('|').collect();
    let rows = std::fs::read_to_string(staging.data_file(inst))
        .expect("csv")
        .lines()
        .count()
        - 1;
    assert_eq!(fields[0], rows.to_string(), "{back}");
    let pg_sum: f64 = fields[1].parse().expect("sum");
    assert!((pg_sum - csv_sum).abs() < 1e-6, "{pg_sum} vs {csv_sum}");
    // Writing into a table that exists is refused and leaves it as it was.
    let again = stderr_of_failure(
        participant(
            &[
                "score",
                "--model",
                model_arg,
                "--data",
                &url,
                "--table",
                inst,
                "--out",
                &url,
                "--out-table",
                "scores_back",
            ],
            &[("PGPASSWORD", PASSWORD)],
        ),
        "scoring into an existing table",
    );
    assert!(
        again.contains("creating the table") && again.contains("already exists"),
        "{again}"
    );
    let pq_scores = staging.path("scores.parquet");
    let pq_in = parquet_dir.path().join(format!("{inst}.parquet"));
    let done = check(
        participant(
            &[
                "score",
                "--model",
                model_arg,
                "--data",
                pq_in.to_str().expect("utf-8"),
                "--out",
                pq_scores.to_str().expect("utf-8"),
            ],
            &[],
        ),
        "score a Parquet file into a Parquet file",
    );
    assert!(String::from_utf8_lossy(&done.stdout).contains(&format!("{rows} scores")));
    assert!(pq_scores.is_file());
}

#[test]
fn bad_input_from_postgres_is_refused_with_a_located_error() {
    let pg = Postgres::start();
    let url = pg.url();
    let staging = Fed::new(92, 600, 3);
    let schema_path = staging.path("data/schema.json");
    let schema = Schema::load(&schema_path).expect("schema");
    let inst = &staging.institutions[0];
    pg.load_table("loans", &staging.data_file(inst), &schema);
    let numeric = schema
        .features
        .iter()
        .find(|f| f.is_numeric() && !f.missing)
        .expect("a numeric feature without missing values")
        .name
        .clone();
    let categorical = schema
        .features
        .iter()
        .find(|f| !f.is_numeric())
        .expect("a categorical feature")
        .name
        .clone();
    pg.psql(&format!(
        "CREATE TABLE bad AS SELECT * FROM loans; \
         ALTER TABLE bad ALTER COLUMN \"{numeric}\" TYPE text; \
         UPDATE bad SET \"{numeric}\" = '12x' WHERE row_no = 5; \
         UPDATE bad SET \"{numeric}\" = NULL WHERE row_no = 7"
    ));
    let env = [("PGPASSWORD", PASSWORD)];
    let schema_arg = schema_path.to_str().expect("utf-8");
    let check_with = |extra: &[&str]| {
        let mut args = vec!["check", "--data", &url, "--schema", schema_arg];
        args.extend_from_slice(extra);
        stderr_of_failure(participant(&args, &env), &format!("check {extra:?}"))
    };
    let e = check_with(&[
        "--query",
        "select * from bad order by row_no",
        "--id",
        "row_no",
    ]);
    let name = format!("{url} (query)");
    assert!(
        e.contains(&format!("{name}: row 5, id `5`, column"))
            && e.contains(&format!("`{numeric}`: expected a number, found `12x`")),
        "{e}"
    );
    assert!(
        e.contains(&format!("{name}: row 7, id `7`, column"))
            && e.contains("missing value, but the schema does not allow"),
        "{e}"
    );
    // A missing column, a refused type, a query error.
    let e = check_with(&[
        "--query",
        &format!("select row_no, \"{numeric}\" from loans"),
    ]);
    assert!(e.contains(&format!("{name}: no column `")), "{e}");
    let e = check_with(&["--query", "select * from no_such_table"]);
    assert!(
        e.contains(&format!("{name}: the query fails: ERROR 42P01")) && e.contains("no_such_table"),
        "{e}"
    );
    // A boolean where the schema wants a category: refused naming the column.
    pg.psql(&format!(
        "CREATE TABLE typed AS SELECT * FROM loans; \
         ALTER TABLE typed ALTER COLUMN \"{categorical}\" TYPE boolean USING \"{categorical}\" IS NULL"
    ));
    let e = check_with(&["--table", "typed"]);
    assert!(
        e.contains(&format!(
            "column `{categorical}` is of type bool (PostgreSQL)"
        )),
        "{e}"
    );
    // A wrong password, and a server that is not there.
    let e = stderr_of_failure(
        participant(
            &[
                "check", "--data", &url, "--table", "loans", "--schema", schema_arg,
            ],
            &[("PGPASSWORD", "wrong")],
        ),
        "a wrong password",
    );
    assert!(
        e.contains("cannot connect") && e.contains("password"),
        "{e}"
    );
    assert!(!e.contains("wrong"), "the password is never printed: {e}");
    let closed = free_port();
    let gone = format!("postgres://fedrisk@127.0.0.1:{closed}/postgres");
    let e = stderr_of_failure(
        participant(
            &[
                "check", "--data", &gone, "--table", "loans", "--schema", schema_arg,
            ],
            &env,
        ),
        "an unreachable server",
    );
    assert!(
        e.contains(&format!("{gone} (table loans): cannot connect")),
        "{e}"
    );
}

#[test]
fn tls_to_postgres_follows_sslmode_and_the_root_certificate() {
    // The server's certificate names `localhost` only, so verify-full holds on `localhost`
    // and not on `127.0.0.1`, where verify-ca (chain only) still holds.
    let tls = ServerTls::generate(&["localhost"]);
    let pg = Postgres::start_with(Some(&tls));
    let plain = Postgres::start();
    let staging = Fed::new(93, 600, 3);
    let schema_path = staging.path("data/schema.json");
    let schema = Schema::load(&schema_path).expect("schema");
    let inst = &staging.institutions[0];
    pg.load_table("loans", &staging.data_file(inst), &schema);
    plain.load_table("loans", &staging.data_file(inst), &schema);
    let certs = tempfile::tempdir().expect("tempdir");
    let ca = certs.path().join("db-ca.pem");
    std::fs::write(&ca, &tls.ca_pem).expect("CA file");
    let wrong_ca = certs.path().join("other-ca.pem");
    std::fs::write(&wrong_ca, test_ca("another CA").0.pem()).expect("other CA file");
    let (ca_arg, wrong_arg) = (
        ca.to_str().expect("utf-8"),
        wrong_ca.to_str().expect("utf-8"),
    );
    let schema_arg = schema_path.to_str().expect("utf-8");
    let pw_file = pg.password_file.to_str().expect("utf-8");
    let rows = std::fs::read_to_string(staging.data_file(inst))
        .expect("csv")
        .lines()
        .count()
        - 1;
    let mut outputs = Vec::new();
    let mut run = |url: &str, extra: &[&str]| {
        let mut args = vec![
            "check",
            "--data",
            url,
            "--table",
            "loans",
            "--schema",
            schema_arg,
            "--password-file",
            pw_file,
        ];
        args.extend_from_slice(extra);
        assert!(!args.iter().any(|a| a.contains(PASSWORD)));
        let out = participant(&args, &[]);
        outputs.push(format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
        out
    };
    let ok = |out: Output, what: &str| {
        let text = String::from_utf8_lossy(&check(out, what).stdout).into_owned();
        assert!(text.contains(&format!("OK: {rows} rows")), "{what}: {text}");
    };
    let host =
        |h: &str, query: &str| format!("postgres://fedrisk@{h}:{}/postgres?{query}", pg.port);

    // verify-full with the right CA, given either way, reads the data.
    ok(
        run(
            &host("localhost", "sslmode=verify-full"),
            &["--pg-ca", ca_arg],
        ),
        "verify-full with --pg-ca",
    );
    ok(
        run(
            &host(
                "localhost",
                &format!("sslmode=verify-full&sslrootcert={ca_arg}"),
            ),
            &[],
        ),
        "verify-full with sslrootcert",
    );
    // verify-ca checks the chain only; require without a root checks nothing but TLS.
    ok(
        run(
            &host("127.0.0.1", "sslmode=verify-ca"),
            &["--pg-ca", ca_arg],
        ),
        "verify-ca on an address the certificate does not name",
    );
    ok(run(&host("127.0.0.1", "sslmode=require"), &[]), "require");
    // The default (prefer) uses TLS where the server offers it.
    ok(run(&pg.url(), &[]), "prefer");
    let tls_logins = pg
        .log()
        .lines()
        .filter(|l| l.contains("connection authorized") && l.contains("SSL enabled"))
        .count();
    assert!(
        tls_logins >= 5,
        "every connection above used TLS:\n{}",
        tail(&pg.log(), 40)
    );

    // A wrong CA: refused, naming the server and the root certificate.
    let name = format!(
        "postgres://fedrisk@localhost:{}/postgres (table loans)",
        pg.port
    );
    let e = stderr_of_failure(
        run(
            &host("localhost", "sslmode=verify-full"),
            &["--pg-ca", wrong_arg],
        ),
        "verify-full with another CA",
    );
    assert!(
        e.contains(&format!("{name}: cannot connect: the server's certificate is not signed by the root certificate {wrong_arg}")),
        "{e}"
    );
    // require with a root certificate checks it too (libpq's rule).
    let e = stderr_of_failure(
        run(
            &host("localhost", "sslmode=require"),
            &["--pg-ca", wrong_arg],
        ),
        "require with another CA",
    );
    assert!(e.contains("is not signed by the root certificate"), "{e}");
    // verify-full on an address the certificate does not name.
    let e = stderr_of_failure(
        run(
            &host("127.0.0.1", "sslmode=verify-full"),
            &["--pg-ca", ca_arg],
        ),
        "verify-full on 127.0.0.1",
    );
    assert!(
        e.contains("cannot connect: the server's certificate does not name the host"),
        "{e}"
    );
    // verify-full without any root certificate is refused before connecting.
    let e = stderr_of_failure(
        run(&host("localhost", "sslmode=verify-full"), &[]),
        "verify-full without a root",
    );
    assert!(
        e.contains("sslmode=verify-full needs the root certificate"),
        "{e}"
    );

    // sslmode=require against a server without TLS: refused, naming it.
    let plain_url = format!("{}?sslmode=require", plain.url());
    let e = stderr_of_failure(run(&plain_url, &[]), "require against a server without TLS");
    assert!(
        e.contains(&format!(
            "{} (table loans): cannot connect: the server does not offer TLS, and sslmode=require asks for it",
            plain.url()
        )),
        "{e}"
    );
    // prefer falls back to plain text there.
    ok(
        run(&plain.url(), &[]),
        "prefer against a server without TLS",
    );

    // The password is never printed, whatever happened.
    for text in &outputs {
        assert!(
            !text.contains(PASSWORD),
            "the password was printed:\n{text}"
        );
    }
}

/// A federation folder whose institutions hold the taiwan data set's participant files (the
/// five names of the generated demo federation are taiwan's), with the schema inferred from
/// the pooled training rows. Missing data is a failure.
fn taiwan_fed() -> Fed {
    let data = shared_data().join("taiwan");
    let pooled = data.join("pooled_train.csv");
    assert!(
        pooled.is_file() && data.join("participants").is_dir(),
        "{} is missing: this test needs the shared data (set FEDRISK_SHARED_DATA)",
        data.display()
    );
    let fed = Fed::new(94, 500, 5);
    for n in &fed.institutions {
        let src = data.join(format!("participants/{n}.csv"));
        std::fs::copy(&src, fed.data_file(n))
            .unwrap_or_else(|e| panic!("{}: {e} (taiwan's institutions)", src.display()));
    }
    let schema =
        fedrisk_models::schema::infer(&pooled, &fedrisk_models::InferOptions::new("default", "1"))
            .expect("taiwan schema");
    schema
        .save(&fed.path("data/schema.json"))
        .expect("writing the schema");
    fed
}

#[test]
#[ignore = "needs ../shared/data; run with --ignored"]
fn taiwan_from_postgres_parquet_and_csv_trains_one_model() {
    const ROUNDS: u32 = 3;
    let started = std::time::Instant::now();
    let staging = taiwan_fed();
    let pg = Postgres::start();
    let url = pg.url();
    let schema = Schema::load(&staging.path("data/schema.json")).expect("schema");
    let parquet_dir = tempfile::tempdir().expect("tempdir");
    for n in &staging.institutions {
        let csv = staging.data_file(n);
        pg.load_table(n, &csv, &schema);
        write_parquet(
            &csv,
            &schema,
            &parquet_dir.path().join(format!("{n}.parquet")),
        );
    }
    let rows: String = pg.psql(&format!(
        "select {}",
        staging
            .institutions
            .iter()
            .map(|n| format!("(select count(*) from {n})"))
            .collect::<Vec<_>>()
            .join(" + ")
    ));
    assert_eq!(
        rows.trim(),
        "24000",
        "taiwan's 24,000 training rows in the tables"
    );
    let csv_model = federation_in(
        taiwan_fed(),
        ROUNDS,
        |fed, n| vec![fed.data_file(n).display().to_string()],
        &[],
    );
    let pg_model = federation_in(
        taiwan_fed(),
        ROUNDS,
        |_, n| {
            vec![
                url.clone(),
                "--query".into(),
                format!("select * from {n} order by row_no"),
            ]
        },
        &[("PGPASSWORD", PASSWORD)],
    );
    assert_same_model(&csv_model, &pg_model, "taiwan, PostgreSQL agents");
    let pq = parquet_dir.path().to_owned();
    let parquet_model = federation_in(
        taiwan_fed(),
        ROUNDS,
        |_, n| vec![pq.join(format!("{n}.parquet")).display().to_string()],
        &[],
    );
    assert_same_model(&csv_model, &parquet_model, "taiwan, Parquet agents");
    // One federation of all three: two agents on PostgreSQL, two on Parquet, one on CSV.
    let mixed_model = federation_in(
        taiwan_fed(),
        ROUNDS,
        |fed, n| match fed.institutions.iter().position(|i| i == n) {
            Some(0 | 1) => vec![
                url.clone(),
                "--query".into(),
                format!("select * from {n} order by row_no"),
            ],
            Some(2 | 3) => vec![pq.join(format!("{n}.parquet")).display().to_string()],
            _ => vec![fed.data_file(n).display().to_string()],
        },
        &[("PGPASSWORD", PASSWORD)],
    );
    assert_same_model(&csv_model, &mixed_model, "taiwan, mixed agents");
    println!(
        "taiwan: models equal across CSV, PostgreSQL, Parquet and mixed agents ({} \
         coefficients, {ROUNDS} rounds) in {:.1} s",
        csv_model.0.len(),
        secs(started)
    );
}

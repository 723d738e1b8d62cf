//! Shared machinery: finding the release binaries, child processes that die with the test,
//! a federation in a temporary folder (data, PKI, coordinator configuration) and the
//! operator CLI.

use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use fedrisk_models::synth::{InstitutionSpec, SynthConfig, generate};
use serde_json::Value;

/// `<target>/release/<name>`, next to the test binary's `deps/` folder.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let dir = exe
        .parent()
        .and_then(|deps| {
            if deps.file_name().is_some_and(|n| n == "deps") {
                deps.parent()
            } else {
                Some(deps)
            }
        })
        .expect("test binary folder")
        .to_path_buf();
    // The binaries are release builds; a debug test run still uses `<target>/release/`.
    let candidates = [
        dir.join(name),
        dir.parent()
            .map(|t| t.join("release").join(name))
            .unwrap_or_default(),
    ];
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .unwrap_or_else(|| {
            panic!(
                "{} not found: build the binaries first: cargo build --release -p fedrisk-coordinator-cli -p fedrisk-participant --features fedrisk-participant/test-faults",
                candidates[0].display()
            )
        })
}

pub fn coordinator_bin() -> PathBuf {
    bin("fedrisk-coordinator")
}

pub fn participant_bin() -> PathBuf {
    bin("fedrisk-participant")
}

/// The shared real data (`FEDRISK_SHARED_DATA`, default `<workspace>/../shared/data`).
pub fn shared_data() -> PathBuf {
    match std::env::var_os("FEDRISK_SHARED_DATA") {
        Some(p) => PathBuf::from(p),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data"),
    }
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local_addr").port()
}

/// Runs a command to completion and panics with its output if it fails.
pub fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A finished command's stdout then stderr, as text.
pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A small deterministic generator: test data and schedules replay from their seed.
pub struct Lcg(pub u64);

impl Lcg {
    /// The next state.
    pub fn step(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0
    }
    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.step() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Uniform in 0..n.
    pub fn below(&mut self, n: u64) -> u64 {
        (self.step() >> 33) % n
    }
}

/// Last `n` lines of a text.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A child process with its stdout and stderr in files; SIGKILLed and reaped on drop, so no
/// test leaves processes behind, even when it panics.
pub struct Proc {
    pub name: String,
    child: Child,
    pub stdout_path: PathBuf,
    pub stderr_path: PathBuf,
    status: Option<ExitStatus>,
    /// Leads its own process group (whose members are killed with it).
    group: bool,
}

impl Proc {
    pub fn spawn(name: &str, cmd: Command, log_dir: &Path) -> Proc {
        Self::spawn_inner(name, cmd, log_dir, false)
    }

    /// A process that starts processes of its own (`simulate --processes`): it leads a new
    /// process group, and the whole group is SIGKILLed with it.
    pub fn spawn_group(name: &str, mut cmd: Command, log_dir: &Path) -> Proc {
        use std::os::unix::process::CommandExt;
        cmd.process_group(0);
        Self::spawn_inner(name, cmd, log_dir, true)
    }

    fn spawn_inner(name: &str, mut cmd: Command, log_dir: &Path, group: bool) -> Proc {
        std::fs::create_dir_all(log_dir).expect("log dir");
        // A restarted process appends to a fresh pair of files.
        let mut k = 0;
        let (stdout_path, stderr_path) = loop {
            let suffix = if k == 0 {
                String::new()
            } else {
                format!(".{k}")
            };
            let o = log_dir.join(format!("{name}{suffix}.out"));
            let e = log_dir.join(format!("{name}{suffix}.log"));
            if !o.exists() && !e.exists() {
                break (o, e);
            }
            k += 1;
        };
        cmd.stdin(Stdio::null())
            .stdout(File::create(&stdout_path).expect("stdout file"))
            .stderr(File::create(&stderr_path).expect("stderr file"))
            .env("NO_COLOR", "1");
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {cmd:?}: {e}"));
        Proc {
            name: name.to_string(),
            child,
            stdout_path,
            stderr_path,
            status: None,
            group,
        }
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its peak resident memory so far (`VmHWM`), in MiB.
    pub fn peak_rss_mib(&self) -> f64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map(|kb| kb / 1024.0)
            .expect("VmHWM in /proc/PID/status (Linux)")
    }

    pub fn stdout(&self) -> String {
        std::fs::read_to_string(&self.stdout_path).unwrap_or_default()
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// SIGKILL (no clean shutdown) and reap.
    pub fn kill(&mut self) {
        if self.group {
            // The group's other members may outlive a leader that already exited.
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", self.child.id())])
                .stderr(Stdio::null())
                .status();
        }
        if self.status.is_none() {
            let _ = self.child.kill();
            self.status = self.child.wait().ok();
        }
    }

    pub fn try_status(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().ok().flatten();
        }
        self.status
    }

    /// Waits for the process to exit; panics with its log after `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let end = Instant::now() + timeout;
        loop {
            if let Some(s) = self.try_status() {
                return s;
            }
            if Instant::now() > end {
                panic!(
                    "{} did not exit within {timeout:?}; its log ends with:\n{}",
                    self.name,
                    tail(&self.stderr(), 30)
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until the process's stderr contains `needle`; panics with the log after `timeout`.
    pub fn wait_for_log(&mut self, needle: &str, timeout: Duration) {
        self.wait_for(needle, timeout, false)
    }

    pub fn wait_for_stdout(&mut self, needle: &str, timeout: Duration) {
        self.wait_for(needle, timeout, true)
    }

    fn wait_for(&mut self, needle: &str, timeout: Duration, stdout: bool) {
        let end = Instant::now() + timeout;
        loop {
            let text = if stdout { self.stdout() } else { self.stderr() };
            if text.contains(needle) {
                return;
            }
            if let Some(s) = self.try_status() {
                panic!(
                    "{} exited ({s}) before printing `{needle}`:\nstdout:\n{}\nstderr:\n{}",
                    self.name,
                    tail(&self.stdout(), 20),
                    tail(&self.stderr(), 30)
                );
            }
            if Instant::now() > end {
                panic!(
                    "{} did not print `{needle}` within {timeout:?}:\nstdout:\n{}\nstderr:\n{}",
                    self.name,
                    tail(&self.stdout(), 20),
                    tail(&self.stderr(), 30)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One generated institution per name, each with its own sector mix (non-IID).
pub fn synth_config(seed: u64, train_rows: usize, test_rows: usize, n: usize) -> SynthConfig {
    if n == 5 {
        return SynthConfig::demo(seed, train_rows, test_rows);
    }
    let institutions = (0..n)
        .map(|i| {
            let mut mix = [0.5; 6];
            mix[i % 6] += 3.0;
            mix[(i / 6) % 6] += 1.0;
            InstitutionSpec {
                name: format!("inst_{:02}", i + 1),
                // Sizes from 1x to 2x, so institutions differ.
                share: 1.0 + (i % 5) as f64 * 0.25,
                sector_mix: mix,
                income_scale: 0.6 + (i % 7) as f64 * 0.1,
            }
        })
        .collect::<Vec<_>>();
    let total: f64 = institutions.iter().map(|s| s.share).sum();
    SynthConfig {
        seed,
        train_rows,
        test_rows,
        institutions: institutions
            .into_iter()
            .map(|s| InstitutionSpec {
                share: s.share / total,
                ..s
            })
            .collect(),
    }
}

/// Job settings for the coordinator's `[job]` table.
pub struct JobOpts {
    pub name: &'static str,
    pub rounds: u32,
    pub min_participants: u32,
    pub expected_participants: Option<u32>,
    pub stage_deadline_ms: u64,
    /// `wait_for_participants_ms` of the job, if set.
    pub wait_for_participants_ms: Option<u64>,
    /// Extra `key = value` lines of `[job.settings]`.
    pub settings: &'static str,
    /// Extra `key = value` lines of `[job]` (threshold, max_attempts, ...).
    pub job_extra: &'static str,
}

impl Default for JobOpts {
    fn default() -> Self {
        Self {
            name: "pd-test",
            rounds: 3,
            min_participants: 3,
            expected_participants: None,
            stage_deadline_ms: 15_000,
            wait_for_participants_ms: None,
            settings: "algorithm = \"newton\"",
            job_extra: "",
        }
    }
}

/// A federation in a temporary folder, set up as README.md tells an operator and the data
/// teams to: generated non-IID data; the CA in `ca/` (the operator's offline folder); the
/// coordinator's folder `pki/` (`ca.pem`, `coordinator.pem`, `coordinator.key`,
/// `roster.json` and the signed certificates, no other key); one folder per institution,
/// `institutions/NAME/`, where `fedrisk-participant keygen` made its key and its request,
/// signed with `certs sign` (roster ids 1.. in institution order), with `NAME.pem` and
/// `ca.pem` sent back; the operator's own identity in `ops/`; and a coordinator
/// configuration on a free loopback port.
pub struct Fed {
    dir: Option<tempfile::TempDir>,
    pub root: PathBuf,
    pub port: u16,
    pub institutions: Vec<String>,
}

impl Fed {
    pub fn new(seed: u64, train_rows: usize, n: usize) -> Fed {
        let dir = tempfile::Builder::new()
            .prefix("fedrisk-it-")
            .tempdir()
            .expect("tempdir");
        let root = dir.path().to_path_buf();
        let cfg = synth_config(seed, train_rows, train_rows / 5, n);
        generate(&cfg)
            .write_dir(&root.join("data"))
            .expect("writing generated data");
        let institutions: Vec<String> = cfg.institutions.iter().map(|i| i.name.clone()).collect();
        let fed = Fed {
            dir: Some(dir),
            root,
            port: free_port(),
            institutions,
        };
        fed.certs(&[
            "init",
            "--ca-dir",
            "ca",
            "--dir",
            "pki",
            "--federation",
            "testfed",
        ]);
        for name in &fed.institutions {
            fed.enrol(name);
        }
        fed.certs(&[
            "issue", "--ca-dir", "ca", "--dir", "pki", "--name", "ops", "--role", "operator",
            "--out", "ops",
        ]);
        fed
    }

    /// An institution's own folder: its key, its certificate and the federation CA's.
    pub fn institution_dir(&self, name: &str) -> PathBuf {
        self.path(&format!("institutions/{name}"))
    }

    /// Enrols `name` in this federation (see [`Fed::enrol_with`]) with its own folder.
    pub fn enrol(&self, name: &str) -> PathBuf {
        let dir = self.institution_dir(name);
        self.enrol_with("ca", "pki", name, &dir);
        dir
    }

    /// The README's enrolment: `fedrisk-participant keygen` in the institution's folder
    /// `dir`, `certs sign` of its request with the CA in `ca_dir` into the coordinator's
    /// folder `pki_dir` (both relative to the federation folder), and `NAME.pem` and that
    /// folder's `ca.pem` copied back to `dir`.
    pub fn enrol_with(&self, ca_dir: &str, pki_dir: &str, name: &str, dir: &Path) {
        run_ok(
            Command::new(participant_bin())
                .args(["keygen", "--name", name, "--out"])
                .arg(dir)
                .current_dir(&self.root),
        );
        let csr = dir.join(format!("{name}.csr"));
        self.certs(&[
            "sign",
            "--ca-dir",
            ca_dir,
            "--dir",
            pki_dir,
            "--csr",
            csr.to_str().expect("utf-8 path"),
        ]);
        let pki = self.path(pki_dir);
        for file in [format!("{name}.pem"), "ca.pem".to_string()] {
            std::fs::copy(pki.join(&file), dir.join(&file))
                .unwrap_or_else(|e| panic!("copying {file} to {}: {e}", dir.display()));
        }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    pub fn data_file(&self, institution: &str) -> PathBuf {
        self.path(&format!("data/participants/{institution}.csv"))
    }

    /// `fedrisk-coordinator certs ARGS` in the federation folder.
    pub fn certs(&self, args: &[&str]) -> Output {
        run_ok(
            Command::new(coordinator_bin())
                .arg("certs")
                .args(args)
                .current_dir(&self.root),
        )
    }

    /// Writes `coordinator.toml` with a job.
    pub fn write_config(&self, job: &JobOpts) -> PathBuf {
        let expected = job
            .expected_participants
            .map(|e| format!("expected_participants = {e}\n"))
            .unwrap_or_default()
            + &job
                .wait_for_participants_ms
                .map(|w| format!("wait_for_participants_ms = {w}\n"))
                .unwrap_or_default();
        let text = format!(
            "listen = \"127.0.0.1:{port}\"\n\
             pki_dir = \"pki\"\n\
             database = \"coord.db\"\n\
             [job]\n\
             name = \"{name}\"\n\
             schema = \"data/schema.json\"\n\
             rounds = {rounds}\n\
             min_participants = {min}\n\
             {expected}\
             stage_deadline_ms = {stage}\n\
             {extra}\n\
             [job.settings]\n\
             {settings}\n",
            port = self.port,
            name = job.name,
            rounds = job.rounds,
            min = job.min_participants,
            stage = job.stage_deadline_ms,
            extra = job.job_extra,
            settings = job.settings,
        );
        let path = self.path("coordinator.toml");
        std::fs::write(&path, text).expect("writing coordinator.toml");
        path
    }

    /// Starts `serve` and waits until it listens.
    pub fn serve(&self) -> Proc {
        self.serve_with_env(&[])
    }

    /// Starts `serve` with extra environment (the coordinator's test faults).
    pub fn serve_with_env(&self, env: &[(&str, &str)]) -> Proc {
        let mut cmd = Command::new(coordinator_bin());
        cmd.arg("serve")
            .arg("--config")
            .arg(self.path("coordinator.toml"))
            .current_dir(&self.root);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut p = Proc::spawn("coordinator", cmd, &self.path("logs"));
        p.wait_for_stdout("fedrisk coordinator listening on", Duration::from_secs(30));
        p
    }

    /// `fedrisk-participant run` as `cert` on `data`, with `ca.pem`, `CERT.pem` and
    /// `CERT.key` from `pki_dir`.
    pub fn participant_as(
        &self,
        log_name: &str,
        pki_dir: &Path,
        cert: &str,
        data: &Path,
        env: &[(&str, &str)],
        extra: &[&str],
    ) -> Proc {
        self.participant_via(&self.url(), log_name, pki_dir, cert, data, env, extra)
    }

    /// [`Fed::participant_as`] connecting to `url` (a proxy in front of the coordinator).
    #[allow(clippy::too_many_arguments)]
    pub fn participant_via(
        &self,
        url: &str,
        log_name: &str,
        pki_dir: &Path,
        cert: &str,
        data: &Path,
        env: &[(&str, &str)],
        extra: &[&str],
    ) -> Proc {
        let mut cmd = Command::new(participant_bin());
        cmd.arg("run")
            .arg("--coordinator")
            .arg(url)
            .arg("--ca")
            .arg(pki_dir.join("ca.pem"))
            .arg("--cert")
            .arg(pki_dir.join(format!("{cert}.pem")))
            .arg("--key")
            .arg(pki_dir.join(format!("{cert}.key")))
            .arg("--data")
            .arg(data)
            .args(extra)
            .current_dir(&self.root);
        for (k, v) in env {
            cmd.env(k, v);
        }
        Proc::spawn(log_name, cmd, &self.path("logs"))
    }
    /// A new process of `institution`'s agent after its death: the same key and ledger,
    /// logged as `<institution>-restarted`.
    pub fn restart(&self, institution: &str) -> Proc {
        self.participant_as(
            &format!("{institution}-restarted"),
            &self.institution_dir(institution),
            institution,
            &self.data_file(institution),
            &[],
            &[],
        )
    }

    /// The institution's own agent with its own certificate and data.
    pub fn participant(&self, institution: &str, env: &[(&str, &str)], extra: &[&str]) -> Proc {
        self.participant_as(
            institution,
            &self.institution_dir(institution),
            institution,
            &self.data_file(institution),
            env,
            extra,
        )
    }

    /// Writes `job` as the coordinator's job, serves it to every institution's agent and
    /// waits (up to `timeout`) for it to complete and for the agents to exit; returns the
    /// running coordinator and the job's final status.
    pub fn complete_job(&self, job: &JobOpts, timeout: Duration) -> (Proc, Value) {
        self.write_config(job);
        let coord = self.serve();
        let mut agents = self.agents(&self.institutions);
        let status = self.wait_job_end(1, timeout, &coord);
        assert_eq!(status["state"], "completed", "{status}");
        for a in &mut agents {
            a.wait_exit(Duration::from_secs(30));
        }
        (coord, status)
    }

    /// The agents of `institutions`, each with its own certificate and data.
    pub fn agents(&self, institutions: &[String]) -> Vec<Proc> {
        institutions
            .iter()
            .map(|n| self.participant(n, &[], &[]))
            .collect()
    }

    /// `fedrisk-coordinator job SUB --coordinator .. (operator identity) ARGS`.
    pub fn job(&self, sub: &str, args: &[&str]) -> Output {
        let ops = self.path("ops");
        Command::new(coordinator_bin())
            .arg("job")
            .arg(sub)
            .arg("--coordinator")
            .arg(self.url())
            .arg("--ca")
            .arg(self.path("pki/ca.pem"))
            .arg("--cert")
            .arg(ops.join("ops.pem"))
            .arg("--key")
            .arg(ops.join("ops.key"))
            .args(args)
            .current_dir(&self.root)
            .output()
            .expect("running the operator CLI")
    }

    /// `fedrisk-coordinator audit ARGS` in the federation's folder.
    pub fn audit(&self, args: &[&str]) -> Output {
        Command::new(coordinator_bin())
            .arg("audit")
            .args(args)
            .current_dir(&self.root)
            .output()
            .expect("running audit")
    }

    /// `audit verify` on the coordinator's database; panics with its output unless it
    /// passes, and returns what it said.
    pub fn audit_verifies(&self) -> String {
        let out = self.audit(&["verify", "--database", "coord.db"]);
        let said = text(&out);
        assert!(out.status.success(), "audit verify failed: {said}");
        said
    }

    pub fn job_ok(&self, sub: &str, args: &[&str]) -> String {
        let out = self.job(sub, args);
        assert!(
            out.status.success(),
            "job {sub} {args:?} failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `job status --json`, or None while the coordinator does not answer.
    pub fn status(&self, id: u64) -> Option<Value> {
        self.status_or_error(id).ok()
    }

    /// `job status --json`, or what the operator CLI said when it failed.
    pub fn status_or_error(&self, id: u64) -> Result<Value, String> {
        let out = self.job("status", &["--id", &id.to_string(), "--json"]);
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())
    }

    /// Polls the job until it has ended (completed, failed or cancelled).
    pub fn wait_job_end(&self, id: u64, timeout: Duration, coordinator: &Proc) -> Value {
        self.wait_status(id, timeout, coordinator, "the job to end", |s| {
            matches!(
                s["state"].as_str(),
                Some("completed" | "failed" | "cancelled")
            )
        })
    }

    pub fn wait_status(
        &self,
        id: u64,
        timeout: Duration,
        coordinator: &Proc,
        what: &str,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        let end = Instant::now() + timeout;
        let mut last = None;
        let mut last_error = String::new();
        loop {
            match self.status_or_error(id) {
                Ok(s) => {
                    if done(&s) {
                        return s;
                    }
                    last = Some(s);
                }
                Err(e) => last_error = e,
            }
            if Instant::now() > end {
                panic!(
                    "waited {timeout:?} for {what}; last status: {}\nlast status error: {last_error}\ncoordinator log ends with:\n{}",
                    last.map(|s| s.to_string()).unwrap_or_default(),
                    tail(&coordinator.stderr(), 40)
                );
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    /// `job models --id ID` as (round, content hash).
    pub fn models(&self, id: u64) -> Vec<(u32, String)> {
        self.job_ok("models", &["--id", &id.to_string()])
            .lines()
            .filter_map(|l| {
                // `job 1 round   3 <hash>`
                let w: Vec<&str> = l.split_whitespace().collect();
                match w.as_slice() {
                    ["job", _, "round", r, h] => Some((r.parse().ok()?, h.to_string())),
                    _ => None,
                }
            })
            .collect()
    }

    /// Exports one round's model to a file and returns its path.
    pub fn export(&self, id: u64, round: u32) -> PathBuf {
        let out = self.path(&format!("model-job{id}-round{round}.json"));
        self.job_ok(
            "export",
            &[
                "--id",
                &id.to_string(),
                "--round",
                &round.to_string(),
                "--out",
                out.to_str().expect("utf-8 path"),
            ],
        );
        out
    }
}

impl Drop for Fed {
    fn drop(&mut self) {
        // Keep the folder (logs, database) of a failed test for a look, or of every test
        // with FEDRISK_KEEP_TEST_DIRS set.
        if (std::thread::panicking() || std::env::var_os("FEDRISK_KEEP_TEST_DIRS").is_some())
            && let Some(d) = self.dir.take()
        {
            let kept = d.keep();
            eprintln!("kept the federation folder: {}", kept.display());
        }
    }
}

/// A round's federated test AUC from `job status --json`, if its model was evaluated.
pub fn round_auc(status: &Value, round: u64) -> Option<f64> {
    status["rounds"]
        .as_array()?
        .iter()
        .filter(|x| x["round"] == round)
        .find_map(|x| x["auc"].as_f64())
}

/// Rounds of a status JSON as (round, survivors).
pub fn survivors(status: &Value) -> Vec<(u64, u64)> {
    status["rounds"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|r| {
                    (
                        r["round"].as_u64().unwrap_or(u64::MAX),
                        r["survivors"].as_u64().unwrap_or(0),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The refusal reasons a status JSON shows for its participants.
pub fn refusals(status: &Value) -> Vec<String> {
    status["participants"]
        .as_array()
        .map(|ps| {
            ps.iter()
                .filter_map(|p| p["refusal"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Seconds since `t`, for the timing lines the tests print.
pub fn secs(t: Instant) -> f64 {
    t.elapsed().as_secs_f64()
}

/// Parses a JSON file, panicking with its name if it is missing or malformed.
pub fn read_json(path: &Path) -> Value {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    serde_json::from_str(&std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{name}: {e}")))
        .unwrap_or_else(|e| panic!("{name} parses: {e}"))
}

/// Runs `simulate` (`cmd`, to which `--out <dir>/out` is added) in `dir` as a process group,
/// asserts that it succeeded and that its job completed with `rounds` rounds (or fewer, up
/// to the round it says it converged at), and returns
/// the process (for its output) and `report.json`.
pub fn run_simulate(
    mut cmd: Command,
    dir: &Path,
    rounds: usize,
    timeout: Duration,
) -> (Proc, Value) {
    let out = dir.join("out");
    cmd.arg("--out").arg(&out).current_dir(dir);
    let mut p = Proc::spawn_group("simulate", cmd, &dir.join("logs"));
    let status = p.wait_exit(timeout);
    assert!(
        status.success(),
        "simulate failed ({status}):\n{}\n{}",
        tail(&p.stdout(), 30),
        tail(&p.stderr(), 40)
    );
    let report = read_json(&out.join("report.json"));
    assert_eq!(report["job_state"], "completed", "{report}");
    let rows = report["rounds"].as_array().expect("rounds");
    // A Newton job stops early once its step is below the job's tolerance: then it ran the
    // rounds up to the one it says it converged at, and no more.
    let message = report["job_message"].as_str().unwrap_or_default();
    match message
        .strip_prefix("converged at round ")
        .and_then(|rest| rest.split(':').next())
        .and_then(|r| r.parse::<usize>().ok())
    {
        Some(converged) => {
            assert!(converged <= rounds, "{report}");
            assert_eq!(rows.len(), converged, "{report}");
        }
        None => assert_eq!(rows.len(), rounds, "{report}"),
    }
    (p, report)
}

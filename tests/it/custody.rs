//! Key custody, end to end as README.md tells it: the operator makes the CA apart from the
//! coordinator's folder; every institution makes its own key with `fedrisk-participant
//! keygen` and sends only its request; the operator signs it offline with `certs sign` and
//! sends back `NAME.pem` and `ca.pem`; the coordinator serves a folder holding no CA key and
//! no institution's key, and refuses one that holds either.

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use fedrisk_models::synth::generate;
use serde_json::Value;

use crate::harness::{
    Proc, coordinator_bin, free_port, participant_bin, run_ok, synth_config, tail,
};

fn text(out: &std::process::Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Every `*.key` file under `root`, relative to it.
fn key_files(root: &Path) -> BTreeSet<String> {
    fn walk(dir: &Path, root: &Path, out: &mut BTreeSet<String>) {
        for entry in std::fs::read_dir(dir).expect("read_dir").flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, root, out);
            } else if path.extension().is_some_and(|e| e == "key") {
                let rel = path.strip_prefix(root).expect("under root");
                out.insert(rel.to_string_lossy().into_owned());
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(root, root, &mut out);
    out
}

/// `serve` on a folder it must refuse: it exits with an error naming `file` (as the
/// configuration's relative `pki_dir` makes it) and saying `fix`.
fn serve_refuses(root: &Path, file: &str, fix: &str) {
    let mut cmd = Command::new(coordinator_bin());
    cmd.args(["serve", "--config", "coordinator.toml"])
        .current_dir(root);
    let mut p = Proc::spawn("refused-serve", cmd, &root.join("logs"));
    let status = p.wait_exit(Duration::from_secs(30));
    let (out, err) = (p.stdout(), p.stderr());
    assert!(!status.success(), "served with {file}:\n{out}");
    assert!(!out.contains("listening"), "listened with {file}:\n{out}");
    let line = err
        .lines()
        .find(|l| l.starts_with("error:"))
        .unwrap_or_else(|| panic!("no error line:\n{err}"));
    assert!(line.contains(file), "{line}");
    assert!(line.contains(fix), "{line}");
}

#[test]
fn the_readme_flow_keeps_every_key_with_its_holder() {
    let tmp = tempfile::Builder::new()
        .prefix("fedrisk-custody-")
        .tempdir()
        .expect("tempdir");
    let root = tmp.path();
    let cfg = synth_config(51, 2400, 400, 3);
    generate(&cfg)
        .write_dir(&root.join("data"))
        .expect("writing generated data");
    let names: Vec<String> = cfg.institutions.iter().map(|i| i.name.clone()).collect();
    let coordinator =
        |args: &[&str]| run_ok(Command::new(coordinator_bin()).args(args).current_dir(root));
    let participant =
        |args: &[&str]| run_ok(Command::new(participant_bin()).args(args).current_dir(root));

    // The operator: the CA on offline media, the coordinator's folder apart.
    coordinator(&[
        "certs",
        "init",
        "--ca-dir",
        "offline/ca",
        "--dir",
        "pki",
        "--federation",
        "custody",
    ]);

    // Each data team makes its key in its own folder and sends only the request.
    let mut public_keys = Vec::new();
    for name in &names {
        let out = participant(&["keygen", "--name", name, "--out", name]);
        let (stdout, stderr) = text(&out);
        let key_path = root.join(name).join(format!("{name}.key"));
        let key = std::fs::read_to_string(&key_path).expect("the key");
        assert!(key.contains("PRIVATE KEY"));
        let body = key.lines().nth(1).expect("a key body line");
        for printed in [&stdout, &stderr] {
            assert!(!printed.contains("PRIVATE KEY") && !printed.contains(body));
        }
        let mode = std::fs::metadata(&key_path)
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let pk = stdout
            .lines()
            .find_map(|l| l.strip_prefix("public key "))
            .and_then(|l| l.split_whitespace().next())
            .unwrap_or_else(|| panic!("no public key line:\n{stdout}"))
            .to_string();
        public_keys.push(pk);
        std::fs::create_dir_all(root.join("inbox")).expect("mkdir");
        std::fs::copy(
            root.join(name).join(format!("{name}.csr")),
            root.join("inbox").join(format!("{name}.csr")),
        )
        .expect("send the request");
    }
    // A second keygen never replaces a key.
    let again = Command::new(participant_bin())
        .args(["keygen", "--name", &names[0], "--out", &names[0]])
        .current_dir(root)
        .output()
        .expect("keygen");
    let (_, err) = text(&again);
    assert!(!again.status.success());
    assert!(
        err.contains(&format!("{}.key", names[0])) && err.contains("already exists"),
        "{err}"
    );

    // The operator signs each request offline and sends back NAME.pem and ca.pem.
    for (name, pk) in names.iter().zip(&public_keys) {
        let csr = format!("inbox/{name}.csr");
        let out = coordinator(&[
            "certs",
            "sign",
            "--ca-dir",
            "offline/ca",
            "--dir",
            "pki",
            "--csr",
            &csr,
        ]);
        let (stdout, _) = text(&out);
        assert!(
            stdout.contains(&format!("signed {name} (participant")),
            "{stdout}"
        );
        // The same public key on both sides: what the two compare over the phone.
        assert!(stdout.contains(pk.as_str()), "{stdout}");
        for file in [format!("{name}.pem"), "ca.pem".to_string()] {
            std::fs::copy(root.join("pki").join(&file), root.join(name).join(&file))
                .expect("send back");
        }
    }
    // A second request for an active name is refused.
    let dup = Command::new(coordinator_bin())
        .args([
            "certs",
            "sign",
            "--ca-dir",
            "offline/ca",
            "--dir",
            "pki",
            "--csr",
        ])
        .arg(format!("{}/{}.csr", names[0], names[0]))
        .current_dir(root)
        .output()
        .expect("sign");
    let (_, err) = text(&dup);
    assert!(!dup.status.success() && err.contains("already"), "{err}");
    // `certs issue` no longer makes a participant's key; it says what to do instead.
    let issue = Command::new(coordinator_bin())
        .args([
            "certs",
            "issue",
            "--ca-dir",
            "offline/ca",
            "--dir",
            "pki",
            "--name",
            "bank_z",
            "--role",
            "participant",
            "--out",
            "bank_z",
        ])
        .current_dir(root)
        .output()
        .expect("issue");
    let (_, err) = text(&issue);
    assert!(!issue.status.success());
    assert!(
        err.contains("fedrisk-participant keygen") && err.contains("certs sign"),
        "{err}"
    );
    assert!(!root.join("bank_z").exists());
    // The operator's own client identity, on the operator's machine.
    coordinator(&[
        "certs",
        "issue",
        "--ca-dir",
        "offline/ca",
        "--dir",
        "pki",
        "--name",
        "ops",
        "--role",
        "operator",
        "--out",
        "ops",
    ]);

    // Every private key is with its holder, and the coordinator's folder has only its own.
    let mut expected: BTreeSet<String> = names.iter().map(|n| format!("{n}/{n}.key")).collect();
    expected.extend(["offline/ca/ca.key", "pki/coordinator.key", "ops/ops.key"].map(String::from));
    assert_eq!(key_files(root), expected);

    let port = free_port();
    std::fs::write(
        root.join("coordinator.toml"),
        format!(
            "listen = \"127.0.0.1:{port}\"\npki_dir = \"pki\"\ndatabase = \"coordinator.db\"\n"
        ),
    )
    .expect("coordinator.toml");
    std::fs::write(
        root.join("job.toml"),
        "name = \"custody\"\nschema = \"data/schema.json\"\nrounds = 2\nmin_participants = 3\n\
         stage_deadline_ms = 15000\n[settings]\nalgorithm = \"newton\"\n",
    )
    .expect("job.toml");

    // The coordinator refuses a folder holding the CA key, or an institution's key.
    let stray_ca = root.join("pki/ca.key");
    std::fs::copy(root.join("offline/ca/ca.key"), &stray_ca).expect("copy");
    serve_refuses(root, "pki/ca.key", "move it offline");
    std::fs::remove_file(&stray_ca).expect("rm");
    let stray = root.join("pki").join(format!("{}.key", names[1]));
    std::fs::copy(
        root.join(&names[1]).join(format!("{}.key", names[1])),
        &stray,
    )
    .expect("copy");
    serve_refuses(
        root,
        &format!("pki/{}.key", names[1]),
        "move it to the institution",
    );
    std::fs::remove_file(&stray).expect("rm");
    assert!(
        !root.join("coordinator.db").exists(),
        "a refused serve created its database"
    );

    // Served from a folder with no key but its own.
    let mut cmd = Command::new(coordinator_bin());
    cmd.args(["serve", "--config", "coordinator.toml"])
        .current_dir(root);
    let mut coord = Proc::spawn("coordinator", cmd, &root.join("logs"));
    coord.wait_for_stdout("fedrisk coordinator listening on", Duration::from_secs(30));

    // Each institution runs its agent with the files in its own folder.
    let url = format!("https://127.0.0.1:{port}");
    let mut agents: Vec<Proc> = names
        .iter()
        .map(|name| {
            let home = root.join(name);
            let mut cmd = Command::new(participant_bin());
            cmd.arg("run")
                .args(["--coordinator", &url])
                .arg("--ca")
                .arg(home.join("ca.pem"))
                .arg("--cert")
                .arg(home.join(format!("{name}.pem")))
                .arg("--key")
                .arg(home.join(format!("{name}.key")))
                .arg("--data")
                .arg(root.join(format!("data/participants/{name}.csv")))
                .current_dir(&home);
            Proc::spawn(name, cmd, &root.join("logs"))
        })
        .collect();

    // The operator submits the job, follows it and exports the model.
    let ops: Vec<String> = vec![
        "--coordinator".into(),
        url.clone(),
        "--ca".into(),
        "pki/ca.pem".into(),
        "--cert".into(),
        "ops/ops.pem".into(),
        "--key".into(),
        "ops/ops.key".into(),
    ];
    let job = |sub: &str, args: &[&str]| {
        Command::new(coordinator_bin())
            .args(["job", sub])
            .args(&ops)
            .args(args)
            .current_dir(root)
            .output()
            .expect("job command")
    };
    let submitted = job("submit", &["--job", "job.toml"]);
    let (stdout, stderr) = text(&submitted);
    assert!(submitted.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("submitted job 1"), "{stdout}");

    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let status: Value = loop {
        let out = job("status", &["--id", "1", "--json"]);
        if out.status.success()
            && let Ok(s) = serde_json::from_slice::<Value>(&out.stdout)
            && matches!(
                s["state"].as_str(),
                Some("completed" | "failed" | "cancelled")
            )
        {
            break s;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the job did not end; coordinator log:\n{}",
            tail(&coord.stderr(), 40)
        );
        std::thread::sleep(Duration::from_millis(300));
    };
    assert_eq!(status["state"], "completed", "{status}");
    let shown = job("status", &["--id", "1"]);
    let (stdout, stderr) = text(&shown);
    assert!(shown.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("job 1 `custody`: completed"), "{stdout}");

    let model: PathBuf = root.join("model.json");
    let exported = job("export", &["--id", "1", "--out", "model.json"]);
    let (stdout, stderr) = text(&exported);
    assert!(exported.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("wrote model.json"), "{stdout}");
    let model_json: Value =
        serde_json::from_str(&std::fs::read_to_string(&model).expect("model")).expect("json");
    assert!(model_json.is_object());

    for a in &mut agents {
        let s = a.wait_exit(Duration::from_secs(30));
        assert!(s.success(), "{}: {s}\n{}", a.name, tail(&a.stderr(), 20));
    }
    // Still no key anywhere but with its holder.
    assert_eq!(key_files(root), expected);
}

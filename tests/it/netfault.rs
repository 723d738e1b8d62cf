//! Network faults between agents and the coordinator, through a loopback TCP proxy the
//! test controls (one per agent): connections cut mid-stream, and a stream stalled (bytes
//! neither delivered nor refused) for longer than the stage deadline. Every round must
//! complete or be retried cleanly, and the job must finish with the agents back.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use crate::harness::{Fed, JobOpts, Proc, survivors, tail};

/// A TCP proxy on loopback in front of `127.0.0.1:target`.
struct Proxy {
    port: u16,
    /// Bumped to cut every connection open at that moment.
    generation: Arc<AtomicU64>,
    stalled: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
}

impl Proxy {
    fn start(target: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("proxy listen");
        let port = listener.local_addr().expect("addr").port();
        listener.set_nonblocking(true).expect("nonblocking");
        let proxy = Proxy {
            port,
            generation: Arc::new(AtomicU64::new(0)),
            stalled: Arc::new(AtomicBool::new(false)),
            stop: Arc::new(AtomicBool::new(false)),
        };
        let (generation, stalled, stop) = (
            proxy.generation.clone(),
            proxy.stalled.clone(),
            proxy.stop.clone(),
        );
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                let client = match listener.accept() {
                    Ok((c, _)) => c,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(20));
                        continue;
                    }
                    Err(_) => break,
                };
                let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else {
                    continue;
                };
                let born = generation.load(Ordering::SeqCst);
                for (from, to) in [
                    (client.try_clone(), server.try_clone()),
                    (server.try_clone(), client.try_clone()),
                ] {
                    let (Ok(from), Ok(to)) = (from, to) else {
                        continue;
                    };
                    let (generation, stalled, stop) =
                        (generation.clone(), stalled.clone(), stop.clone());
                    std::thread::spawn(move || pump(from, to, born, &generation, &stalled, &stop));
                }
            }
        });
        proxy
    }

    fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    /// Closes every connection open now (new ones pass).
    fn cut(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
    }

    /// Holds every byte in both directions (or lets them flow again).
    fn stall(&self, on: bool) {
        self.stalled.store(on, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.cut();
    }
}

/// Copies `from` to `to` until either end closes or the connection is cut; while stalled,
/// reads nothing (the sender's buffers fill, as on a link that went quiet).
fn pump(
    mut from: TcpStream,
    mut to: TcpStream,
    born: u64,
    generation: &AtomicU64,
    stalled: &AtomicBool,
    stop: &AtomicBool,
) {
    let _ = from.set_read_timeout(Some(Duration::from_millis(50)));
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        if generation.load(Ordering::SeqCst) != born || stop.load(Ordering::SeqCst) {
            break;
        }
        if stalled.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(20));
            continue;
        }
        match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => break,
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}

/// How many times an agent's log says it joined.
fn joins(agent: &Proc) -> usize {
    agent.stderr().matches("joined the federation").count()
}

#[test]
fn cut_and_stalled_connections_do_not_stop_the_job() {
    let fed = Fed::new(61, 2500, 5);
    fed.write_config(&JobOpts {
        name: "netfault",
        rounds: 4,
        min_participants: 3,
        expected_participants: Some(5),
        stage_deadline_ms: 2500,
        wait_for_participants_ms: Some(20_000),
        // Both deadlines (the first stage's includes local computation) are shorter than
        // the stall, whichever stage it lands in.
        job_extra: "max_attempts = 6\ntolerance = 0.0\nround_deadline_ms = 4000",
        ..JobOpts::default()
    });
    let coord = fed.serve();
    let proxies: Vec<Proxy> = fed
        .institutions
        .iter()
        .map(|_| Proxy::start(fed.port))
        .collect();
    let mut agents: Vec<Proc> = fed
        .institutions
        .iter()
        .zip(&proxies)
        .map(|(name, proxy)| {
            fed.participant_via(
                &proxy.url(),
                name,
                &fed.institution_dir(name),
                name,
                &fed.data_file(name),
                &[],
                &[],
            )
        })
        .collect();
    let round_done =
        |r: u64| move |s: &serde_json::Value| survivors(s).iter().any(|(round, _)| *round == r);
    fed.wait_status(1, Duration::from_secs(90), &coord, "round 1", round_done(1));
    // Cut: agent 0's connections are closed mid-job; it reconnects on its own.
    proxies[0].cut();
    fed.wait_status(1, Duration::from_secs(90), &coord, "round 2", round_done(2));
    // Stall: agent 1's link goes quiet for longer than a stage deadline (2.5 s, 4 s for a
    // session's first stage), then comes back.
    proxies[1].stall(true);
    std::thread::sleep(Duration::from_secs(8));
    proxies[1].stall(false);
    let status = fed.wait_job_end(1, Duration::from_secs(180), &coord);
    assert_eq!(status["state"], "completed", "{status}");
    let rounds = survivors(&status);
    for r in 0..=4u64 {
        assert!(
            rounds.iter().any(|(round, n)| *round == r && *n >= 3),
            "round {r} missing or under 3 survivors: {status}"
        );
    }
    // The stalled link was waited out, not waited for.
    assert!(
        coord.stderr().contains("stage deadline passed"),
        "no stage deadline passed during the stall:\n{}",
        tail(&coord.stderr(), 30)
    );
    for a in &mut agents {
        a.wait_exit(Duration::from_secs(60));
    }
    assert!(
        joins(&agents[0]) >= 2,
        "the cut agent did not reconnect:\n{}",
        tail(&agents[0].stderr(), 30)
    );
    // Nobody lost anything it could not get back: every agent's log ends with the job.
    for a in &agents {
        assert!(
            a.stderr().contains("job finished"),
            "{} did not see the job end:\n{}",
            a.name,
            tail(&a.stderr(), 20)
        );
    }
    println!(
        "netfault: rounds {:?}; joins {:?}",
        rounds,
        agents.iter().map(joins).collect::<Vec<_>>()
    );
}

/// Through the proxies: one agent is SIGKILLed mid-round and a new process of the same
/// institution connects in its place; another agent's link stalls (nothing delivered,
/// nothing refused) for 8 s and comes back. The stalled agent is waited out in the sessions
/// it stalls, and its round waits for it (every update runs over the statistics set only).
/// The job completes with everyone in the last round, the new process included.
#[test]
fn a_new_process_mid_round_rejoins_and_a_stalled_link_is_waited_out_then_waited_for() {
    let fed = Fed::new(62, 2500, 5);
    fed.write_config(&JobOpts {
        name: "netfault-2",
        rounds: 4,
        min_participants: 3,
        expected_participants: Some(5),
        stage_deadline_ms: 2500,
        wait_for_participants_ms: Some(20_000),
        job_extra: "max_attempts = 6\ntolerance = 0.0\nround_deadline_ms = 4000",
        ..JobOpts::default()
    });
    let coord = fed.serve();
    let proxies: Vec<Proxy> = fed
        .institutions
        .iter()
        .map(|_| Proxy::start(fed.port))
        .collect();
    let start = |i: usize, label: &str| {
        let name = &fed.institutions[i];
        fed.participant_via(
            &proxies[i].url(),
            label,
            &fed.institution_dir(name),
            name,
            &fed.data_file(name),
            &[],
            &[],
        )
    };
    let mut agents: Vec<Proc> = fed
        .institutions
        .iter()
        .enumerate()
        .map(|(i, name)| start(i, name))
        .collect();
    let round_done =
        |r: u64| move |s: &serde_json::Value| survivors(s).iter().any(|(round, _)| *round == r);
    fed.wait_status(1, Duration::from_secs(90), &coord, "round 1", round_done(1));
    // Round 2 is under way: agent 2 dies and a new process takes its place at once.
    agents[2].kill();
    let mut replacement = start(2, &format!("{}-new", fed.institutions[2]));
    // Once round 2 is in (one loss per session is this federation's dropout budget), agent
    // 3's link goes quiet and stays so.
    fed.wait_status(1, Duration::from_secs(90), &coord, "round 2", round_done(2));
    proxies[3].stall(true);
    // Its link comes back after a while: every update runs over the statistics set only
    // (its sums carry the training counts), so the job waits for it rather than train on
    // without it.
    std::thread::sleep(Duration::from_secs(8));
    proxies[3].stall(false);
    let status = fed.wait_job_end(1, Duration::from_secs(240), &coord);
    assert_eq!(
        status["state"],
        "completed",
        "{status}\n{}",
        tail(&coord.stderr(), 40)
    );
    let rounds = survivors(&status);
    for r in 0..=4u64 {
        assert!(
            rounds.iter().any(|(round, n)| *round == r && *n >= 3),
            "round {r} missing or under 3 survivors: {status}"
        );
    }
    // The last round: everyone, the new process and the agent whose link came back included.
    assert_eq!(
        rounds.last().map(|(_, n)| *n),
        Some(5),
        "last round's survivors: {rounds:?}"
    );
    assert!(
        coord.stderr().contains("stage deadline passed"),
        "the stalled link was never waited out:\n{}",
        tail(&coord.stderr(), 30)
    );
    let s = replacement.wait_exit(Duration::from_secs(60));
    assert!(
        s.success() && replacement.stderr().contains("job finished"),
        "the new process: {s}\n{}",
        tail(&replacement.stderr(), 20)
    );
    for i in [0, 1, 3, 4] {
        let s = agents[i].wait_exit(Duration::from_secs(60));
        assert!(s.success(), "{}: {s}", agents[i].name);
    }
    println!("netfault-2: rounds {rounds:?}");
}

//! Seeded chaos with the real binaries on loopback: agents SIGKILLed at random secure-
//! aggregation stages and started again; the coordinator SIGKILLed again and again in one
//! job. The schedules come from a fixed seed, so a failure replays; `FEDRISK_CHAOS_SEED`
//! picks another schedule (RELIABILITY.md says how many were run).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use fedrisk_models::ModelFile;

use crate::harness::{Fed, JobOpts, Lcg, Proc, secs, survivors, tail};

fn seed() -> u64 {
    std::env::var("FEDRISK_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20_261_130)
}

/// The stages an agent can be stopped at (its test faults), each before it answers.
const STAGES: [&str; 3] = [
    "hang-before-share-keys",
    "hang-before-masked-input",
    "hang-before-unmask",
];

/// One planned death: agent, round, stage, and whether it is started again.
#[derive(Debug, Clone)]
struct Death {
    agent: usize,
    round: u32,
    stage: &'static str,
    restart: bool,
}

/// A session of `n` can lose `n - t` members (the default threshold `t`).
fn budget(n: usize) -> usize {
    n.saturating_sub(fedrisk_secagg::default_threshold(n) as usize)
}

/// Up to the dropout budget of deaths per round, each agent at most once, in rounds
/// `1..=last`. The budget is that of the smallest session the round may have: everyone not
/// gone for good, less those killed in the round before, who may not be back yet. More deaths
/// than that between the survivors' signatures and the unmasking would leave a sum no one may
/// ask for again over another set (the agents' ledgers refuse): the job then ends with the
/// reason, by design (RELIABILITY.md).
fn plan(rng: &mut Lcg, agents: usize, last: u32) -> Vec<Death> {
    let mut free: Vec<usize> = (0..agents).collect();
    let mut deaths: Vec<Death> = Vec::new();
    for round in 1..=last {
        let gone = deaths.iter().filter(|d| !d.restart).count();
        let returning = deaths
            .iter()
            .filter(|d| d.restart && d.round + 1 == round)
            .count();
        // Round 1 starts from zero coefficients, where its sums carry the training counts:
        // it runs over the statistics set only and is retried until that set is back, so
        // a death there is one agent that comes back.
        let allowed = if round == 1 {
            1
        } else {
            budget(agents - gone - returning) as u64
        };
        for _ in 0..rng.below(allowed + 1) {
            if free.is_empty() {
                break;
            }
            let agent = free.remove(rng.below(free.len() as u64) as usize);
            deaths.push(Death {
                agent,
                round,
                stage: STAGES[rng.below(STAGES.len() as u64) as usize],
                // Every update carries the training counts and runs over the statistics set
                // only, so an agent lost for good ends the job (by design): every killed
                // agent is started again.
                restart: true,
            });
        }
    }
    deaths
}

/// `FEDRISK_CHAOS_<NAME>` as a number, or `default` (the size CI runs).
fn scale<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(format!("FEDRISK_CHAOS_{name}"))
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// CI runs 8 agents and 7 rounds; `FEDRISK_CHAOS_AGENTS=50 FEDRISK_CHAOS_ROUNDS=20` is the
/// longer run (RELIABILITY.md).
#[test]
fn chaos_agents_killed_at_random_stages_rejoin_and_every_round_completes() {
    let agents_n: usize = scale("AGENTS", 8);
    let rounds_n: u32 = scale("ROUNDS", 7);
    let started = Instant::now();
    let seed = seed();
    let mut rng = Lcg(seed);
    // No deaths in the last three rounds, so restarted agents are back before the last one.
    let deaths = plan(&mut rng, agents_n, rounds_n.saturating_sub(3).max(1));
    assert!(!deaths.is_empty(), "seed {seed}: the schedule kills nobody");
    let fed = Fed::new(seed, 1000 * agents_n, agents_n);
    fed.write_config(&JobOpts {
        name: "chaos-agents",
        rounds: rounds_n,
        min_participants: 4,
        expected_participants: Some(agents_n as u32),
        stage_deadline_ms: 6_000,
        // Every round must run (no early stop at convergence).
        job_extra: "tolerance = 0.0",
        ..JobOpts::default()
    });
    let coord = fed.serve();
    let mut agents: Vec<Proc> = fed
        .institutions
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let fault = deaths
                .iter()
                .find(|d| d.agent == i)
                // The round's first session: its update (with the previous model's
                // evaluation from round 2 on).
                .map(|d| format!("{}@{}", d.stage, d.round));
            let env: Vec<(&str, &str)> = fault
                .as_deref()
                .map(|f| vec![("FEDRISK_TEST_FAULT", f)])
                .unwrap_or_default();
            fed.participant(name, &env, &[])
        })
        .collect();
    let mut killed: BTreeMap<usize, f64> = BTreeMap::new();
    let mut restarted: Vec<Proc> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(400 + 40 * u64::from(rounds_n));
    let status = loop {
        for d in &deaths {
            if killed.contains_key(&d.agent) {
                continue;
            }
            let a = &mut agents[d.agent];
            if a.stderr().contains("test fault: this agent stops here") {
                a.kill();
                killed.insert(d.agent, secs(started));
                if d.restart {
                    restarted.push(fed.restart(&fed.institutions[d.agent]));
                }
            }
        }
        if let Some(s) = fed.status(1)
            && matches!(
                s["state"].as_str(),
                Some("completed" | "failed" | "cancelled")
            )
        {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "seed {seed}: the job did not end; deaths {deaths:?}\n{}",
            tail(&coord.stderr(), 40)
        );
        std::thread::sleep(Duration::from_millis(150));
    };
    assert_eq!(
        status["state"],
        "completed",
        "seed {seed}, deaths {deaths:?}: {status}\n{}",
        tail(&coord.stderr(), 60)
    );
    // Every planned death happened at its stage (the schedule was exercised, not skipped).
    for d in &deaths {
        assert!(
            killed.contains_key(&d.agent),
            "seed {seed}: {d:?} never reached its stage\n{}",
            tail(&agents[d.agent].stderr(), 20)
        );
    }
    let by_round = survivors(&status);
    assert_eq!(
        by_round.iter().map(|(r, _)| *r).collect::<Vec<_>>(),
        (0..=u64::from(rounds_n)).collect::<Vec<_>>(),
        "seed {seed}: rounds {status}"
    );
    // The last round is summed over everybody still alive: the restarted agents rejoined.
    let gone = deaths.iter().filter(|d| !d.restart).count();
    let last = by_round.last().map(|(_, s)| *s).unwrap_or(0);
    assert_eq!(
        last as usize,
        agents_n - gone,
        "seed {seed}: last round's survivors, deaths {deaths:?}: {status}"
    );
    for (i, a) in agents.iter_mut().enumerate() {
        if killed.contains_key(&i) {
            continue;
        }
        let s = a.wait_exit(Duration::from_secs(30));
        assert!(s.success(), "{}: {s}\n{}", a.name, tail(&a.stderr(), 20));
        assert!(a.stdout().contains("job 1 completed"), "{}", a.stdout());
    }
    for a in &mut restarted {
        let s = a.wait_exit(Duration::from_secs(30));
        assert!(s.success(), "{}: {s}\n{}", a.name, tail(&a.stderr(), 20));
        assert!(a.stdout().contains("job 1 completed"), "{}", a.stdout());
    }
    // Every model version is intact and the audit chain verifies.
    let models = fed.models(1);
    assert_eq!(models.len(), rounds_n as usize, "{models:?}");
    for (round, hash) in &models {
        let m = ModelFile::load(&fed.export(1, *round)).expect("exported model verifies");
        assert_eq!(&m.content_hash, hash);
    }
    let said = fed.audit_verifies();
    println!(
        "seed {seed}, {agents_n} agents, {rounds_n} rounds: {} deaths {deaths:?}; survivors by round {by_round:?}; job completed at {:.1} s; {}",
        deaths.len(),
        secs(started),
        said.trim()
    );
}

/// CI runs 6 kills in 8 rounds; `FEDRISK_CHAOS_KILLS=20 FEDRISK_CHAOS_COORDINATOR_ROUNDS=24`
/// is the longer run (RELIABILITY.md).
#[test]
fn chaos_coordinator_killed_again_and_again_finishes_the_job_intact() {
    let kills_n: usize = scale("KILLS", 6);
    let rounds_n: u32 = scale("COORDINATOR_ROUNDS", 8);
    let started = Instant::now();
    let seed = seed();
    let mut rng = Lcg(seed ^ 0x9e37_79b9);
    let fed = Fed::new(seed, 3000, 3);
    fed.write_config(&JobOpts {
        name: "chaos-coordinator",
        rounds: rounds_n,
        min_participants: 3,
        job_extra: "tolerance = 0.0",
        ..JobOpts::default()
    });
    let mut coord = fed.serve();
    let mut agents: Vec<Proc> = fed
        .institutions
        .iter()
        .map(|n| fed.participant(n, &[("FEDRISK_TEST_DELAY_MS", "300")], &[]))
        .collect();
    let mut versions: BTreeMap<u32, String> = BTreeMap::new();
    let mut kills = Vec::new();
    for _ in 0..kills_n {
        // A random moment: anywhere from mid-session to between rounds.
        std::thread::sleep(Duration::from_millis(400 + rng.below(1600)));
        if fed
            .status(1)
            .is_some_and(|s| s["state"] == "completed" || s["state"] == "failed")
        {
            break;
        }
        // What was completed before the crash must come back unchanged.
        for (r, h) in fed.models(1) {
            versions.insert(r, h);
        }
        coord.kill();
        kills.push(secs(started));
        coord = fed.serve();
    }
    let status = fed.wait_job_end(1, Duration::from_secs(240), &coord);
    assert_eq!(
        status["state"],
        "completed",
        "seed {seed}, kills at {kills:?}: {status}\n{}",
        tail(&coord.stderr(), 40)
    );
    assert!(
        kills.len() >= kills_n.min(3),
        "seed {seed}: the job ended before the third kill; make it slower"
    );
    let models: BTreeMap<u32, String> = fed.models(1).into_iter().collect();
    assert_eq!(
        models.keys().copied().collect::<Vec<_>>(),
        (1..=rounds_n).collect::<Vec<_>>(),
        "seed {seed}: {models:?}"
    );
    for (r, h) in &versions {
        assert_eq!(models.get(r), Some(h), "round {r}'s model changed");
    }
    for (&round, hash) in &models {
        let m = ModelFile::load(&fed.export(1, round)).expect("exported model verifies");
        assert_eq!(&m.content_hash, hash);
        assert_eq!(m.provenance.rounds, round);
    }
    let list = fed.job_ok("list", &[]);
    assert_eq!(
        list.lines().filter(|l| l.starts_with("job ")).count(),
        1,
        "jobs after restarts:\n{list}"
    );
    for a in &mut agents {
        let s = a.wait_exit(Duration::from_secs(60));
        assert!(s.success(), "{}: {s}\n{}", a.name, tail(&a.stderr(), 20));
        assert!(a.stdout().contains("job 1 completed"), "{}", a.stdout());
    }
    let said = fed.audit_verifies();
    println!(
        "seed {seed}: coordinator killed {} times at {kills:?} s; {} versions kept across kills; job completed at {:.1} s; {}",
        kills.len(),
        versions.len(),
        secs(started),
        said.trim()
    );
}

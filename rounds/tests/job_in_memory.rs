//! A whole job (statistics, Newton rounds with their evaluations) through `rounds` and
//! `secagg` in memory: no sockets, no async runtime, no clock. The plan and both secagg
//! state machines are driven exactly as the engine and the agents drive them, with every
//! message encoded and decoded, and the result is checked against a model fitted on the
//! pooled rows.

use ed25519_dalek::SigningKey;
use fedrisk_models::federated::Contribution;
use fedrisk_models::logistic::{NewtonOptions, Penalty, fit_newton};
use fedrisk_models::synth::{SynthConfig, generate};
use fedrisk_models::{Dataset, LabelMode, Schema, load_csv};
use fedrisk_rounds::{
    Failure, JobPlan, JobSpec, LineageEntry, LocalData, PlanIds, Progress, Replica, RoundError,
    SessionRecord, SessionRequest, SessionSum, Task, decode_output, encode_parts, session_binding,
    session_params, step_size,
};
use fedrisk_secagg::{
    CoordinatorSession, Message, ParticipantPolicy, ParticipantSession, Roster, SessionConfig, Step,
};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

const FEDERATION: &str = "in-memory";

type Loader = Box<dyn FnMut(&Schema) -> Result<Dataset, RoundError>>;

struct Agent {
    id: u32,
    key: SigningKey,
    data: LocalData<Loader>,
}

fn federation(n: usize) -> (Schema, Vec<Dataset>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = SynthConfig::demo(7, 6000, 100);
    cfg.institutions.truncate(n);
    let data = generate(&cfg);
    data.write_dir(dir.path()).expect("write");
    let schema = Schema::load(&dir.path().join("schema.json")).expect("schema");
    let sets = data
        .participants
        .iter()
        .map(|(name, _)| {
            load_csv(
                &dir.path().join(format!("participants/{name}.csv")),
                &schema,
                LabelMode::Required,
            )
            .expect("load")
        })
        .collect();
    (schema, sets)
}

fn agents(sets: &[Dataset]) -> Vec<Agent> {
    sets.iter()
        .enumerate()
        .map(|(i, d)| {
            let rows = d.clone();
            let loader: Loader = Box::new(move |_: &Schema| Ok(rows.clone()));
            Agent {
                id: i as u32 + 1,
                key: SigningKey::from_bytes(&[i as u8 + 1; 32]),
                data: LocalData::new(loader, None),
            }
        })
        .collect()
}

/// One session among `agents` (those listed in `present`), as the engine and the agents
/// run it, with `drop_after_masking` leaving after their masked input.
fn run_session(
    spec: &JobSpec,
    job_id: u64,
    req: &SessionRequest,
    agents: &mut [Agent],
    drop_after_masking: &[u32],
    rng: &mut ChaCha20Rng,
) -> Result<SessionSum, Failure> {
    let policy = ParticipantPolicy::default();
    run_recorded(spec, job_id, req, agents, drop_after_masking, &policy, rng).map(|(sum, _)| sum)
}

/// Runs a session and returns, with its sum, the lineage record anyone can check it by
/// (certificates named by the agent's id: the roster is the agents' keys here).
fn run_recorded(
    spec: &JobSpec,
    job_id: u64,
    req: &SessionRequest,
    agents: &mut [Agent],
    drop_after_masking: &[u32],
    policy: &ParticipantPolicy,
    rng: &mut ChaCha20Rng,
) -> Result<(SessionSum, LineageEntry), Failure> {
    use rand::RngExt;
    let ids: Vec<u32> = agents.iter().map(|a| a.id).collect();
    let roster = Roster::new(agents.iter().map(|a| (a.id, a.key.verifying_key())));
    let params = session_params(spec, req, ids);
    let binding = session_binding(FEDERATION, req.round, req.binding);
    let config = SessionConfig::new(&binding, rng.random(), params)
        .map_err(|e| Failure::Deterministic(e.to_string()))?;
    let fixed = config.params.fixed_point;
    let mut coord = CoordinatorSession::new(config.clone(), roster.clone())
        .map_err(|e| Failure::Deterministic(e.to_string()))?;
    let encoded = config.encode();
    // Each agent opens its session from the bytes it received, as the real agent does.
    let mut sessions = Vec::new();
    for a in agents.iter_mut() {
        let task = Task::decode(&req.task, job_id, req.round).map_err(Failure::from)?;
        let own_binding = session_binding(
            FEDERATION,
            task.round,
            fedrisk_rounds::task::binding(&req.task.bytes),
        );
        let parts = task
            .params
            .kind()
            .contribute(&task.job, task.round, &mut a.data)
            .map_err(Failure::from)?;
        let input = encode_parts(&parts, &fixed).map_err(|e| Failure::Transient(e.to_string()))?;
        let cfg = SessionConfig::decode(&encoded).map_err(|e| Failure::Transient(e.to_string()))?;
        let (s, adv) = ParticipantSession::new(
            cfg,
            &own_binding,
            a.id,
            a.key.clone(),
            roster.clone(),
            policy,
            &input,
            rng,
        )
        .map_err(|e| Failure::Transient(e.to_string()))?;
        let bytes = Message::Advertise(adv).encode();
        let msg =
            Message::decode_for(&bytes, &config).map_err(|e| Failure::Transient(e.to_string()))?;
        coord
            .handle(a.id, &msg)
            .map_err(|e| Failure::Transient(e.to_string()))?;
        sessions.push((a.id, s));
    }
    let (mut up, mut down) = (0u64, 0u64);
    let output = loop {
        let step = coord
            .close_stage()
            .map_err(|e| Failure::Transient(e.to_string()))?;
        let out = match step {
            Step::Send(out) => out,
            Step::Finished(o) => break o,
        };
        for o in out {
            let (recipients, message) = o.into_parts();
            let bytes = message.encode();
            for r in recipients {
                let Some((_, s)) = sessions.iter_mut().find(|(id, _)| *id == r) else {
                    continue;
                };
                let msg = Message::decode_for(&bytes, s.config())
                    .map_err(|e| Failure::Transient(e.to_string()))?;
                if drop_after_masking.contains(&r)
                    && !matches!(msg, Message::KeyList(_) | Message::ShareBundle(_))
                {
                    continue;
                }
                down += bytes.len() as u64;
                let reply = s
                    .handle(&msg, rng)
                    .map_err(|e| Failure::Transient(e.to_string()))?;
                let reply_bytes = reply.encode();
                up += reply_bytes.len() as u64;
                let reply = Message::decode_for(&reply_bytes, &config)
                    .map_err(|e| Failure::Transient(e.to_string()))?;
                coord
                    .handle(r, &reply)
                    .map_err(|e| Failure::Transient(e.to_string()))?;
            }
        }
    };
    let certificates = output
        .survivors
        .iter()
        .map(|id| (*id, id.to_string()))
        .collect();
    let record = LineageEntry::Session(SessionRecord::new(&config, &output, &certificates));
    let mut sum = decode_output(&output.sum, output.survivors, &fixed)
        .map_err(|e| Failure::Transient(e.to_string()))?;
    sum.bytes_up = up;
    sum.bytes_down = down;
    Ok((sum, record))
}

fn new_plan(spec: &JobSpec, job_id: u64) -> JobPlan {
    JobPlan::new(
        spec.clone(),
        PlanIds {
            federation_id: FEDERATION.into(),
            job_id,
        },
        None,
    )
}

/// Runs the plan's sessions among `agents` until the `label` session of `round` comes up,
/// and returns it unrun.
fn run_until(
    plan: &mut JobPlan,
    spec: &JobSpec,
    job_id: u64,
    agents: &mut [Agent],
    rng: &mut ChaCha20Rng,
    round: u32,
    label: &str,
) -> SessionRequest {
    loop {
        let req = plan.next_session().expect("a session");
        if req.round == round && req.label == label {
            return req;
        }
        let sum = run_session(spec, job_id, &req, agents, &[], rng).expect("session");
        plan.on_output(sum).expect("plan");
    }
}

/// What `agent` contributes to the session `req`, computed from the task alone: its first
/// part (the update, for a task that also evaluates).
fn contribution(req: &SessionRequest, job_id: u64, agent: &mut Agent) -> Contribution {
    let task = Task::decode(&req.task, job_id, req.round).expect("task");
    let mut parts = task
        .params
        .kind()
        .contribute(&task.job, task.round, &mut agent.data)
        .expect("contribution");
    parts.remove(0).contribution
}

/// The Newton fit of every institution's rows pooled, under the federation's preprocessing.
fn pooled_fit(
    pre: &fedrisk_models::Preprocessor,
    sets: &[Dataset],
) -> fedrisk_models::logistic::FitReport {
    let mut x = Vec::new();
    let mut y = Vec::new();
    for d in sets {
        x.extend(pre.transform_ref(d).iter().copied());
        y.extend(d.labels_f64().expect("labels"));
    }
    let x = ndarray::Array2::from_shape_vec((y.len(), pre.width()), x).expect("shape");
    fit_newton(
        x.view(),
        &y,
        &NewtonOptions {
            penalty: Penalty::sklearn(1.0),
            max_iter: 50,
            tol: 1e-10,
        },
    )
    .expect("pooled fit")
}

fn spec(schema: &Schema, rounds: u32) -> JobSpec {
    let mut spec = JobSpec::new("in-memory", schema.clone());
    spec.rounds = rounds;
    spec.settings.validation_fraction = 0.0;
    spec
}

#[test]
fn a_whole_newton_job_runs_in_memory_and_reaches_the_pooled_fit() {
    let (schema, sets) = federation(4);
    let mut spec = spec(&schema, 8);
    // Every round runs when early stopping is off.
    spec.tolerance = 0.0;
    let mut plan = new_plan(&spec, 1);
    let mut agents = agents(&sets);
    let mut rng = ChaCha20Rng::seed_from_u64(5);
    let mut outcomes = Vec::new();
    let mut labels = Vec::new();
    while let Some(req) = plan.next_session() {
        labels.push((req.round, req.label));
        let sum = run_session(&spec, 1, &req, &mut agents, &[], &mut rng).expect("session");
        match plan.on_output(sum).expect("plan") {
            Progress::RoundCompleted(o) => outcomes.push(o),
            Progress::Continue => {}
            p => panic!("unexpected: {p:?}"),
        }
    }
    assert!(plan.is_done());
    assert_eq!(outcomes.len(), 9, "statistics round and 8 training rounds");
    // One secure session per training round, and one more for the last model.
    let mut expected = vec![(0, "magnitudes"), (0, "statistics"), (1, "update")];
    expected.extend((2..=8).map(|r| (r, "update_eval")));
    expected.push((8, "evaluation"));
    assert_eq!(labels, expected);
    // Every model is evaluated: rounds 1-7 by the next round's session, 8 by its own.
    for (r, o) in outcomes.iter().enumerate().skip(1) {
        let r = r as u32;
        let earlier = o.earlier_eval.as_ref().map(|(round, _)| *round);
        assert_eq!(earlier, (r >= 2).then_some(r - 1), "round {r}");
        assert_eq!(o.eval.is_some(), r == 8, "round {r}");
        assert!(o.model.is_some(), "round {r}");
    }
    assert_eq!(outcomes[0].round, 0);
    let total: usize = sets.iter().map(Dataset::rows).sum();
    assert_eq!(outcomes[0].checkpoint.stats.rows as usize, total);
    // The pooled fit under the federation's own preprocessing.
    let last = outcomes.last().expect("rounds");
    let pre = &last.checkpoint.preprocessor;
    let pooled = pooled_fit(pre, &sets);
    let worst = last
        .checkpoint
        .theta
        .iter()
        .zip(&pooled.theta)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max);
    assert!(
        worst < 1e-4,
        "federated and pooled parameters differ by {worst}"
    );
    let model = last.model.as_ref().expect("model version");
    assert_eq!(model.provenance.rounds, 8);
    let eval = last.eval.as_ref().expect("evaluation");
    assert_eq!(eval.rows as usize, total);
    assert!(eval.auc > 0.6 && eval.auc < 1.0, "AUC {}", eval.auc);
}

#[test]
fn a_newton_job_stops_when_its_decrement_is_below_the_tolerance_and_a_restart_runs_nothing_more() {
    let (schema, sets) = federation(3);
    let spec = spec(&schema, 40);
    assert_eq!(spec.tolerance, 1e-6, "the documented default");
    let mut plan = new_plan(&spec, 3);
    let mut agents = agents(&sets);
    let mut rng = ChaCha20Rng::seed_from_u64(11);
    let mut outcomes = Vec::new();
    while let Some(req) = plan.next_session() {
        let sum = run_session(&spec, 3, &req, &mut agents, &[], &mut rng).expect("session");
        if let Progress::RoundCompleted(o) = plan.on_output(sum).expect("plan") {
            outcomes.push(o);
        }
    }
    assert!(plan.is_done());
    let last = outcomes.last().expect("rounds");
    let decrements: Vec<f64> = outcomes[1..]
        .iter()
        .map(|o| o.decrement.expect("a Newton round's decrement"))
        .collect();
    let converged = plan
        .converged()
        .unwrap_or_else(|| panic!("not converged: {decrements:?}"));
    assert!(
        last.round < 40,
        "Newton converges long before 40 rounds; ran {}",
        last.round
    );
    assert_eq!(converged.round, last.round);
    assert_eq!(last.checkpoint.converged, Some(converged));
    // Only the last round's decrement is below the tolerance, and decrements fall.
    assert_eq!(converged.decrement, *decrements.last().expect("decrements"));
    assert!(converged.decrement < 1e-6, "{decrements:?}");
    assert!(
        decrements[..decrements.len() - 1]
            .iter()
            .all(|d| *d >= 1e-6),
        "{decrements:?}"
    );
    assert!(decrements.windows(2).all(|w| w[1] < w[0]), "{decrements:?}");
    // The reported step is the largest change of a coefficient.
    for w in outcomes[1..].windows(2) {
        let measured = step_size(&w[0].checkpoint.theta, &w[1].checkpoint.theta);
        assert_eq!(w[1].step, Some(measured));
    }
    assert_eq!(
        outcomes[0].step, None,
        "the statistics round has no coefficients"
    );
    // The stopped model is the pooled fit's, as far as the fixed point allows.
    let pre = &last.checkpoint.preprocessor;
    let pooled = pooled_fit(pre, &sets);
    let worst = step_size(&last.checkpoint.theta, &pooled.theta);
    assert!(
        worst < 1e-3,
        "stopped and pooled parameters differ by {worst}"
    );
    // A coordinator restarted from the converged checkpoint runs no further session.
    let mut resumed = JobPlan::resume(
        spec.clone(),
        PlanIds {
            federation_id: FEDERATION.into(),
            job_id: 3,
        },
        Some((last.checkpoint.clone(), last.round)),
        None,
    );
    assert!(resumed.next_session().is_none());
    assert!(resumed.is_done());
    // FedAvg has no Newton decrement: such a job runs every round.
    let mut avg = spec.clone();
    avg.settings.algorithm = fedrisk_rounds::Algorithm::FedAvg;
    avg.rounds = 2;
    avg.tolerance = 1.0;
    let mut plan = new_plan(&avg, 4);
    let mut rounds = 0;
    while let Some(req) = plan.next_session() {
        let sum = run_session(&avg, 4, &req, &mut agents, &[], &mut rng).expect("session");
        if let Progress::RoundCompleted(_) = plan.on_output(sum).expect("plan") {
            rounds += 1;
        }
    }
    assert_eq!(rounds, 3, "statistics and both training rounds");
    assert_eq!(plan.converged(), None);
}

#[test]
fn a_failed_evaluation_is_retried_alone_and_the_update_is_not_asked_for_again() {
    let (schema, sets) = federation(4);
    let mut spec = spec(&schema, 1);
    spec.max_attempts = 2;
    let mut plan = new_plan(&spec, 2);
    let mut agents = agents(&sets);
    let mut rng = ChaCha20Rng::seed_from_u64(6);
    let mut labels = Vec::new();
    let mut failed_once = false;
    while let Some(req) = plan.next_session() {
        labels.push((req.label, req.new_attempt));
        if req.label == "evaluation" && !failed_once {
            failed_once = true;
            let next = plan
                .on_failure(Failure::Transient("an agent dropped".into()))
                .expect("retry allowed");
            assert!(matches!(next, fedrisk_rounds::AfterFailure::Retry));
            continue;
        }
        let sum = run_session(&spec, 2, &req, &mut agents, &[], &mut rng).expect("session");
        plan.on_output(sum).expect("plan");
    }
    assert_eq!(
        labels,
        vec![
            ("magnitudes", true),
            ("statistics", false),
            ("update", true),
            ("evaluation", false),
            ("evaluation", true),
        ]
    );
}

#[test]
fn a_session_losing_a_participant_after_masking_still_sums_the_survivors() {
    let (schema, sets) = federation(5);
    let spec = spec(&schema, 1);
    let mut plan = new_plan(&spec, 3);
    let mut agents = agents(&sets);
    let mut rng = ChaCha20Rng::seed_from_u64(7);
    let req = plan.next_session().expect("magnitudes");
    let sum = run_session(&spec, 3, &req, &mut agents, &[5], &mut rng).expect("session");
    // Participant 5 sent its masked input and left before the consistency check: its
    // input is in the sum (the others release the shares that remove its mask).
    assert!(sum.survivors.contains(&5));
    assert_eq!(sum.contributors, 5);
    assert!(matches!(
        plan.on_output(sum).expect("plan"),
        Progress::Continue
    ));
}

#[test]
fn retries_stop_at_max_attempts_and_deterministic_failures_stop_at_once() {
    let (schema, _) = federation(3);
    let mut spec = spec(&schema, 1);
    spec.max_attempts = 2;
    let mut plan = new_plan(&spec, 4);
    plan.next_session().expect("first");
    plan.on_failure(Failure::Transient("deadline".into()))
        .expect("second attempt allowed");
    let e = plan
        .on_failure(Failure::Transient("deadline again".into()))
        .unwrap_err();
    assert_eq!((e.round, e.attempts), (0, 2));
    assert!(e.reason.contains("deadline again"));
    let mut plan = JobPlan::new(
        spec,
        PlanIds {
            federation_id: FEDERATION.into(),
            job_id: 5,
        },
        None,
    );
    plan.next_session().expect("first");
    let e = plan
        .on_failure(Failure::Deterministic("bad configuration".into()))
        .unwrap_err();
    assert_eq!(e.attempts, 1);
}

#[test]
fn attack_a_sum_that_does_not_absorb_is_never_asked_for_again() {
    // A participant makes the statistics sum unusable (a value the plan cannot read). The
    // sum is unmasked already: the plan ends the attempt for good instead of asking the
    // same inputs again, which would hand the coordinator a second sum of them.
    let (schema, sets) = federation(3);
    let mut spec = spec(&schema, 1);
    spec.max_attempts = 3;
    let mut plan = new_plan(&spec, 6);
    let mut agents = agents(&sets);
    let mut rng = ChaCha20Rng::seed_from_u64(66);
    let req = plan.next_session().expect("magnitudes");
    let mut sum = run_session(&spec, 6, &req, &mut agents, &[], &mut rng).expect("session");
    sum.sums.truncate(1);
    let e = plan
        .on_output(sum)
        .expect_err("the job fails, nothing is retried");
    assert!(e.reason.contains("does not absorb"), "{}", e.reason);
    assert_eq!(e.attempts, 1, "no second attempt");
}

#[test]
fn a_restarted_agent_computes_from_the_task_alone() {
    // An agent whose cache is empty (it restarted mid-job) receives round 3's update task:
    // it needs nothing from the statistics round it never saw.
    let (schema, sets) = federation(3);
    let spec = spec(&schema, 5);
    let mut plan = new_plan(&spec, 6);
    let mut all = agents(&sets);
    let mut rng = ChaCha20Rng::seed_from_u64(8);
    let req = run_until(&mut plan, &spec, 6, &mut all, &mut rng, 3, "update_eval");
    let mut fresh = agents(&sets);
    assert_eq!(
        contribution(&req, 6, &mut fresh[0]),
        contribution(&req, 6, &mut all[0])
    );
    // A task for another job or round than its envelope is refused.
    assert!(matches!(
        Task::decode(&req.task, 7, 3),
        Err(RoundError::Task(_))
    ));
}

#[test]
fn a_restarted_plan_resumes_after_the_completed_update_without_asking_for_it_again() {
    let (schema, sets) = federation(3);
    let spec = spec(&schema, 2);
    let ids = || PlanIds {
        federation_id: FEDERATION.into(),
        job_id: 9,
    };
    let mut plan = JobPlan::new(spec.clone(), ids(), None);
    let mut agents = agents(&sets);
    let mut rng = ChaCha20Rng::seed_from_u64(9);
    let mut checkpoint = None;
    let mut partial = None;
    // Run until round 2's update (with round 1's evaluation) has completed: then the
    // coordinator "crashes".
    while let Some(req) = plan.next_session() {
        let update = req.label == "update_eval";
        let sum = run_session(&spec, 9, &req, &mut agents, &[], &mut rng).expect("session");
        match plan.on_output(sum).expect("plan") {
            Progress::RoundCompleted(o) => checkpoint = Some((o.checkpoint.clone(), o.round)),
            Progress::Continue if update => {
                partial = plan.partial();
                break;
            }
            _ => {}
        }
    }
    let partial = partial.expect("the update's result is kept");
    // A plan rebuilt from the store continues with the last model's evaluation, not the
    // update, and still knows round 1's evaluation, which came with the update.
    assert_eq!(checkpoint.as_ref().map(|c| c.1), Some(1));
    let mut resumed = JobPlan::resume(spec.clone(), ids(), checkpoint, Some(partial));
    let next = resumed.next_session().expect("a session");
    assert_eq!((next.round, next.label), (2, "evaluation"));
    let sum = run_session(&spec, 9, &next, &mut agents, &[], &mut rng).expect("session");
    let Progress::RoundCompleted(o) = resumed.on_output(sum).expect("plan") else {
        panic!("the last round completes");
    };
    assert_eq!(o.round, 2);
    assert!(o.eval.is_some());
    assert_eq!(o.earlier_eval.as_ref().map(|e| e.0), Some(1));
    assert!(resumed.is_done());
    assert!(resumed.next_session().is_none());
}

#[test]
fn attack_an_unbounded_histogram_is_refused_before_any_computation() {
    // A coordinator asks for a billion-bin score histogram: the agent would allocate it
    // before secagg's own policy saw the vector length.
    let (schema, sets) = federation(3);
    let spec = spec(&schema, 1);
    let mut plan = new_plan(&spec, 10);
    let mut agents = agents(&sets);
    let mut rng = ChaCha20Rng::seed_from_u64(10);
    let evaluation = run_until(&mut plan, &spec, 10, &mut agents, &mut rng, 1, "evaluation");
    let mut task = Task::decode(&evaluation.task, 10, 1).expect("task");
    let limits = fedrisk_rounds::TaskLimits::default();
    task.check_limits(&limits)
        .expect("the job's own evaluation is within limits");
    if let fedrisk_rounds::TaskParams::Evaluation(e) = &mut task.params {
        e.bins = 1_000_000_000;
    }
    let e = task.check_limits(&limits).unwrap_err();
    assert!(e.to_string().contains("exceeds this agent's limit"), "{e}");
}

#[test]
fn attack_a_newton_update_does_not_repeat_the_evaluations_loss() {
    // With the training rows as evaluation rows, the evaluation of model r and the Newton
    // update from model r would both carry each institution's loss at model r.
    let (schema, sets) = federation(3);
    let spec = spec(&schema, 2);
    let mut plan = new_plan(&spec, 11);
    let mut all = agents(&sets);
    let mut rng = ChaCha20Rng::seed_from_u64(11);
    let req = run_until(&mut plan, &spec, 11, &mut all, &mut rng, 2, "update_eval");
    let c = contribution(&req, 11, &mut all[0]);
    assert_eq!(c.values.last(), Some(&0.0), "the loss slot is not sent");
    assert!(c.values.iter().any(|v| *v != 0.0));
}

#[test]
fn attack_row_counts_differenced_across_rounds_are_in_no_sum() {
    // The coordinator takes two training rounds whose survivors differ by institution 4 and
    // looks for its row count in what each round's sum tells it (slot by slot and in the
    // difference). Row counts scale the values inside the masked vectors but are never a
    // slot of their own, for Newton and FedAvg alike.
    for algorithm in [
        fedrisk_rounds::Algorithm::Newton,
        fedrisk_rounds::Algorithm::FedAvg,
    ] {
        let (schema, sets) = federation(4);
        let mut spec = spec(&schema, 3);
        spec.settings.algorithm = algorithm;
        let mut plan = new_plan(&spec, 20);
        let mut agents = agents(&sets);
        let mut rng = ChaCha20Rng::seed_from_u64(20);
        let first = run_until(&mut plan, &spec, 20, &mut agents, &mut rng, 1, "update");
        let all = run_session(&spec, 20, &first, &mut agents, &[], &mut rng).expect("session");
        assert!(matches!(
            plan.on_output(all.clone()).expect("plan"),
            Progress::RoundCompleted(_)
        ));
        // Round 2's update would carry round 1's evaluation, whose row counts are the same
        // in every evaluation: without institution 4 it is asked for alone.
        let with_eval = run_until(
            &mut plan,
            &spec,
            20,
            &mut agents,
            &mut rng,
            2,
            "update_eval",
        );
        assert_eq!(with_eval.only, Some(vec![1, 2, 3, 4]));
        assert!(matches!(
            plan.on_failure(Failure::Transient("institution 4 left".into())),
            Ok(fedrisk_rounds::AfterFailure::WithoutEvaluation)
        ));
        let second = plan.next_session().expect("the update alone");
        assert_eq!(second.label, "update");
        let three =
            run_session(&spec, 20, &second, &mut agents[..3], &[], &mut rng).expect("session");
        let n4 = sets[3].rows() as f64;
        assert_eq!(all.contributors - three.contributors, 1);
        let mut seen: Vec<f64> = vec![(all.contributors - three.contributors) as f64];
        seen.extend(all.sums.iter().chain(&three.sums));
        seen.extend(all.sums.iter().zip(&three.sums).map(|(a, b)| a - b));
        assert!(
            seen.iter().all(|v| (v - n4).abs() > 0.5),
            "{algorithm}: institution 4's row count {n4} is readable from two rounds' sums"
        );
        // The job still trains: FedAvg's scaled steps add up to the row-weighted average.
        assert!(matches!(
            plan.on_output(three).expect("plan"),
            Progress::RoundCompleted(_)
        ));
    }
}

#[test]
fn fedavg_steps_scaled_by_row_share_sum_to_the_row_weighted_average() {
    let (schema, sets) = federation(3);
    let mut spec = spec(&schema, 2);
    spec.settings.algorithm = fedrisk_rounds::Algorithm::FedAvg;
    let mut plan = new_plan(&spec, 21);
    let mut agents = agents(&sets);
    let mut rng = ChaCha20Rng::seed_from_u64(21);
    let req = run_until(&mut plan, &spec, 21, &mut agents, &mut rng, 1, "update");
    let task = Task::decode(&req.task, 21, 1).expect("task");
    let fedrisk_rounds::TaskParams::Update(update) = &task.params else {
        panic!("an update task");
    };
    let start = update.model.theta.clone();
    // What plain FedAvg would compute: each institution's local model, averaged by rows.
    let mut expected = vec![0.0; start.len()];
    let total: f64 = sets.iter().map(|d| d.rows() as f64).sum();
    for (a, d) in agents.iter_mut().zip(&sets) {
        let c = contribution(&req, 21, a);
        assert_eq!(c.weight, 1, "no row count travels");
        let share = d.rows() as f64 / total;
        for ((e, step), g) in expected.iter_mut().zip(&c.values).zip(&start) {
            // step = share * (local - start)
            *e += share * (g + step / share);
        }
    }
    let sum = run_session(&spec, 21, &req, &mut agents, &[], &mut rng).expect("session");
    let Progress::RoundCompleted(_) = plan.on_output(sum).expect("plan") else {
        panic!("round 1 completes");
    };
    let next = plan.next_session().expect("round 2");
    let task = Task::decode(&next.task, 21, 2).expect("task");
    let fedrisk_rounds::TaskParams::UpdateEval(eval) = &task.params else {
        panic!("round 2's update with round 1's evaluation");
    };
    let worst = eval
        .model
        .theta
        .iter()
        .zip(&expected)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max);
    assert!(
        worst < 1e-6,
        "FedAvg differs from the row-weighted average by {worst}"
    );
}

#[test]
fn evaluations_invite_the_statistics_participants_only_and_are_skipped_without_them() {
    let (schema, sets) = federation(4);
    let mut spec = spec(&schema, 2);
    spec.max_attempts = 3;
    let mut plan = new_plan(&spec, 22);
    let mut agents = agents(&sets);
    let mut rng = ChaCha20Rng::seed_from_u64(22);
    // Round 2's update carries round 1's evaluation: it runs over the statistics
    // session's survivors only.
    let req = run_until(
        &mut plan,
        &spec,
        22,
        &mut agents,
        &mut rng,
        2,
        "update_eval",
    );
    assert_eq!(
        req.only,
        Some(vec![1, 2, 3, 4]),
        "the statistics session's survivors"
    );
    // One of them left: the update is asked for alone, over whoever is there, and round
    // 1's model stays unevaluated.
    assert!(matches!(
        plan.on_failure(Failure::Transient("agent 4 left".into())),
        Ok(fedrisk_rounds::AfterFailure::WithoutEvaluation)
    ));
    let update = plan.next_session().expect("the update alone");
    assert_eq!(
        (
            update.round,
            update.label,
            update.only.clone(),
            update.only_needed
        ),
        (2, "update", Some(vec![1, 2, 3, 4]), true)
    );
    assert!(update.new_attempt, "a new attempt of the round");
    let sum = run_session(&spec, 22, &update, &mut agents, &[], &mut rng).expect("session");
    assert!(matches!(
        plan.on_output(sum).expect("plan"),
        Progress::Continue
    ));
    // The last model's own evaluation cannot run over them either: after the attempts,
    // the round completes with its model and without an evaluation.
    let eval = plan.next_session().expect("evaluation");
    assert_eq!((eval.round, eval.label), (2, "evaluation"));
    assert_eq!(eval.only, Some(vec![1, 2, 3, 4]));
    let Ok(fedrisk_rounds::AfterFailure::Skipped(outcome)) =
        plan.on_failure(Failure::Deterministic("agent 4 is not available".into()))
    else {
        panic!("the evaluation is skipped, not the job failed");
    };
    assert_eq!(outcome.round, 2);
    assert!(outcome.eval.is_none());
    assert!(outcome.earlier_eval.is_none());
    assert!(outcome.model.is_some());
    assert!(plan.is_done());
}

#[test]
fn the_coordinators_sessions_pass_the_default_agent_policy_up_to_5000_participants() {
    // At 300 and more the coordinator used to propose SecAgg+ graphs every default agent
    // refused. Whatever n, what it proposes must pass the policy agents run by default,
    // which recomputes the graph's privacy bound.
    let (schema, _) = federation(3);
    let spec = spec(&schema, 1);
    let mut plan = new_plan(&spec, 23);
    let req = plan.next_session().expect("a session");
    let policy = ParticipantPolicy::default();
    let mut harary = 0;
    for n in [3usize, 5, 50, 99, 100, 150, 200, 300, 500, 1000, 2000, 5000] {
        let params = session_params(&spec, &req, (1..=n as u32).collect());
        if let fedrisk_secagg::GraphKind::Harary { degree, .. } = params.graph {
            harary += 1;
            assert!((degree as usize) < n - 1, "n {n}: degree {degree}");
        }
        policy
            .check(&params)
            .unwrap_or_else(|e| panic!("n {n}: a default agent refuses {:?}: {e}", params.graph));
    }
    assert!(harary >= 3, "SecAgg+ graphs are used at scale");
}

/// The institutions' rows as one data set.
fn pooled(sets: &[Dataset]) -> Dataset {
    let num: Vec<_> = sets.iter().map(|d| d.numeric.view()).collect();
    let cat: Vec<_> = sets.iter().map(|d| d.categorical.view()).collect();
    Dataset {
        numeric: ndarray::concatenate(ndarray::Axis(0), &num).expect("numeric"),
        categorical: ndarray::concatenate(ndarray::Axis(0), &cat).expect("categorical"),
        labels: Some(
            sets.iter()
                .flat_map(|d| d.labels.clone().expect("labels"))
                .collect(),
        ),
    }
}

#[test]
fn a_binned_job_gives_exactly_the_binning_of_the_pooled_rows() {
    let (schema, sets) = federation(4);
    let mut spec = spec(&schema, 3);
    spec.binning = fedrisk_rounds::Binning::Woe;
    let mut plan = new_plan(&spec, 11);
    let mut agents = agents(&sets);
    let mut rng = ChaCha20Rng::seed_from_u64(11);
    let mut outcomes = Vec::new();
    let mut labels = Vec::new();
    while let Some(req) = plan.next_session() {
        labels.push(req.label);
        let sum = run_session(&spec, 11, &req, &mut agents, &[], &mut rng).expect("session");
        if let Progress::RoundCompleted(o) = plan.on_output(sum).expect("plan") {
            outcomes.push(o);
        }
    }
    assert_eq!(
        labels[..4],
        ["magnitudes", "statistics", "bin_counts", "update"]
    );
    let federated = outcomes[0]
        .checkpoint
        .preprocessor
        .woe
        .clone()
        .expect("a binned job's preprocessing carries its bins");
    // The same algorithm on the pooled rows: cut points, counts, WOE and IV all equal.
    let central =
        fedrisk_models::binning::fit_pooled(&schema, &pooled(&sets), &spec.binning_options)
            .expect("pooled binning");
    assert_eq!(federated, central);
    assert!(
        federated
            .features
            .iter()
            .any(|f| f.bins.iter().any(|b| b.label.starts_with("special"))),
        "the generated data declares special codes"
    );
    // The model trains on WOE and its file scores raw rows with the bins it carries.
    let last = outcomes.last().expect("rounds");
    let model = last.model.as_ref().expect("model");
    assert_eq!(model.columns, federated.columns());
    let eval = last.eval.as_ref().expect("evaluation");
    assert!(eval.auc > 0.6, "AUC {}", eval.auc);
    let scores = model.score_dataset(sets[0].clone()).expect("scores");
    assert!(scores.iter().all(|p| (0.0..=1.0).contains(p)));
}

#[test]
fn a_restarted_binned_plan_resumes_with_the_bin_counts() {
    let (schema, sets) = federation(3);
    let mut spec = spec(&schema, 1);
    spec.binning = fedrisk_rounds::Binning::Woe;
    let ids = || PlanIds {
        federation_id: FEDERATION.into(),
        job_id: 12,
    };
    let mut plan = JobPlan::new(spec.clone(), ids(), None);
    let mut agents = agents(&sets);
    let mut rng = ChaCha20Rng::seed_from_u64(12);
    for _ in 0..2 {
        let req = plan.next_session().expect("a session");
        let sum = run_session(&spec, 12, &req, &mut agents, &[], &mut rng).expect("session");
        assert!(matches!(
            plan.on_output(sum).expect("plan"),
            Progress::Continue
        ));
    }
    let partial = plan.partial().expect("the statistics are kept");
    let mut resumed = JobPlan::resume(spec.clone(), ids(), None, Some(partial));
    let next = resumed.next_session().expect("a session");
    assert_eq!((next.round, next.label), (0, "bin_counts"));
    assert!(!next.first_of_job);
}

/// An agent's view of the job: a replica of the plan advanced by each session's record,
/// checked against the agents' keys.
fn replica_check(
    replica: &mut Replica,
    req: &SessionRequest,
    entry: &LineageEntry,
    agents: &[Agent],
) -> Result<(), fedrisk_rounds::LineageError> {
    replica.expects(req.round, &req.binding)?;
    let roster = Roster::new(agents.iter().map(|a| (a.id, a.key.verifying_key())));
    replica.apply(entry, &roster, &ParticipantPolicy::default())
}

/// [`run_until`] with every session's record checked by an agent's replica on the way.
#[allow(clippy::too_many_arguments)]
fn run_until_checked(
    plan: &mut JobPlan,
    replica: &mut Replica,
    spec: &JobSpec,
    job_id: u64,
    agents: &mut [Agent],
    rng: &mut ChaCha20Rng,
    round: u32,
    label: &str,
) -> SessionRequest {
    loop {
        let req = plan.next_session().expect("a session");
        if req.round == round && req.label == label {
            return req;
        }
        let (sum, entry) = run_recorded(spec, job_id, &req, agents, &[], &Default::default(), rng)
            .expect("session");
        replica_check(replica, &req, &entry, agents).expect("honest lineage");
        plan.on_output(sum).expect("plan");
    }
}

#[test]
fn an_agents_replica_follows_the_whole_job_from_its_verified_sums() {
    for (algorithm, binning) in [
        (
            fedrisk_rounds::Algorithm::Newton,
            fedrisk_rounds::Binning::None,
        ),
        (
            fedrisk_rounds::Algorithm::FedAvg,
            fedrisk_rounds::Binning::None,
        ),
        (
            fedrisk_rounds::Algorithm::Newton,
            fedrisk_rounds::Binning::Woe,
        ),
    ] {
        let (schema, sets) = federation(4);
        let mut spec = spec(&schema, 3);
        spec.tolerance = 0.0;
        spec.settings.algorithm = algorithm;
        spec.binning = binning;
        let mut plan = new_plan(&spec, 30);
        let mut replica = Replica::new(spec.clone(), FEDERATION, 30);
        let mut agents = agents(&sets);
        let mut rng = ChaCha20Rng::seed_from_u64(30);
        let mut sessions = 0;
        while let Some(req) = plan.next_session() {
            let (sum, entry) = run_recorded(
                &spec,
                30,
                &req,
                &mut agents,
                &[],
                &Default::default(),
                &mut rng,
            )
            .expect("session");
            replica_check(&mut replica, &req, &entry, &agents)
                .unwrap_or_else(|e| panic!("{algorithm:?} {binning:?}: {e}"));
            plan.on_output(sum).expect("plan");
            sessions += 1;
        }
        assert_eq!(replica.applied(), sessions);
        assert!(
            replica.expects(3, &[0; 32]).is_err(),
            "nothing after the job"
        );
    }
}

#[test]
fn attack_a_crafted_evaluation_model_is_refused() {
    // The coordinator scores a model of its own making (one non-zero coefficient: the score
    // histogram becomes a histogram of that feature) in place of the round's model, then
    // tries an update at a chosen model, then a made-up sum that would lead to its model.
    let (schema, sets) = federation(4);
    let spec = spec(&schema, 3);
    let mut plan = new_plan(&spec, 31);
    let mut replica = Replica::new(spec.clone(), FEDERATION, 31);
    let mut agents = agents(&sets);
    let mut rng = ChaCha20Rng::seed_from_u64(31);
    let roster = Roster::new(agents.iter().map(|a| (a.id, a.key.verifying_key())));
    let policy = ParticipantPolicy::default();
    let evaluation = run_until_checked(
        &mut plan,
        &mut replica,
        &spec,
        31,
        &mut agents,
        &mut rng,
        2,
        "update_eval",
    );
    replica
        .expects(2, &evaluation.binding)
        .expect("round 1's evaluation (with round 2's update) is accepted");

    let crafted = |req: &SessionRequest| {
        let mut task = Task::decode(&req.task, 31, req.round).expect("task");
        match &mut task.params {
            fedrisk_rounds::TaskParams::Evaluation(e) => {
                e.model.theta.iter_mut().for_each(|t| *t = 0.0);
                e.model.theta[0] = 25.0;
            }
            fedrisk_rounds::TaskParams::Update(u) => {
                u.model.theta.iter_mut().for_each(|t| *t = 0.0);
                u.model.theta[1] = -3.0;
            }
            fedrisk_rounds::TaskParams::UpdateEval(u) => {
                u.model.theta.iter_mut().for_each(|t| *t = 0.0);
                u.model.theta[0] = 25.0;
            }
            _ => panic!("not a model task"),
        }
        fedrisk_rounds::task::binding(&task.encode().bytes)
    };
    let e = replica.expects(2, &crafted(&evaluation)).unwrap_err();
    assert!(
        e.to_string().contains("not what the job's plan asks for"),
        "{e}"
    );

    // The honest evaluation runs; the next update is asked at a model of the coordinator's.
    let (sum, entry) = run_recorded(
        &spec,
        31,
        &evaluation,
        &mut agents,
        &[],
        &Default::default(),
        &mut rng,
    )
    .expect("session");
    replica.apply(&entry, &roster, &policy).expect("honest");
    plan.on_output(sum).expect("plan");
    let update = plan.next_session().expect("round 3 update");
    assert_eq!((update.round, update.label), (3, "update_eval"));
    assert!(replica.expects(3, &crafted(&update)).is_err());
    replica
        .expects(3, &update.binding)
        .expect("the real update");

    // A made-up sum for the real update: it does not open the survivors' commitments.
    let (_, entry) = run_recorded(
        &spec,
        31,
        &update,
        &mut agents,
        &[],
        &Default::default(),
        &mut rng,
    )
    .expect("session");
    let LineageEntry::Session(mut record) = entry.clone() else {
        panic!("a session record")
    };
    record.sum[2] = record.sum[2].wrapping_add(1 << 20);
    let mut forged = Replica::new(spec.clone(), FEDERATION, 31);
    let e = replica
        .apply(&LineageEntry::Session(record.clone()), &roster, &policy)
        .unwrap_err();
    assert!(
        matches!(e, fedrisk_rounds::LineageError::Unverified { .. }),
        "{e}"
    );
    // Nor does a record whose commitments are cut down to the colluders' (two of four).
    record.sum = match &entry {
        LineageEntry::Session(r) => r.sum.clone(),
        _ => unreachable!(),
    };
    record.commitments.truncate(2);
    let e = replica
        .apply(&LineageEntry::Session(record), &roster, &policy)
        .unwrap_err();
    assert!(e.to_string().contains("fewer than"), "{e}");
    // A fresh replica shown the records out of order refuses the first one.
    assert!(forged.apply(&entry, &roster, &policy).is_err());
    // The honest record still applies after the refusals.
    replica
        .apply(&entry, &roster, &policy)
        .expect("the real sum");
}

#[test]
fn attack_a_session_among_too_few_institutions_does_not_enter_the_lineage() {
    // Two colluders run the round's update among themselves with a threshold of two, so
    // that the sum (and the next model) is theirs to choose.
    let (schema, sets) = federation(4);
    let spec = spec(&schema, 2);
    let mut plan = new_plan(&spec, 32);
    let mut replica = Replica::new(spec.clone(), FEDERATION, 32);
    let mut agents = agents(&sets);
    let mut rng = ChaCha20Rng::seed_from_u64(32);
    let update = run_until_checked(
        &mut plan,
        &mut replica,
        &spec,
        32,
        &mut agents,
        &mut rng,
        1,
        "update",
    );
    let mut two = JobSpec::clone(&spec);
    two.threshold = Some(2);
    // The colluders' agents accept a session of two.
    let lax = ParticipantPolicy {
        min_distinct: 2,
        min_threshold: 2,
        ..ParticipantPolicy::default()
    };
    let (_, entry) =
        run_recorded(&two, 32, &update, &mut agents[..2], &[], &lax, &mut rng).expect("session");
    let roster = Roster::new(agents.iter().map(|a| (a.id, a.key.verifying_key())));
    let e = replica
        .apply(&entry, &roster, &ParticipantPolicy::default())
        .unwrap_err();
    assert!(
        matches!(e, fedrisk_rounds::LineageError::Unverified { .. }),
        "{e}"
    );
}

/// A real job's first lineage record (encoded), its specification and the roster that
/// signed it, built once for the hostile-input properties below.
fn sample_record() -> &'static (JobSpec, Vec<u8>, Roster) {
    static SAMPLE: std::sync::OnceLock<(JobSpec, Vec<u8>, Roster)> = std::sync::OnceLock::new();
    SAMPLE.get_or_init(|| {
        let (schema, sets) = federation(3);
        let spec = spec(&schema, 2);
        let mut plan = new_plan(&spec, 40);
        let mut agents = agents(&sets);
        let mut rng = ChaCha20Rng::seed_from_u64(40);
        let req = plan.next_session().expect("a session");
        let (_, entry) = run_recorded(
            &spec,
            40,
            &req,
            &mut agents,
            &[],
            &Default::default(),
            &mut rng,
        )
        .expect("session");
        let roster = Roster::new(agents.iter().map(|a| (a.id, a.key.verifying_key())));
        (spec, entry.encode(), roster)
    })
}

#[test]
fn the_sample_record_applies() {
    let (spec, bytes, roster) = sample_record();
    let entry = LineageEntry::decode(bytes).expect("decodes");
    let mut replica = Replica::new(spec.clone(), FEDERATION, 40);
    replica
        .apply(&entry, roster, &ParticipantPolicy::default())
        .expect("the job's own record applies");
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(1500))]

    /// What a coordinator serves as a lineage record, job specification or session
    /// configuration reaches the agent's decoders and replica: an error, never a panic.
    #[test]
    fn a_mutated_lineage_record_is_refused_or_applied_never_a_panic(
        pos in proptest::prelude::any::<usize>(),
        val in proptest::prelude::any::<u8>(),
    ) {
        let (spec, bytes, roster) = sample_record();
        let mut b = bytes.clone();
        let i = pos % b.len();
        b[i] = val;
        if let Ok(entry) = LineageEntry::decode(&b) {
            let mut replica = Replica::new(spec.clone(), FEDERATION, 40);
            let applied = replica.apply(&entry, roster, &ParticipantPolicy::default());
            // A changed configuration, sum, blinding, commitment or signature must not
            // verify. (Which certificate a commitment names is resolved by the caller, who
            // hands over the roster of keys: that field is not checked here.) Hex is compared
            // as the bytes it decodes to: `A` and `a` are the same nibble.
            let checked = |e: &LineageEntry| match e {
                LineageEntry::Session(r) => Some((
                    r.config.to_ascii_lowercase(),
                    r.sum.clone(),
                    r.blinding_sum.clone(),
                    r.commitments
                        .iter()
                        .map(|c| {
                            (
                                c.id,
                                c.commitment,
                                c.signature,
                            )
                        })
                        .collect::<Vec<_>>(),
                )),
                LineageEntry::SkippedEvaluation { .. } => None,
            };
            if applied.is_ok() {
                let original = LineageEntry::decode(bytes).expect("the sample decodes");
                proptest::prop_assert_eq!(
                    checked(&original),
                    checked(&entry),
                    "a record that differs in content applied"
                );
            }
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_record_spec_or_config_decoders(
        bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..800),
    ) {
        let _ = LineageEntry::decode(&bytes);
        let _ = SessionConfig::decode(&bytes);
        if let Ok(spec) = JobSpec::from_json(&String::from_utf8_lossy(&bytes)) {
            let _ = Replica::new(spec, FEDERATION, 1);
        }
    }

    #[test]
    fn a_mutated_job_specification_never_panics_the_replica(
        pos in proptest::prelude::any::<usize>(),
        val in proptest::prelude::any::<u8>(),
    ) {
        let (spec, bytes, roster) = sample_record();
        let mut json = spec.to_json().into_bytes();
        let i = pos % json.len();
        json[i] = val;
        if let Ok(spec) = JobSpec::from_json(&String::from_utf8_lossy(&json)) {
            let mut replica = Replica::new(spec, FEDERATION, 40);
            if let Ok(entry) = LineageEntry::decode(bytes) {
                let _ = replica.apply(&entry, roster, &ParticipantPolicy::default());
            }
        }
    }
}

#[test]
fn an_evaluation_riding_with_an_update_equals_the_evaluation_on_its_own() {
    // The same round-1 model, evaluated in a session of its own (a one-round job) and in
    // round 2's session beside the update (a two-round job): the same figures. Each part
    // of the input is scaled by its own row count, so the histograms sum to the same
    // counts.
    let (schema, sets) = federation(4);
    let evaluate = |rounds: u32| {
        let spec = spec(&schema, rounds);
        let mut plan = new_plan(&spec, 40);
        let mut agents = agents(&sets);
        let mut rng = ChaCha20Rng::seed_from_u64(40);
        let mut found = None;
        while let Some(req) = plan.next_session() {
            let sum = run_session(&spec, 40, &req, &mut agents, &[], &mut rng).expect("session");
            if let Progress::RoundCompleted(o) = plan.on_output(sum).expect("plan") {
                if rounds == 1 && o.round == 1 {
                    found = o.eval.clone();
                }
                if let Some((1, e)) = &o.earlier_eval {
                    found = Some(e.clone());
                }
            }
            if found.is_some() {
                break;
            }
        }
        found.expect("round 1's evaluation")
    };
    let alone = evaluate(1);
    let riding = evaluate(2);
    assert_eq!(alone.rows, riding.rows);
    assert!(alone.rows > 0.0);
    for (what, a, b) in [
        ("AUC", alone.auc, riding.auc),
        ("KS", alone.ks, riding.ks),
        ("log loss", alone.log_loss, riding.log_loss),
    ] {
        assert!((a - b).abs() < 1e-6, "{what}: {a} alone, {b} riding");
    }
}

#[test]
fn a_dropped_evaluation_is_followed_by_agents_and_kept_across_a_restart() {
    let (schema, sets) = federation(4);
    let spec = spec(&schema, 3);
    let ids = || PlanIds {
        federation_id: FEDERATION.into(),
        job_id: 41,
    };
    let mut plan = JobPlan::new(spec.clone(), ids(), None);
    let mut replica = Replica::new(spec.clone(), FEDERATION, 41);
    let mut agents = agents(&sets);
    let mut rng = ChaCha20Rng::seed_from_u64(41);
    let mut checkpoint = None;
    let with_eval = loop {
        let req = plan.next_session().expect("a session");
        if (req.round, req.label) == (2, "update_eval") {
            break req;
        }
        let (sum, entry) = run_recorded(
            &spec,
            41,
            &req,
            &mut agents,
            &[],
            &Default::default(),
            &mut rng,
        )
        .expect("session");
        replica_check(&mut replica, &req, &entry, &agents).expect("honest lineage");
        if let Progress::RoundCompleted(o) = plan.on_output(sum).expect("plan") {
            checkpoint = Some((o.checkpoint.clone(), o.round));
        }
    };
    replica
        .expects(2, &with_eval.binding)
        .expect("the update with round 1's evaluation");
    // A member of the statistics set is missing: the coordinator drops the evaluation and
    // says so in the lineage.
    assert!(matches!(
        plan.on_failure(Failure::Transient("institution 4 is not connected".into())),
        Ok(fedrisk_rounds::AfterFailure::WithoutEvaluation)
    ));
    let alone = plan.next_session().expect("the update alone");
    assert_eq!((alone.round, alone.label), (2, "update"));
    let skipped = LineageEntry::SkippedEvaluation {
        round: 2,
        binding: hex::encode(with_eval.binding),
    };
    // Without the entry the agent still expects the update with the evaluation.
    assert!(replica.expects(2, &alone.binding).is_err());
    let roster = Roster::new(agents.iter().map(|a| (a.id, a.key.verifying_key())));
    replica
        .apply(&skipped, &roster, &ParticipantPolicy::default())
        .expect("the dropped evaluation");
    replica
        .expects(2, &alone.binding)
        .expect("then the update alone");
    assert!(
        replica.expects(2, &with_eval.binding).is_err(),
        "and no longer the update with the evaluation"
    );
    // A skipped-evaluation entry naming another task is refused.
    let mut other = Replica::new(spec.clone(), FEDERATION, 41);
    assert!(
        other
            .apply(&skipped, &roster, &ParticipantPolicy::default())
            .is_err()
    );
    // A coordinator restarted here asks for the update alone too.
    let partial = plan.partial().expect("the dropped evaluation is kept");
    let mut resumed = JobPlan::resume(spec.clone(), ids(), checkpoint, Some(partial));
    let again = resumed.next_session().expect("a session");
    assert_eq!(again.binding, alone.binding);
}

#[test]
fn attack_round_one_carries_the_training_counts_so_it_runs_over_the_statistics_set_only() {
    // Round 1's update starts from zero coefficients: every row scores 1/2, so the
    // intercept's Hessian entry is a quarter of the rows summed. Summed over the statistics
    // set less one institution, it gives that institution's row count against the
    // statistics' total. The kind names those counts, and the plan invites the statistics
    // set only and retries (never drops) round 1 when a member is missing.
    let (schema, sets) = federation(4);
    let mut spec = spec(&schema, 2);
    spec.max_attempts = 3;
    let mut plan = new_plan(&spec, 24);
    let mut agents = agents(&sets);
    let mut rng = ChaCha20Rng::seed_from_u64(24);
    let req = run_until(&mut plan, &spec, 24, &mut agents, &mut rng, 1, "update");
    assert_eq!(req.only, Some(vec![1, 2, 3, 4]), "the statistics set");
    assert!(req.only_needed, "round 1 cannot be dropped");

    // The attack the tie stops, run on the real kinds and session: the sum over three.
    let task = Task::decode(&req.task, 24, 1).expect("task");
    let kind = task.params.kind();
    let sum = run_session(&spec, 24, &req, &mut agents[..3], &[], &mut rng).expect("session");
    let k = plan_width(&task);
    let c = fedrisk_models::federated::newton_from_sum(&sum.sums, k).expect("sums");
    let three = 4.0 * c.hess[[k - 1, k - 1]];
    let fourth = (task.job.settings.total_rows - three).round() as u64;
    let counts = kind
        .constants(&task.job, &mut agents[3].data)
        .expect("constants");
    assert_eq!(
        counts.first().map(|c| c[0]),
        Some(fourth),
        "the difference is the fourth institution's training rows, and the kind names them"
    );
    // A member missing: round 1 is tried again over the same set, not over whoever is there.
    assert!(matches!(
        plan.on_failure(Failure::Transient("agent 4 left".into())),
        Ok(fedrisk_rounds::AfterFailure::Retry)
    ));
    let again = plan.next_session().expect("round 1 again");
    assert_eq!(
        (
            again.round,
            again.label,
            again.only.clone(),
            again.only_needed
        ),
        (1, "update", Some(vec![1, 2, 3, 4]), true)
    );
    let sum = run_session(&spec, 24, &again, &mut agents, &[], &mut rng).expect("session");
    assert!(matches!(
        plan.on_output(sum).expect("plan"),
        Progress::RoundCompleted(_)
    ));
    let next = plan.next_session().expect("round 2");
    assert_eq!((next.round, next.label), (2, "update_eval"));
    assert!(!next.only_needed, "round 2's evaluation can be dropped");
}

/// The number of parameters of an update task's model.
fn plan_width(task: &Task) -> usize {
    match &task.params {
        fedrisk_rounds::TaskParams::Update(u) => u.model.theta.len(),
        _ => panic!("an update task"),
    }
}

#[test]
fn dropping_an_evaluation_spends_none_of_the_rounds_attempts() {
    // With one attempt per round, a member missing from round 2's session with round 1's
    // evaluation still leaves the update alone to run: the drop is not a retry.
    let (schema, sets) = federation(4);
    let mut spec = spec(&schema, 2);
    spec.max_attempts = 1;
    let mut plan = new_plan(&spec, 25);
    let mut agents = agents(&sets);
    let mut rng = ChaCha20Rng::seed_from_u64(25);
    run_until(
        &mut plan,
        &spec,
        25,
        &mut agents,
        &mut rng,
        2,
        "update_eval",
    );
    assert!(matches!(
        plan.on_failure(Failure::Transient("agent 4 left".into())),
        Ok(fedrisk_rounds::AfterFailure::WithoutEvaluation)
    ));
    let update = plan.next_session().expect("the update alone");
    assert_eq!((update.round, update.label), (2, "update"));
    let sum = run_session(&spec, 25, &update, &mut agents, &[], &mut rng).expect("session");
    assert!(matches!(
        plan.on_output(sum).expect("plan"),
        Progress::Continue
    ));
    // The update alone failing is the round's one attempt: the job ends with the reason.
    let mut plan = new_plan(&spec, 26);
    run_until(
        &mut plan,
        &spec,
        26,
        &mut agents,
        &mut rng,
        2,
        "update_eval",
    );
    assert!(matches!(
        plan.on_failure(Failure::Transient("agent 4 left".into())),
        Ok(fedrisk_rounds::AfterFailure::WithoutEvaluation)
    ));
    plan.next_session().expect("the update alone");
    let e = plan
        .on_failure(Failure::Transient("agent 3 left too".into()))
        .expect_err("no attempt left");
    assert!(e.to_string().contains("agent 3 left too"), "{e}");
}

#[test]
fn attack_a_tiny_c_keeps_the_model_flat_so_every_update_names_the_counts() {
    // The coordinator submits C = 1e-300: round 1's step leaves every coefficient near
    // 1e-297 and only the intercept b moves, so every row scores sigma(b). When round 2's
    // session with round 1's evaluation fails, the update alone over all but institution 4
    // gives, against the statistics' total, 4's exact row count. Each agent sees its scores
    // do not spread and names its counts, so its ledger ties the update to the statistics
    // set; at the default C the same update names none.
    let (schema, sets) = federation(4);
    for (c, flat) in [(1e-300, true), (1.0, false)] {
        let mut spec = spec(&schema, 3);
        spec.settings.c = c;
        spec.tolerance = 0.0;
        let mut plan = new_plan(&spec, 27);
        let mut agents = agents(&sets);
        let mut rng = ChaCha20Rng::seed_from_u64(27);
        run_until(
            &mut plan,
            &spec,
            27,
            &mut agents,
            &mut rng,
            2,
            "update_eval",
        );
        assert!(matches!(
            plan.on_failure(Failure::Transient("agent 4 left".into())),
            Ok(fedrisk_rounds::AfterFailure::WithoutEvaluation)
        ));
        let req = plan.next_session().expect("the update alone");
        assert_eq!((req.round, req.label), (2, "update"));
        assert_eq!(req.only, Some(vec![1, 2, 3, 4]), "C = {c}");
        assert!(
            req.only_needed,
            "C = {c}: the update alone waits for its set"
        );
        let task = Task::decode(&req.task, 27, 2).expect("task");
        let kind = task.params.kind();
        for a in agents.iter_mut() {
            let named = kind.constants(&task.job, &mut a.data).expect("constants");
            assert!(!named.is_empty(), "C = {c}: agent {}", a.id);
        }
        if !flat {
            continue;
        }
        // The attack the agents' refusal stops, run through the real session.
        let sum = run_session(&spec, 27, &req, &mut agents[..3], &[], &mut rng).expect("session");
        let k = plan_width(&task);
        let theta = match &task.params {
            fedrisk_rounds::TaskParams::Update(u) => u.model.theta.clone(),
            _ => panic!("an update"),
        };
        let p0 = 1.0 / (1.0 + (-theta[k - 1]).exp());
        let curvature = fedrisk_models::federated::newton_from_sum(&sum.sums, k).expect("sums");
        let three = curvature.hess[[k - 1, k - 1]] / (p0 * (1.0 - p0));
        let fourth = (task.job.settings.total_rows - three).round() as u64;
        let named = kind
            .constants(&task.job, &mut agents[3].data)
            .expect("constants");
        assert_eq!(named[0], vec![fourth], "4's rows, exactly");
    }
}

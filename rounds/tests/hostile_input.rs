//! Hostile task bytes: whatever a coordinator (or anyone on the way) sends as a task, the
//! agent's decoder returns a task or an error, never a panic.

use fedrisk_models::Schema;
use fedrisk_models::synth::{SynthConfig, generate};
use fedrisk_rounds::{JobPlan, JobSpec, PlanIds, Task};
use proptest::prelude::*;

type Encoded = (Vec<u8>, Vec<(String, Vec<u8>)>);

/// A real task (the job's first), built once.
fn sample_task() -> Encoded {
    static SAMPLE: std::sync::OnceLock<Encoded> = std::sync::OnceLock::new();
    SAMPLE.get_or_init(build_sample).clone()
}

fn build_sample() -> Encoded {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = SynthConfig::demo(2, 200, 10);
    cfg.institutions.truncate(3);
    generate(&cfg).write_dir(dir.path()).expect("data");
    let schema = Schema::load(&dir.path().join("schema.json")).expect("schema");
    let mut plan = JobPlan::new(
        JobSpec::new("hostile", schema),
        PlanIds {
            federation_id: "hostile".into(),
            job_id: 1,
        },
        None,
    );
    let req = plan.next_session().expect("a session");
    (req.task.bytes, req.task.contents)
}

fn decode(bytes: &[u8], contents: &[(String, Vec<u8>)]) {
    let lookup = |h: &str| {
        contents
            .iter()
            .find(|(k, _)| k == h)
            .map(|(_, c)| c.clone())
    };
    let _ = Task::decode_with(bytes, 1, 0, &lookup);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn arbitrary_task_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        decode(&bytes, &[]);
    }

    #[test]
    fn a_mutated_task_or_content_never_panics(pos in any::<usize>(), val in any::<u8>(), in_content in any::<bool>()) {
        let (mut bytes, mut contents) = sample_task();
        if in_content && !contents.is_empty() {
            let c = &mut contents[0].1;
            let i = pos % c.len();
            c[i] = val;
        } else {
            let i = pos % bytes.len();
            bytes[i] = val;
        }
        decode(&bytes, &contents);
    }

    #[test]
    fn a_task_cut_short_never_panics(len in any::<usize>()) {
        let (bytes, contents) = sample_task();
        decode(&bytes[..len % (bytes.len() + 1)], &contents);
    }
}

#[test]
fn the_sample_task_itself_decodes() {
    // The mutation tests above start from a task that decodes: they test the decoder, not a
    // broken sample.
    let (bytes, contents) = sample_task();
    let lookup = |h: &str| {
        contents
            .iter()
            .find(|(k, _)| k == h)
            .map(|(_, c)| c.clone())
    };
    Task::decode_with(&bytes, 1, 0, &lookup).expect("the sample decodes");
}

//! Process-level behaviour: Ctrl+C and the destination lock.

use std::time::{Duration, Instant};

use crate::harness::{
    MODEL_BLOB, MODEL_CONFIG, MODEL_CONTAINER, TestEnv, assert_blob_file, check_summary, files_under, model_world,
    one_job, payload, text, wait_until, working_files,
};
use crate::support::{BlobFixture, Fault, FaultRule};

#[test]
fn ctrl_c_exits_130_and_a_rerun_completes() {
    let env = TestEnv::new(model_world(40 << 20));
    env.emu.add_fault(FaultRule::new("model.safetensors", 1, Fault::Stall(Duration::from_secs(10))).method("GET"));
    let dest = env.dest("job-m");
    let out = dest.join("named-outputs/model");
    let mut child = env.spawn(env.command(["download", "job-m", "--output", "model", "--json"]));
    wait_until(Duration::from_secs(20), "the model's part file and its stalled GET", || {
        out.join(".model.safetensors.jobdl-part").exists() && !env.blob_gets("model.safetensors").is_empty()
    });
    assert!(!child.finished(), "jobdl ended before it was interrupted");
    let sent = Instant::now();
    child.signal(libc::SIGINT);
    let run = child.wait(Duration::from_secs(30));
    run.expect_code(130);
    assert!(sent.elapsed() < Duration::from_secs(5), "exit took {:?} after SIGINT", sent.elapsed());
    assert_eq!(run.doc()["totals"]["interrupted"], true, "{run}");
    check_summary(&run, Some(("job-m", "Completed")), &dest);
    assert!(!out.join("model.safetensors").exists(), "a partial file is under its final name");
    if let Some(entry) =
        run.doc()["files"].as_array().unwrap().iter().find(|f| f["path"] == "named-outputs/model/model.safetensors")
    {
        assert_ne!(entry["result"], "downloaded", "{entry}");
    }

    let run = env.run(&["download", "job-m", "--output", "model"]);
    run.expect_code(0);
    assert_blob_file(&out.join("model.safetensors"), env.blob(MODEL_CONTAINER, MODEL_BLOB));
    assert_blob_file(&out.join("config.json"), env.blob(MODEL_CONTAINER, MODEL_CONFIG));
    assert_eq!(
        files_under(&dest),
        payload(["named-outputs/model/model.safetensors", "named-outputs/model/config.json"]),
        "working files left after the rerun: {:?}",
        working_files(&dest)
    );
}

#[test]
fn second_process_on_the_same_destination_is_refused() {
    let env =
        TestEnv::new(one_job("job-l", vec![("slow.bin", BlobFixture::generated(100_000, 5)), ("b.txt", text("b\n"))]));
    env.emu.add_fault(FaultRule::new("slow.bin", 1, Fault::Stall(Duration::from_secs(4))).method("GET"));
    let dest = env.dest("job-l");
    let mut first = env.spawn(env.command(["download", "job-l"]));
    wait_until(Duration::from_secs(20), "the first run's part file", || {
        dest.join("artifacts/.slow.bin.jobdl-part").exists()
    });

    let second = env.run(&["download", "job-l"]);
    assert_ne!(second.code, 0, "{second}");
    assert!(second.stderr.contains("another jobdl"), "{second}");
    assert!(!first.finished(), "the second run was not refused while the first held the lock");

    let first = first.wait(Duration::from_secs(30));
    first.expect_code(0);
    assert_blob_file(&dest.join("artifacts/slow.bin"), env.artifact("job-l", "slow.bin"));
    assert_blob_file(&dest.join("artifacts/b.txt"), env.artifact("job-l", "b.txt"));
    assert_eq!(files_under(&dest), payload(["artifacts/slow.bin", "artifacts/b.txt"]));
}

"""Log a run with nested artifacts to an MLflow tracking server using MLflow's own client.

Usage: log_run.py TRACKING_URI WORK_DIR BIG_MIB [--leave-running] [--direct ARTIFACT_DIR] [--register NAME]
                  [--checkpoints] [--sweep]

Writes the artifact tree under WORK_DIR/src (so the caller can compare bytes), logs it to a new
run and prints one JSON line: {"run_id": ..., "experiment_id": ..., "artifact_uri": ...}.
With --leave-running the run is left RUNNING (never ended) and only a small file is logged.
With --register the run's `model` directory is registered as two versions of model NAME (sources
`runs:/<run>/model` and the resolved artifact location), listed in "model_versions".
With --direct the run goes to an experiment whose artifact location is the local directory
ARTIFACT_DIR (a `file:` artifact root the server reads itself, not through its proxy).
With --checkpoints the run instead logs a `loss` and an `accuracy` history (steps 100..400; loss
lowest at step 200, accuracy highest at step 300, a NaN loss at step 250) and one folder per
step, `checkpoints/checkpoint-<step>/`, plus `logs/train.txt` outside them.
With --sweep the run is a parent with five nested child runs, each logging `model.txt` (its name)
and a `val_loss` (latest values: trial-a 0.4, trial-b 0.2, trial-c none, trial-d 0.3 after 0.1,
twin 0.5), two of them both named `twin`; the printed JSON adds "children": {name-or-twin-n: run_id}.
"""

import json
import os
import sys
from pathlib import Path

import mlflow


def write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


def main():
    uri, work, big_mib = sys.argv[1], sys.argv[2], int(sys.argv[3])
    rest = sys.argv[4:]
    leave_running = "--leave-running" in rest
    direct = rest[rest.index("--direct") + 1] if "--direct" in rest else None
    src = os.path.join(work, "src")
    mlflow.set_tracking_uri(uri)
    if direct:
        name = "jobdl-direct-artifacts"
        if mlflow.get_experiment_by_name(name) is None:
            mlflow.create_experiment(name, artifact_location=Path(direct).resolve().as_uri())
        exp = mlflow.set_experiment(name)
    else:
        exp = mlflow.set_experiment("jobdl-real-server")
    if leave_running:
        write(os.path.join(src, "partial.txt"), b"still training\n")
        run = mlflow.start_run()
        mlflow.log_artifact(os.path.join(src, "partial.txt"))
        print(json.dumps({"run_id": run.info.run_id, "experiment_id": exp.experiment_id,
                          "artifact_uri": run.info.artifact_uri}))
        sys.stdout.flush()
        # Leave without ending the run: the tracking server keeps it RUNNING.
        os._exit(0)
    if "--sweep" in rest:
        trials = [("trial-a", [0.4]), ("trial-b", [0.2]), ("trial-c", []), ("trial-d", [0.1, 0.3]),
                  ("twin", [0.5]), ("twin", [])]
        children = {}
        with mlflow.start_run(run_name="sweep") as parent:
            for i, (name, losses) in enumerate(trials):
                folder = os.path.join(src, "trial-%d" % i)
                write(os.path.join(folder, "model.txt"), name.encode() + b"\n")
                with mlflow.start_run(run_name=name, nested=True) as child:
                    for step, value in enumerate(losses):
                        mlflow.log_metric("val_loss", value, step=step)
                    mlflow.log_artifact(os.path.join(folder, "model.txt"))
                children["%s-%d" % (name, i)] = child.info.run_id
        print(json.dumps({"run_id": parent.info.run_id, "experiment_id": exp.experiment_id,
                          "artifact_uri": parent.info.artifact_uri, "children": children}))
        return
    if "--checkpoints" in rest:
        write(os.path.join(src, "logs", "train.txt"), b"training log\n")
        for step in (100, 200, 300, 400):
            folder = os.path.join(src, "checkpoints", "checkpoint-%d" % step)
            write(os.path.join(folder, "model.bin"), b"weights of step %d\n" % step)
            write(os.path.join(folder, "trainer_state.json"), json.dumps({"step": step}).encode())
        loss = {100: 0.9, 200: 0.25, 250: float("nan"), 300: 0.4, 400: 0.3}
        accuracy = {100: 0.5, 200: 0.7, 300: 0.8, 400: 0.75}
        with mlflow.start_run() as run:
            for step, value in loss.items():
                mlflow.log_metric("loss", value, step=step)
            for step, value in accuracy.items():
                mlflow.log_metric("accuracy", value, step=step)
            mlflow.log_artifacts(src)
        print(json.dumps({"run_id": run.info.run_id, "experiment_id": exp.experiment_id,
                          "artifact_uri": run.info.artifact_uri}))
        return
    write(os.path.join(src, "README.txt"), b"a run logged by tests/mlflow/log_run.py\n")
    write(os.path.join(src, "empty.bin"), b"")
    write(os.path.join(src, "logs", "train log.txt"), b"".join(b"step %d loss %f\n" % (i, 1.0 / (i + 1)) for i in range(5000)))
    write(os.path.join(src, "logs", "nested", "deeper", "metrics.json"), json.dumps({"acc": 0.93}).encode())
    write(os.path.join(src, "données", "ünïcode ✓.txt"), "héllo wörld ✓\n".encode())
    write(os.path.join(src, "model", "config.json"), b'{"layers": 12}\n')
    # A big file of deterministic, non-repeating-per-chunk bytes (the chunked path).
    big = os.path.join(src, "model", "weights.bin")
    os.makedirs(os.path.dirname(big), exist_ok=True)
    block = bytearray(1 << 20)
    with open(big, "wb") as f:
        for i in range(big_mib):
            seed = (i * 2654435761) & 0xFFFFFFFF
            for j in range(0, len(block), 4096):
                block[j:j + 8] = (seed + j).to_bytes(8, "little")
            f.write(block)
    with mlflow.start_run() as run:
        mlflow.log_param("kind", "jobdl-test")
        mlflow.log_artifacts(src)
    out = {"run_id": run.info.run_id, "experiment_id": exp.experiment_id, "artifact_uri": run.info.artifact_uri}
    if "--register" in rest:
        # Register the run's `model` directory twice, with both source forms a server stores:
        # `runs:/<run>/model` and the resolved artifact location.
        name = rest[rest.index("--register") + 1]
        client = mlflow.MlflowClient()
        try:
            client.create_registered_model(name)
        except mlflow.exceptions.MlflowException:
            pass  # already registered by an earlier run
        versions = []
        for source in (f"runs:/{run.info.run_id}/model", run.info.artifact_uri + "/model"):
            versions.append(client.create_model_version(name, source, run_id=run.info.run_id).version)
        out["model_versions"] = versions
    print(json.dumps(out))


if __name__ == "__main__":
    main()

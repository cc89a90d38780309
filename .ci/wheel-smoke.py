"""Smoke test of an installed jobdl wheel against the demo workspace.

    python .ci/wheel-smoke.py --demo DEMO_BINARY [EXPECTED_VERSION]
    python .ci/wheel-smoke.py --serve-output FILE [EXPECTED_VERSION]

Run it with the python of a fresh virtual environment the wheel was installed into (no JOBDL_BIN).
`--demo` starts the demo workspace (`target/release/examples/demo --serve`, stopped by closing its
stdin at the end); `--serve-output` reads what an already running `demo --serve > FILE` printed (the
Alpine container case, where the demo runs on the host). From the `export` lines the demo prints it
checks that the `jobdl` entry point is the binary in the
environment's scripts directory and prints the package version, that `jobdl download` fetches
job-demo-001 and refuses the running job-demo-002 with exit 5, and that the Python API does the same.
Used by .github/workflows/release.yml on every wheel's own runner; stdlib only.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path


def fail(msg):
    print(f"wheel-smoke: FAIL: {msg}", file=sys.stderr)
    sys.exit(1)


EXPORT = re.compile(r"^export ([A-Z_]+)='([^']*)'")


def complete(env):
    return all(k in env for k in ("AZURE_AI_PROJECT_ENDPOINT", "JOBDL_ALLOW_HOSTS", "JOBDL_ACCESS_TOKEN"))


def env_from_file(serve_output):
    """The `export NAME='value'` lines in FILE, waiting up to 120 s for them to appear."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        text = Path(serve_output).read_text() if Path(serve_output).exists() else ""
        env = dict(m.groups() for m in map(EXPORT.match, text.splitlines()) if m)
        if complete(env):
            return env
        time.sleep(1)
    fail(f"the demo printed no export lines into {serve_output}")


def start_demo(binary):
    """Start `BINARY --serve`; its process (stdin open) and the `export` lines it printed."""
    if os.name == "nt" and not binary.endswith(".exe"):
        binary += ".exe"
    binary = str(Path(binary))
    proc = subprocess.Popen(
        [binary, "--serve", "--model-mib", "8"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    env = {}
    for line in proc.stdout:
        m = EXPORT.match(line)
        if m:
            env[m.group(1)] = m.group(2)
        if line.startswith("# Ctrl+C"):
            break
    if not complete(env):
        proc.kill()
        fail(f"{binary} --serve printed no export lines")
    return proc, env


def main():
    if len(sys.argv) not in (3, 4) or sys.argv[1] not in ("--demo", "--serve-output"):
        fail(__doc__)
    os.environ.pop("JOBDL_BIN", None)
    expected = sys.argv[3] if len(sys.argv) == 4 else None
    demo = None
    if sys.argv[1] == "--demo":
        demo, env = start_demo(sys.argv[2])
    else:
        env = env_from_file(sys.argv[2])
    os.environ.update(env)
    try:
        check(expected)
    finally:
        if demo is not None:
            demo.stdin.close()  # the demo stops when its stdin closes
            demo.wait(timeout=60)


def check(expected):

    import jobdl

    print(f"jobdl package {jobdl.__version__} from {Path(jobdl.__file__).parent}")
    if expected and jobdl.__version__ != expected:
        fail(f"package version {jobdl.__version__}, expected {expected}")
    exe = "jobdl.exe" if os.name == "nt" else "jobdl"
    scripts = Path(sysconfig.get_path("scripts"))
    binary = Path(jobdl.find_binary())
    print(f"binary: {binary}")
    if binary.resolve() != (scripts / exe).resolve():
        fail(f"find_binary() gave {binary}, not {scripts / exe}")
    on_path = shutil.which("jobdl", path=str(scripts))
    if not on_path:
        fail(f"no jobdl in {scripts}")

    version = subprocess.run([on_path, "--version"], capture_output=True, text=True, check=True).stdout.strip()
    print(f"$ jobdl --version\n{version}")
    if version != f"jobdl {jobdl.__version__}":
        fail(f"`jobdl --version` printed {version!r}, package is {jobdl.__version__}")

    work = Path(tempfile.mkdtemp(prefix="jobdl-wheel-smoke-"))
    # The demo, with the installed command: the finished job downloads, the running one is refused.
    cmd = [on_path, "download", "job-demo-001", "--all-outputs", "--json", "-p", str(work / "cli")]
    print("$ " + " ".join(cmd))
    run = subprocess.run(cmd, capture_output=True, text=True)
    if run.returncode != 0:
        fail(f"exit {run.returncode}\n{run.stdout}\n{run.stderr}")
    totals = json.loads(run.stdout)["totals"]
    print(json.dumps(totals))
    if totals["failed"] != 0 or totals["downloaded"] != 17:
        fail(f"unexpected totals {totals}")
    cmd = [on_path, "download", "job-demo-002", "-p", str(work / "running")]
    print("$ " + " ".join(cmd))
    run = subprocess.run(cmd, capture_output=True, text=True)
    print(run.stderr.strip())
    if run.returncode != 5:
        fail(f"job-demo-002: exit {run.returncode}, expected 5")

    # The Python API.
    doc = jobdl.download("job-demo-001", output="metrics", dest=work / "api")
    print(f"jobdl.download(...) totals: {json.dumps(doc['totals'])}")
    if doc["totals"]["downloaded"] != 3 or not (work / "api/named-outputs/metrics/summary.json").is_file():
        fail(f"unexpected document {doc}")
    try:
        jobdl.download("job-demo-002", dest=work / "api-running")
        fail("job-demo-002 did not raise")
    except jobdl.JobdlError as e:
        print(f"jobdl.download('job-demo-002') raised: {e}")
        if (e.code, e.exit_code) != ("job_not_terminal", 5):
            fail(f"unexpected error {e.code} {e.exit_code}")
    print("wheel-smoke: OK")


if __name__ == "__main__":
    main()

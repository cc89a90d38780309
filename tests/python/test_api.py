"""Tests of the Python API (python/jobdl), run by tests/it/python_api.rs (stdlib unittest only).

Environment given by that test: PYTHONPATH=python, JOBDL_BIN (the binary cargo built),
JOBDL_ACCESS_TOKEN, JOBDL_TEST_ENDPOINT / JOBDL_TEST_ALLOW_HOST (the demo workspace on 127.0.0.1),
JOBDL_TEST_TMP (a scratch directory).
"""

import os
import subprocess
import sys
import tempfile
import textwrap
import unittest
from pathlib import Path

import jobdl

ENDPOINT = os.environ["JOBDL_TEST_ENDPOINT"]
ALLOW = os.environ["JOBDL_TEST_ALLOW_HOST"]
TMP = Path(os.environ["JOBDL_TEST_TMP"])
SOURCE = {"project_endpoint": ENDPOINT, "allow_host": ALLOW}


class Args(unittest.TestCase):
    """Keyword arguments → command-line arguments."""

    def test_download_flags(self):
        args = jobdl.download_args(
            "job-1",
            output=["model", "metrics"],
            all_outputs=True,
            dest=Path("/d"),
            include="*.json",
            project_endpoint="https://e/api/projects/p",
            exclude=["a", "b"],
            wait=True,
            skip_existing=False,
            timeout="2h",
            parallel=4,
            mlflow_uri=None,
        )
        self.assertEqual(
            args,
            [
                "download", "job-1", "--json",
                "--output", "model", "--output", "metrics",
                "--all-outputs",
                "--path", os.fspath(Path("/d")),
                "--include", "*.json",
                "--project-endpoint", "https://e/api/projects/p",
                "--exclude", "a", "--exclude", "b",
                "--wait",
                "--timeout", "2h",
                "--parallel", "4",
            ],
        )

    def test_minimal(self):
        self.assertEqual(jobdl.download_args("j"), ["download", "j", "--json"])
        self.assertEqual(
            jobdl.download_args("j", output="model", include=("a", "b"), kfp_endpoint="http://127.0.0.1:1"),
            ["download", "j", "--json", "--output", "model", "--include", "a", "--include", "b",
             "--kfp-endpoint", "http://127.0.0.1:1"],
        )

    def test_reserved_and_bad_names_are_refused(self):
        for kw in ({"json": False}, {"path": "x"}, {"version": True}, {"Bad": 1}, {"_x": 1}):
            with self.assertRaises(TypeError, msg=kw):
                jobdl.download_args("j", **kw)
        with self.assertRaises(TypeError):
            jobdl.download_args("")


class Binary(unittest.TestCase):
    def test_jobdl_bin_is_honoured(self):
        self.assertEqual(jobdl.find_binary(), os.environ["JOBDL_BIN"])

    def test_missing_jobdl_bin_is_an_error(self):
        old = os.environ["JOBDL_BIN"]
        os.environ["JOBDL_BIN"] = str(TMP / "no-such-binary")
        try:
            with self.assertRaises(FileNotFoundError):
                jobdl.find_binary()
        finally:
            os.environ["JOBDL_BIN"] = old

    def test_python_m_jobdl_runs_the_binary(self):
        out = subprocess.run(
            [sys.executable, "-m", "jobdl", "--version"], capture_output=True, text=True, check=True
        )
        self.assertTrue(out.stdout.startswith("jobdl "), out.stdout)

    def test_version_attribute(self):
        self.assertIsInstance(jobdl.__version__, str)


class DemoWorkspace(unittest.TestCase):
    """End to end: the real binary against the demo workspace."""

    def test_download_returns_the_document(self):
        dest = Path(tempfile.mkdtemp(dir=TMP))
        doc = jobdl.download("job-demo-001", output="metrics", include="*.csv", dest=dest, **SOURCE)
        self.assertEqual(doc["version"], 1)
        self.assertEqual(doc["job"], {"name": "job-demo-001", "status": "Completed"})
        self.assertEqual(doc["totals"]["downloaded"], 2)
        self.assertEqual(doc["totals"]["failed"], 0)
        paths = sorted(f["path"] for f in doc["files"])
        self.assertEqual(paths, ["named-outputs/metrics/eval_loss.csv", "named-outputs/metrics/train_loss.csv"])
        for p in paths:
            self.assertTrue((dest / p).is_file(), p)
        self.assertEqual(os.path.realpath(doc["destination"]), os.path.realpath(dest))

    def test_all_outputs(self):
        dest = Path(tempfile.mkdtemp(dir=TMP))
        doc = jobdl.download("job-demo-001", all_outputs=True, dest=dest, **SOURCE)
        self.assertEqual(doc["totals"]["failed"], 0)
        self.assertEqual(doc["totals"]["files"], 17)
        self.assertTrue((dest / "artifacts/user_logs/std_log.txt").is_file())

    def test_running_job_raises_job_not_terminal(self):
        dest = Path(tempfile.mkdtemp(dir=TMP))
        with self.assertRaises(jobdl.JobdlError) as cm:
            jobdl.download("job-demo-002", dest=dest / "x", **SOURCE)
        e = cm.exception
        self.assertEqual((e.code, e.exit_code), ("job_not_terminal", 5))
        self.assertIn("Running", e.message)
        self.assertEqual(e.document["error"]["code"], "job_not_terminal")
        self.assertFalse((dest / "x").exists(), "nothing written")

    def test_unknown_job_raises_not_found(self):
        with self.assertRaises(jobdl.JobdlError) as cm:
            jobdl.download("job-nope", dest=TMP / "nope", **SOURCE)
        self.assertEqual((cm.exception.code, cm.exception.exit_code), ("not_found", 4))

    def test_bad_flag_value_raises_usage(self):
        with self.assertRaises(jobdl.JobdlError) as cm:
            jobdl.download("job-demo-001", dest=TMP / "u", parallel="many", **SOURCE)
        self.assertEqual((cm.exception.code, cm.exception.exit_code), ("usage", 2))

    def test_unknown_option_raises_usage(self):
        with self.assertRaises(jobdl.JobdlError) as cm:
            jobdl.download("job-demo-001", dest=TMP / "u", no_such_option=True, **SOURCE)
        self.assertEqual((cm.exception.code, cm.exception.exit_code), ("usage", 2))


@unittest.skipIf(os.name == "nt", "the fake binary is a POSIX script")
class FakeBinary(unittest.TestCase):
    """Outcomes the demo cannot produce on demand, from a fake `jobdl` (a Python script)."""

    def fake(self, stdout, code, stderr=""):
        d = Path(tempfile.mkdtemp(dir=TMP))
        p = d / "jobdl"
        p.write_text(
            f"#!{sys.executable}\n"
            + textwrap.dedent(
                f"""
                import sys
                sys.stdout.write({stdout!r})
                sys.stderr.write({stderr!r})
                sys.exit({code})
                """
            )
        )
        p.chmod(0o755)
        return str(p)

    def run_with(self, binary):
        old = os.environ["JOBDL_BIN"]
        os.environ["JOBDL_BIN"] = binary
        try:
            return jobdl.download("j", dest=TMP / "fake")
        finally:
            os.environ["JOBDL_BIN"] = old

    def test_failed_files_raise_with_the_document(self):
        doc = (
            '{"version":1,"job":{"name":"j","status":"Completed"},"destination":"/d",'
            '"files":[{"path":"a","bytes":1,"result":"failed","md5":"absent","error":"HTTP 500"}],'
            '"totals":{"files":1,"bytes":1,"downloaded":0,"skipped":0,"failed":1,"seconds":0.1}}'
        )
        with self.assertRaises(jobdl.JobdlError) as cm:
            self.run_with(self.fake(doc, 6))
        e = cm.exception
        self.assertEqual((e.code, e.exit_code), ("files_failed", 6))
        self.assertEqual(e.document["totals"]["failed"], 1)
        self.assertIn("HTTP 500", e.message)

    def test_error_document_code_is_carried(self):
        doc = '{"version":1,"error":{"code":"auth","message":"no credential","exit_code":3}}'
        with self.assertRaises(jobdl.JobdlError) as cm:
            self.run_with(self.fake(doc, 3))
        self.assertEqual((cm.exception.code, cm.exception.exit_code, cm.exception.message),
                         ("auth", 3, "no credential"))

    def test_no_document_uses_the_exit_code_and_stderr(self):
        with self.assertRaises(jobdl.JobdlError) as cm:
            self.run_with(self.fake("", 2, "error: unexpected argument\n"))
        self.assertEqual((cm.exception.code, cm.exception.exit_code), ("usage", 2))
        self.assertIn("unexpected argument", cm.exception.message)

    def test_exit_0_without_json_is_an_error(self):
        with self.assertRaises(jobdl.JobdlError) as cm:
            self.run_with(self.fake("not json", 0))
        self.assertEqual(cm.exception.code, "internal")

    def test_exit_0_returns_the_document(self):
        self.assertEqual(self.run_with(self.fake('{"version":1}\n', 0)), {"version": 1})


if __name__ == "__main__":
    unittest.main(verbosity=2)

"""Run the bundled ``jobdl`` binary from Python.

``pip install jobdl`` puts the ``jobdl`` command on PATH (the wheel installs the binary into the
environment's scripts directory). This module is a thin wrapper around that command for notebooks and
scripts: :func:`download` runs ``jobdl download JOB ... --json`` in a child process and returns the
JSON document it prints (see "--json" in the README). Downloading, retries, Ctrl+C handling and memory
stay the CLI's; nothing runs in this process.

    >>> import jobdl
    >>> doc = jobdl.download("job-123", output="model", dest="./ckpt",
    ...                      project_endpoint="https://acct.services.ai.azure.com/api/projects/p")
    >>> doc["totals"]["downloaded"]

The binary is found, in order, from ``JOBDL_BIN``, the files this distribution installed, the
environment's scripts directory (``sysconfig.get_path("scripts")``, then the user scheme's), and
finally ``shutil.which("jobdl")``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import Any, Iterable, Optional, Union

__all__ = ["download", "find_binary", "JobdlError", "__version__"]

try:
    from importlib.metadata import PackageNotFoundError, version as _dist_version

    try:
        __version__ = _dist_version("jobdl")
    except PackageNotFoundError:  # imported from a source tree, not installed
        __version__ = "0+unknown"
except ImportError:  # pragma: no cover - Python < 3.8 is not supported (requires-python >= 3.9)
    __version__ = "0+unknown"

_EXE = "jobdl.exe" if os.name == "nt" else "jobdl"

# Exit codes of the command-line contract and the error codes its `--json` error document uses.
# 6 and 130 print the normal document, not an error document; this module names them
# "files_failed" and "interrupted".
_CODE_BY_EXIT = {
    1: "internal",
    2: "usage",
    3: "auth",
    4: "not_found",
    5: "job_not_terminal",
    6: "files_failed",
    7: "locked",
    130: "interrupted",
}

# Keyword arguments that `**source` must not turn into flags: they are fixed by download() itself.
_RESERVED = {"json", "path", "p", "output", "all_outputs", "include", "help", "version"}


class JobdlError(Exception):
    """A ``jobdl`` run that did not exit 0.

    ``code``: the error document's ``code`` (``internal``, ``service_unavailable``, ``usage``,
    ``auth``, ``not_found``, ``job_not_terminal``), or ``files_failed`` (exit 6) /
    ``interrupted`` (exit 130), whose ``document`` is the normal result document.
    ``exit_code``: the process's exit code. ``message``: the error's message.
    ``document``: the parsed JSON document, or ``None`` when stdout held none.
    ``stderr``: what the process wrote to stderr.
    """

    def __init__(
        self,
        code: str,
        message: str,
        exit_code: int,
        document: Optional[dict] = None,
        stderr: str = "",
    ) -> None:
        super().__init__(f"jobdl: {code} (exit {exit_code}): {message}")
        self.code = code
        self.message = message
        self.exit_code = exit_code
        self.document = document
        self.stderr = stderr


def _installed_binary() -> Optional[Path]:
    """The binary among the files this distribution's RECORD lists (any install scheme)."""
    try:
        from importlib.metadata import PackageNotFoundError, distribution

        dist = distribution("jobdl")
    except (ImportError, PackageNotFoundError):
        return None
    for f in dist.files or ():
        if f.name == _EXE:
            p = Path(dist.locate_file(f)).resolve()
            if p.is_file():
                return p
    return None


def find_binary() -> str:
    """The path of the ``jobdl`` executable this package runs.

    ``JOBDL_BIN`` when set; else the binary this distribution installed; else the one in
    ``sysconfig.get_path("scripts")`` (or the user scheme's scripts directory); else
    ``shutil.which("jobdl")``. Raises ``FileNotFoundError`` when none exists.
    """
    env = os.environ.get("JOBDL_BIN")
    if env:
        if not os.path.isfile(env):
            raise FileNotFoundError(f"JOBDL_BIN={env!r} is not a file")
        return env
    found = _installed_binary()
    if found is not None:
        return str(found)
    dirs = [sysconfig.get_path("scripts")]
    try:
        dirs.append(sysconfig.get_path("scripts", f"{os.name}_user"))
    except KeyError:
        pass
    for d in dirs:
        if d:
            p = Path(d) / _EXE
            if p.is_file():
                return str(p)
    which = shutil.which("jobdl")
    if which:
        return which
    raise FileNotFoundError(
        "the jobdl binary was not found (reinstall with `pip install jobdl`, or set JOBDL_BIN)"
    )


def _strings(value: Union[str, os.PathLike, Iterable[Any], None]) -> list:
    """One string for a str/path, each item's string for an iterable, nothing for None."""
    if value is None:
        return []
    if isinstance(value, (str, os.PathLike)):
        return [os.fspath(value)]
    return [os.fspath(v) if isinstance(v, os.PathLike) else str(v) for v in value]


def _flag_args(name: str, value: Any) -> list:
    """`foo_bar=value` as command-line arguments: True → `--foo-bar`; False/None → nothing;
    a list or tuple → `--foo-bar X` per item; anything else → `--foo-bar str(value)`."""
    if not name.isidentifier() or name.startswith("_") or name != name.lower():
        raise TypeError(f"jobdl.download(): {name!r} is not an option name")
    if name in _RESERVED:
        raise TypeError(f"jobdl.download(): {name!r} cannot be passed as an option")
    flag = "--" + name.replace("_", "-")
    if value is None or value is False:
        return []
    if value is True:
        return [flag]
    if isinstance(value, (list, tuple, set, frozenset)):
        out = []
        for v in value:
            out += [flag, os.fspath(v) if isinstance(v, os.PathLike) else str(v)]
        return out
    return [flag, os.fspath(value) if isinstance(value, os.PathLike) else str(value)]


def download_args(
    job: str,
    *,
    output: Union[str, Iterable[str], None] = None,
    all_outputs: bool = False,
    dest: Union[str, os.PathLike, None] = None,
    include: Union[str, Iterable[str]] = (),
    **source: Any,
) -> list:
    """The argument list (after the binary) that :func:`download` runs."""
    if not isinstance(job, str) or not job:
        raise TypeError("jobdl.download(): job must be a non-empty string")
    args = ["download", job, "--json"]
    for name in _strings(output):
        args += ["--output", name]
    if all_outputs:
        args.append("--all-outputs")
    if dest is not None:
        args += ["--path", os.fspath(dest)]
    for pattern in _strings(include):
        args += ["--include", pattern]
    for name, value in source.items():
        args += _flag_args(name, value)
    return args


def _run(args: list) -> dict:
    """Run the binary with `args`; the parsed stdout document on exit 0, else JobdlError."""
    binary = find_binary()
    proc = subprocess.Popen(
        [binary, *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        out, err = proc.communicate()
    except KeyboardInterrupt:
        # Let jobdl stop cleanly (it leaves no partial file under a final name), then re-raise.
        if os.name == "nt":
            proc.terminate()
        else:
            proc.send_signal(signal.SIGINT)
        proc.communicate()
        raise
    stderr = err.decode("utf-8", "replace")
    text = out.decode("utf-8", "replace").strip()
    doc: Optional[dict] = None
    if text:
        try:
            parsed = json.loads(text)
            if isinstance(parsed, dict):
                doc = parsed
        except ValueError:
            doc = None
    rc = proc.returncode
    if rc == 0:
        if doc is None:
            raise JobdlError("internal", "jobdl printed no JSON document", rc, None, stderr)
        return doc
    if rc < 0:  # killed by a signal (POSIX)
        raise JobdlError("interrupted", f"jobdl was killed by signal {-rc}", rc, doc, stderr)
    if doc is not None and isinstance(doc.get("error"), dict):
        e = doc["error"]
        code = str(e.get("code") or _CODE_BY_EXIT.get(rc, "internal"))
        raise JobdlError(code, str(e.get("message", "")), int(e.get("exit_code", rc)), doc, stderr)
    code = _CODE_BY_EXIT.get(rc, "internal")
    if doc is not None and rc == 6:
        failed = [f for f in doc.get("files", []) if f.get("result") == "failed"]
        message = f"{len(failed)} file(s) failed"
        if failed:
            message += f"; first: {failed[0].get('path')}: {failed[0].get('error', '')}"
    else:
        lines = [line for line in stderr.strip().splitlines() if line.strip()]
        message = lines[-1] if lines else f"jobdl exited with {rc}"
    raise JobdlError(code, message, rc, doc, stderr)


def download(
    job: str,
    *,
    output: Union[str, Iterable[str], None] = None,
    all_outputs: bool = False,
    dest: Union[str, os.PathLike, None] = None,
    include: Union[str, Iterable[str]] = (),
    **source: Any,
) -> dict:
    """Download a job's files with ``jobdl download JOB --json``; return the JSON document.

    ``output``: a named output or a list of them (``--output``; ``"default"`` is the default
    artifacts). ``all_outputs``: every named output and the default artifacts. ``dest``: the
    destination directory (``--path``; jobdl's default is ``./<JOB>``). ``include``: glob(s)
    (``--include``).

    Every other keyword becomes the flag of the same name: ``project_endpoint=URL`` →
    ``--project-endpoint URL``, ``mlflow_uri=``, ``kfp_endpoint=``, ``subscription=``,
    ``resource_group=``, ``workspace=``, ``exclude=[...]`` (a list repeats the flag),
    ``wait=True`` (a bare flag; ``False``/``None`` leave it out), ``timeout="2h"``,
    ``parallel=16``, ``skip_existing=True``, ``allow_host=...``. The environment (credentials,
    ``JOBDL_ACCESS_TOKEN``, ``AZURE_AI_PROJECT_ENDPOINT``, ...) is passed on unchanged.

    Raises :class:`JobdlError` unless jobdl exits 0; its ``code`` is the error document's code
    (``usage``, ``auth``, ``not_found``, ``job_not_terminal``, ...). Ctrl+C (KeyboardInterrupt)
    is passed on to jobdl, which stops cleanly before the interrupt is re-raised.
    """
    return _run(
        download_args(
            job,
            output=output,
            all_outputs=all_outputs,
            dest=dest,
            include=include,
            **source,
        )
    )

#!/usr/bin/env bash
# jobdl vs `mlflow artifacts download` on the same MLflow run, in one script (same machine, same
# server, same moment). Starts a real `mlflow server --serve-artifacts` on 127.0.0.1 (sqlite backend,
# local artifact destination, in a temp dir), logs one run with tests/mlflow/log_run.py (nested
# small files plus one big file of BIG_MIB MiB), then downloads it RUNS times with each tool into
# fresh directories and prints MiB/s of each (best and median), after checking both copies are
# byte-identical to what was logged. The server (its whole process group) is killed on exit.
#
# Usage: benches/mlflow.sh [JOBDL_BIN]       (default: target/release/jobdl, built if missing)
# Environment: BIG_MIB (default 1024), RUNS (default 3), PARALLEL (jobdl --parallel, default 8),
#              JOBDL_MLFLOW_PYTHON (default .ci/mlflow/venv/bin/python, as installed by .ci/run).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$(pwd)"
BIG_MIB="${BIG_MIB:-1024}"
RUNS="${RUNS:-3}"
PARALLEL="${PARALLEL:-8}"
PY="${JOBDL_MLFLOW_PYTHON:-$ROOT/.ci/mlflow/venv/bin/python}"
JOBDL="${1:-$ROOT/target/release/jobdl}"

if [[ ! -x "$PY" ]]; then
  echo "no MLflow python at $PY: run .ci/run (or set JOBDL_MLFLOW_PYTHON)" >&2
  exit 2
fi
if [[ ! -x "$JOBDL" ]]; then
  cargo build --release --locked --quiet
  JOBDL="$ROOT/target/release/jobdl"
fi
MLFLOW="$(dirname "$PY")/mlflow"

TMP="$(mktemp -d "${TMPDIR:-/tmp}/jobdl-mlflow-bench.XXXXXX")"
SERVER_PID=""
cleanup() {
  if [[ -n "$SERVER_PID" ]]; then
    kill -TERM -- "-$SERVER_PID" 2>/dev/null || true
    sleep 2
    kill -KILL -- "-$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  rm -rf "$TMP"
}
trap cleanup EXIT

PORT="$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
URI="http://127.0.0.1:$PORT"
export MLFLOW_ENABLE_TELEMETRY=false DO_NOT_TRACK=1
# Its own process group (setsid), so the workers it spawns are stopped with it.
setsid "$PY" -m mlflow server --host 127.0.0.1 --port "$PORT" --workers 4 --serve-artifacts \
  --backend-store-uri "sqlite:///$TMP/mlflow.db" --artifacts-destination "$TMP/artifacts" \
  >"$TMP/server.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 1 360); do
  curl -fs "$URI/health" >/dev/null 2>&1 && break
  sleep 0.5
done
curl -fs "$URI/health" >/dev/null || { tail -20 "$TMP/server.log"; echo "server not healthy" >&2; exit 1; }

echo "=== logging a run with a ${BIG_MIB} MiB file (MLflow's own client)"
RUN_ID="$("$PY" "$ROOT/tests/mlflow/log_run.py" "$URI" "$TMP/logged" "$BIG_MIB" | grep '^{' | tail -1 |
  "$PY" -c 'import json,sys; print(json.load(sys.stdin)["run_id"])')"
BYTES="$(du -sb --apparent-size "$TMP/logged/src" | cut -f1)"
FILES="$(find "$TMP/logged/src" -type f | wc -l)"
echo "run $RUN_ID: $FILES files, $BYTES bytes; mlflow $("$PY" -c 'import mlflow; print(mlflow.__version__)'), $("$JOBDL" --version)"

# time_one NAME CMD...: run CMD, print seconds.
time_one() {
  local start end
  shift
  start="$(date +%s.%N)"
  "$@" >/dev/null 2>"$TMP/last.err" || { cat "$TMP/last.err" >&2; return 1; }
  end="$(date +%s.%N)"
  echo "$end - $start" | bc -l
}

declare -A SECS
for i in $(seq 1 "$RUNS"); do
  sync
  d="$TMP/jobdl-$i"
  SECS[jobdl]+="$(time_one jobdl "$JOBDL" download "$RUN_ID" --mlflow-uri "$URI" -p "$d" --parallel "$PARALLEL" -q) "
  diff -r "$TMP/logged/src" "$d/artifacts" >/dev/null || { echo "jobdl copy differs" >&2; exit 1; }
  rm -rf "$d"
  sync
  d="$TMP/mlflow-$i"
  SECS[mlflow]+="$(time_one mlflow env MLFLOW_TRACKING_URI="$URI" "$MLFLOW" artifacts download --run-id "$RUN_ID" --dst-path "$d") "
  diff -r "$TMP/logged/src" "$d" >/dev/null || { echo "mlflow copy differs" >&2; exit 1; }
  rm -rf "$d"
done

echo "=== $RUNS runs each, $BYTES bytes ($((BYTES / 1048576)) MiB) per download"
printf '%-8s %10s %10s %12s %12s\n' tool best_s median_s best_MiB/s median_MiB/s
for tool in jobdl mlflow; do
  read -r -a xs <<<"${SECS[$tool]}"
  sorted="$(printf '%s\n' "${xs[@]}" | sort -g)"
  best="$(echo "$sorted" | head -1)"
  median="$(echo "$sorted" | sed -n "$(((${#xs[@]} + 1) / 2))p")"
  printf '%-8s %10.2f %10.2f %12.1f %12.1f\n' "$tool" "$best" "$median" \
    "$(echo "$BYTES / 1048576 / $best" | bc -l)" "$(echo "$BYTES / 1048576 / $median" | bc -l)"
  echo "BENCH tool=$tool bytes=$BYTES runs=$RUNS best_s=$best median_s=$median"
done

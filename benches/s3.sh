#!/usr/bin/env bash
# jobdl cp s3:// vs rclone (s3 backend) on the same S3 server, in one script (same machine, same
# server, same moment). SERVER=moto (default) or SERVER=s3s-fs.
#
# SERVER=s3s-fs: the s3s project's file-system S3 server (Rust, HTTP/1.1 keep-alive, SigV4 checked),
# fast enough that the clients, not the server, set the pace. The script installs it once with
# `cargo install s3s-fs@0.14.1 --features binary --locked --root benches/.tools` (0.14.1 is the last
# release that builds with Rust 1.95; S3S_FS=/path/to/s3s-fs uses another build), serves a fresh
# directory with fixed keys, and seeds it with tests/s3/seed.py (boto3, the moto venv's python):
# the big object in 8 MiB multipart parts, the small ones with PutObject. Requests per copy are counted from
# its request log (RUST_LOG=s3s::service=debug, one line per request).
#
# SERVER=moto: starts `moto_server -H 127.0.0.1` with signature checking on
# (INITIAL_NO_AUTH_ACTION_COUNT=3, kfp-s3-api.md section 8), seeds bucket `bench` with
# tests/s3/seed.py (boto3): one object of BIG_MIB MiB uploaded in 8 MiB multipart parts, and
# SMALL_N objects of SMALL_KIB KiB under small/. Then, for RUNS rounds, copies each workload with
# both tools into fresh directories (the order of the two tools alternates per round), checks every
# copy is byte-identical to what was seeded, and prints best/median throughput, peak RSS, the
# requests moto answered per copy (from its log) and the jobdl/rclone ratios. It also prints what one
# small ranged GET costs moto on each object: moto 5.2.5 reads and copies the whole object under a
# per-object lock for every GET, ranged or not (FakeKey.value), so on the big object the time tracks
# the number of requests each tool makes (jobdl: 8 MiB chunks; rclone: one range per stream).
#
# Both tools get the same number of connections (PARALLEL): jobdl `--parallel PARALLEL`; rclone
# `--transfers PARALLEL --multi-thread-streams PARALLEL --multi-thread-cutoff 16M --checkers 16`
# (path-style remote from RCLONE_CONFIG_MOTO_* variables; rclone keeps its default MD5 check of
# single-part objects). An untimed `sync` runs before every copy; the timed region does not include
# a `sync` after the peer's copy, although jobdl fsyncs every file by contract (so jobdl's figures
# include its fsyncs and rclone's do not). moto is single-process Python answering with
# `Connection: close`, so the absolute figures are moto-bound; the ratios are the point.
#
# Usage: benches/s3.sh [JOBDL_BIN]       (default: target/release/jobdl, built if missing)
# Environment: BIG_MIB (default 256), SMALL_N (default 1000), SMALL_KIB (default 64), RUNS
#              (default 3), PARALLEL (default 8), RCLONE (default rclone), JOBDL_MOTO_SERVER
#              (default .ci/s3/venv/bin/moto_server, as installed by .ci/run; its venv's python,
#              with boto3, does the seeding).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$(pwd)"
BIG_MIB="${BIG_MIB:-256}"
SMALL_N="${SMALL_N:-1000}"
SMALL_KIB="${SMALL_KIB:-64}"
RUNS="${RUNS:-3}"
PARALLEL="${PARALLEL:-8}"
RCLONE="${RCLONE:-rclone}"
SERVER="${SERVER:-moto}"
MOTO="${JOBDL_MOTO_SERVER:-$ROOT/.ci/s3/venv/bin/moto_server}"
S3S_FS="${S3S_FS:-$ROOT/benches/.tools/bin/s3s-fs}"
PY="$(dirname "$MOTO")/python"
JOBDL="${1:-$ROOT/target/release/jobdl}"
BUCKET=bench
REGION=us-east-1

if [[ ! -x "$MOTO" || ! -x "$PY" ]]; then
  echo "no moto_server (with its venv python) at $MOTO: run .ci/run (or set JOBDL_MOTO_SERVER)" >&2
  exit 2
fi
command -v "$RCLONE" >/dev/null || { echo "no rclone ($RCLONE) on PATH (or set RCLONE)" >&2; exit 2; }
case "$SERVER" in
  moto) ;;
  s3s-fs)
    if [[ ! -x "$S3S_FS" ]]; then
      echo "installing s3s-fs 0.14.1 into benches/.tools (once)" >&2
      cargo install s3s-fs@0.14.1 --features binary --locked --root "$ROOT/benches/.tools" --quiet
    fi
    ;;
  *) echo "SERVER must be moto or s3s-fs, not '$SERVER'" >&2; exit 2 ;;
esac
if [[ ! -x "$JOBDL" ]]; then
  cargo build --release --locked --quiet
  JOBDL="$ROOT/target/release/jobdl"
fi
TIME_BIN=""
[[ -x /usr/bin/time ]] && TIME_BIN=/usr/bin/time

TMP="$(mktemp -d "${TMPDIR:-/tmp}/jobdl-s3-bench.XXXXXX")"
SERVER_PID=""
cleanup() {
  trap - EXIT INT TERM
  if [[ -n "$SERVER_PID" ]]; then
    kill -TERM -- "-$SERVER_PID" 2>/dev/null || true
    for _ in 1 2 3 4 5 6 7 8 9 10; do
      kill -0 "$SERVER_PID" 2>/dev/null || break
      sleep 0.2
    done
    kill -KILL -- "-$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

echo "=== start: $(date -u +%FT%TZ), $(nproc) cores, load average:$(uptime | sed 's/.*load average://')"

PORT="$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
ENDPOINT="http://127.0.0.1:$PORT"
# Its own process group (setsid), so everything it spawns is stopped with it.
if [[ "$SERVER" == moto ]]; then
  INITIAL_NO_AUTH_ACTION_COUNT=3 setsid "$MOTO" -H 127.0.0.1 -p "$PORT" >"$TMP/server.log" 2>&1 &
else
  AK=jobdlbenchkey SK=jobdlbenchsecret
  mkdir -p "$TMP/store"
  RUST_LOG=s3s::service=debug NO_COLOR=1 setsid "$S3S_FS" --host 127.0.0.1 --port "$PORT" \
    --access-key "$AK" --secret-key "$SK" "$TMP/store" >"$TMP/server.log" 2>&1 &
fi
SERVER_PID=$!
for _ in $(seq 1 120); do
  "$PY" -c 'import socket,sys; socket.create_connection(("127.0.0.1",int(sys.argv[1])),1).close()' "$PORT" \
    2>/dev/null && break
  kill -0 "$SERVER_PID" 2>/dev/null || { tail -20 "$TMP/server.log"; echo "$SERVER exited" >&2; exit 1; }
  sleep 0.5
done

echo "=== seeding s3://$BUCKET: big.bin ($BIG_MIB MiB, 8 MiB parts) and small/ ($SMALL_N x $SMALL_KIB KiB)"
mkdir -p "$TMP/src/small" "$TMP/home"
"$PY" - "$TMP/src" "$BIG_MIB" "$SMALL_N" "$SMALL_KIB" <<'EOF'
import os, sys
root, big_mib, n, kib = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
with open(os.path.join(root, "big.bin"), "wb") as f:
    for _ in range(big_mib):
        f.write(os.urandom(1 << 20))
for i in range(n):
    with open(os.path.join(root, "small", "f%05d.bin" % i), "wb") as f:
        f.write(os.urandom(kib << 10))
EOF
"$PY" - "$TMP/src" "$ENDPOINT" "$REGION" "$BUCKET" >"$TMP/spec.json" <<'EOF'
import json, os, sys
root, endpoint, region, bucket = sys.argv[1:5]
objects = [{"bucket": bucket, "key": "big.bin", "file": os.path.join(root, "big.bin"), "part_size": 8 << 20}]
for name in sorted(os.listdir(os.path.join(root, "small"))):
    objects.append({"bucket": bucket, "key": "small/" + name, "file": os.path.join(root, "small", name)})
json.dump({"endpoint": endpoint, "region": region, "buckets": [bucket], "objects": objects}, sys.stdout)
EOF
if [[ "$SERVER" == moto ]]; then
  "$PY" "$ROOT/tests/s3/seed.py" <"$TMP/spec.json" >"$TMP/seeded.json"
else
  # Fixed keys (no IAM): PutObject / multipart upload with boto3, then list back.
  "$PY" "$ROOT/tests/s3/seed.py" "$AK" "$SK" <"$TMP/spec.json" >"$TMP/seeded.json"
fi
read -r AK SK LISTED < <("$PY" -c '
import json, sys
v = json.load(open(sys.argv[1]))
print(v["access_key"], v["secret_key"], len(v["listed"][sys.argv[2]]))' "$TMP/seeded.json" "$BUCKET")
[[ "$LISTED" == "$((SMALL_N + 1))" ]] || { echo "$SERVER lists $LISTED objects, expected $((SMALL_N + 1))" >&2; exit 1; }
BIG_BYTES="$(stat -c %s "$TMP/src/big.bin")"
SMALL_BYTES="$(du -sb --apparent-size "$TMP/src/small" | cut -f1)"
SMALL_BYTES=$((SMALL_BYTES - $(stat -c %s "$TMP/src/small")))  # the directory entry itself
if [[ "$SERVER" == moto ]]; then
  SERVER_VERSION="moto $("$PY" -c 'import moto; print(moto.__version__)')"
else
  SERVER_VERSION="$("$S3S_FS" --version)"
fi
echo "$SERVER_VERSION, $("$JOBDL" --version), $("$RCLONE" version | head -1)"
# What one request costs the server: the best of 3 ranged GETs of the first 64 KiB of each kind of object.
"$PY" - "$TMP/seeded.json" "$ENDPOINT" "$REGION" "$BUCKET" <<'EOF'
import json, sys, time
import boto3
from botocore.config import Config
seeded, endpoint, region, bucket = sys.argv[1:5]
v = json.load(open(seeded))
s3 = boto3.client("s3", endpoint_url=endpoint, region_name=region, aws_access_key_id=v["access_key"],
                  aws_secret_access_key=v["secret_key"], config=Config(s3={"addressing_style": "path"}))
costs = []
for key in ("big.bin", "small/f00000.bin"):
    best = None
    for _ in range(3):
        t = time.perf_counter()
        s3.get_object(Bucket=bucket, Key=key, Range="bytes=0-65535")["Body"].read()
        best = min(best or 1e9, time.perf_counter() - t)
    costs.append("%s %.3f s" % (key, best))
print("the server, one 64 KiB ranged GET (boto3, best of 3): " + ", ".join(costs))
EOF

# One line of the server's log per request it answered.
if [[ "$SERVER" == moto ]]; then REQUEST_LINE=' HTTP/1'; else REQUEST_LINE='s3s::service: req:'; fi

# Same credentials for both; HOME is a temp dir so no user config (jobdl, rclone, ~/.aws) applies.
export HOME="$TMP/home" AWS_ACCESS_KEY_ID="$AK" AWS_SECRET_ACCESS_KEY="$SK"
# AWS_CA_BUNDLE too: the endpoint is plain http on loopback, and rclone's SDK fails on a custom bundle.
unset AWS_PROFILE AWS_SESSION_TOKEN AWS_ENDPOINT_URL AWS_REGION AWS_DEFAULT_REGION AWS_CA_BUNDLE JOBDL_PARALLEL
mkdir -p "$HOME/.config/rclone" && : >"$HOME/.config/rclone/rclone.conf"  # empty: remote from env only
export RCLONE_CONFIG_MOTO_TYPE=s3 RCLONE_CONFIG_MOTO_PROVIDER=Other RCLONE_CONFIG_MOTO_ENDPOINT="$ENDPOINT" \
  RCLONE_CONFIG_MOTO_ACCESS_KEY_ID="$AK" RCLONE_CONFIG_MOTO_SECRET_ACCESS_KEY="$SK" \
  RCLONE_CONFIG_MOTO_REGION="$REGION" RCLONE_CONFIG_MOTO_FORCE_PATH_STYLE=true
RCLONE_FLAGS=(--transfers "$PARALLEL" --multi-thread-streams "$PARALLEL" --multi-thread-cutoff 16M --checkers 16)

# cmd_for TOOL WORKLOAD DIR: the copy command, one word per line.
cmd_for() {
  local src
  case "$1:$2" in
    jobdl:big) printf '%s\n' "$JOBDL" cp "s3://$BUCKET/big.bin" "$3" --s3-endpoint "$ENDPOINT" --parallel "$PARALLEL" -q ;;
    jobdl:small) printf '%s\n' "$JOBDL" cp "s3://$BUCKET/small/" "$3" --s3-endpoint "$ENDPOINT" --parallel "$PARALLEL" -q ;;
    rclone:big) printf '%s\n' "$RCLONE" copy "moto:$BUCKET/big.bin" "$3" "${RCLONE_FLAGS[@]}" ;;
    rclone:small)
      if [[ "$SERVER" == s3s-fs ]]; then
        # s3s-fs answers rclone's HEAD of the prefix (is `small` a file?) with a 500 after ~1 min, so
        # rclone lists from the bucket root with a filter instead; the files land in DIR/small.
        printf '%s\n' "$RCLONE" copy "moto:$BUCKET" "$3" --include "/small/**" "${RCLONE_FLAGS[@]}"
      else
        printf '%s\n' "$RCLONE" copy "moto:$BUCKET/small" "$3" "${RCLONE_FLAGS[@]}"
      fi
      ;;
  esac
}

# failed TOOL WORKLOAD STATUS: show its stderr and stop (130: it was interrupted, so are we).
failed() {
  cat "$TMP/last.err" >&2
  [[ "$3" == 130 ]] && exit 130
  echo "$1 failed on $2 (exit $3)" >&2
  exit 1
}

# run_one TOOL WORKLOAD ROUND: copy into a fresh directory, check it, append seconds and peak RSS.
declare -A SECS RSS REQS
run_one() {
  local tool="$1" work="$2" d="$TMP/out-$1-$2-$3" start end rss cmd before
  mapfile -t cmd < <(cmd_for "$tool" "$work" "$d")
  rm -rf "$d"
  sync
  before="$(wc -l <"$TMP/server.log")"
  start="$(date +%s.%N)"
  if [[ -n "$TIME_BIN" ]]; then
    "$TIME_BIN" -f %M -o "$TMP/rss" "${cmd[@]}" >/dev/null 2>"$TMP/last.err" || failed "$tool" "$work" $?
    end="$(date +%s.%N)"
    rss="$(tail -1 "$TMP/rss")"
  else
    # No /usr/bin/time: sample VmHWM from /proc while it runs.
    "${cmd[@]}" >/dev/null 2>"$TMP/last.err" &
    local pid=$! hwm=0 v
    while kill -0 "$pid" 2>/dev/null; do
      v="$(awk '/^VmHWM:/ {print $2}' "/proc/$pid/status" 2>/dev/null || true)"
      [[ -n "$v" && "$v" -gt "$hwm" ]] && hwm="$v"
      sleep 0.05
    done
    wait "$pid" || failed "$tool" "$work" $?
    end="$(date +%s.%N)"
    rss="$hwm"
  fi
  if [[ "$work" == big ]]; then
    cmp "$TMP/src/big.bin" "$d/big.bin" || { echo "$tool: big.bin differs" >&2; exit 1; }
    [[ "$(find "$d" -mindepth 1 | wc -l)" == 1 ]] || { echo "$tool: extra files in $d" >&2; exit 1; }
  else
    local got="$d"
    [[ "$SERVER" == s3s-fs && "$tool" == rclone ]] && got="$d/small"
    diff -r "$TMP/src/small" "$got" >&2 || { echo "$tool: small/ copy differs" >&2; exit 1; }
  fi
  rm -rf "$d"
  # The server logs one line per request it answered (counted after the check above, so every line
  # is written).
  REQS[$tool:$work]+="$(tail -n "+$((before + 1))" "$TMP/server.log" | grep -c "$REQUEST_LINE" || true) "
  SECS[$tool:$work]+="$(awk -v a="$start" -v b="$end" 'BEGIN {printf "%.3f", b - a}') "
  RSS[$tool:$work]+="$rss "
}

echo "=== commands (DIR is a fresh directory per run; credentials from AWS_* / RCLONE_CONFIG_MOTO_*)"
for w in big small; do
  for t in jobdl rclone; do
    echo "  $(cmd_for "$t" "$w" DIR | tr '\n' ' ')"
  done
done
for i in $(seq 1 "$RUNS"); do
  order=(jobdl rclone)
  ((i % 2 == 0)) && order=(rclone jobdl)
  for w in big small; do
    for t in "${order[@]}"; do
      run_one "$t" "$w" "$i"
    done
  done
  echo "round $i/$RUNS done (${order[*]})"
done

# stats "x y z": best (min) and median.
stats() {
  tr ' ' '\n' <<<"$1" | grep . | sort -g | awk '{v[NR] = $1} END {
    m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; printf "%s %s\n", v[1], m }'
}
maxof() { tr ' ' '\n' <<<"$1" | grep . | sort -g | tail -1; }

echo "=== $RUNS runs each; big: 1 object, $BIG_BYTES bytes; small: $SMALL_N objects, $SMALL_BYTES bytes; PARALLEL=$PARALLEL"
printf '%-7s %-6s %8s %8s %11s %11s %11s %11s %10s %9s\n' tool work best_s med_s best_MiB/s med_MiB/s \
  best_file/s med_file/s maxRSS_MiB requests
declare -A BEST MED
LINES=""
for w in big small; do
  if [[ "$w" == big ]]; then bytes="$BIG_BYTES" files=1; else bytes="$SMALL_BYTES" files="$SMALL_N"; fi
  for t in jobdl rclone; do
    read -r best med < <(stats "${SECS[$t:$w]}")
    BEST[$t:$w]="$best"
    MED[$t:$w]="$med"
    rss_kib="$(maxof "${RSS[$t:$w]}")"
    read -r rq_min rq_max < <(tr ' ' '\n' <<<"${REQS[$t:$w]}" | grep . | sort -g | sed -n '1p;$p' | paste -sd' ')
    rq="$rq_min"
    [[ "$rq_max" != "$rq_min" ]] && rq="$rq_min-$rq_max"
    awk -v t="$t" -v w="$w" -v b="$best" -v m="$med" -v by="$bytes" -v f="$files" -v r="$rss_kib" -v q="$rq" 'BEGIN {
      if (f > 1) { fb = sprintf("%11.1f", f / b); fm = sprintf("%11.1f", f / m) } else { fb = fm = sprintf("%11s", "-") }
      printf "%-7s %-6s %8.2f %8.2f %11.1f %11.1f %s %s %10.1f %9s\n",
        t, w, b, m, by / 1048576 / b, by / 1048576 / m, fb, fm, r / 1024, q }'
    LINES+="BENCH tool=$t workload=$w bytes=$bytes files=$files runs=$RUNS best_s=$best median_s=$med max_rss_kib=$rss_kib requests=[${REQS[$t:$w]% }] secs=[${SECS[$t:$w]% }]"$'\n'
  done
done
printf '%s' "$LINES"
echo "=== ratio jobdl/rclone (throughput; >1 means jobdl is faster)"
for w in big small; do
  awk -v w="$w" -v jb="${BEST[jobdl:$w]}" -v rb="${BEST[rclone:$w]}" -v jm="${MED[jobdl:$w]}" \
    -v rm="${MED[rclone:$w]}" 'BEGIN { printf "%-6s best vs best %.2f   median vs median %.2f\n", w, rb / jb, rm / jm }'
done
echo "=== end: $(date -u +%FT%TZ), load average:$(uptime | sed 's/.*load average://')"

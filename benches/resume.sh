#!/usr/bin/env bash
# Resume after SIGKILL, measured: `jobdl cp` of the kit's W1 blob from nginx is killed with
# SIGKILL once about half of the blob has arrived, then run again to the same directory.
# Prints how much the second run fetched and how much of the blob was fetched twice
# (written by the killed run but not usable after the crash), and checks the result's MD5.
#
#   benches/resume.sh [SIZE] [--capped]     SIZE as data.sh takes it (default 4G)
#
# Uses ../shared/bench (servers.sh, data.sh); starts nginx if needed and leaves it as it found it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
KIT="${BENCH_KIT:-$(cd .. && pwd)/shared/bench}"
SIZE="${1:-4G}"
PORT_LABEL="nginx blob"
[[ "${2:-}" == "--capped" ]] && PORT_LABEL="nginx-capped blob"

cargo build --release --locked --bin jobdl >/dev/null
BIN="$(mktemp -d)/jobdl"
cp target/release/jobdl "$BIN"

STARTED=0
# `servers.sh status` exits 0 either way: read what it says.
if ! "$KIT/servers.sh" status nginx 2>/dev/null | grep -q '^nginx: running'; then
  "$KIT/servers.sh" start nginx >/dev/null
  STARTED=1
fi
OUT="$(mktemp -d)"
cleanup() {
  [[ -n "${PID:-}" ]] && kill -9 "$PID" 2>/dev/null || true
  rm -rf "$OUT"
  [[ $STARTED == 1 ]] && "$KIT/servers.sh" stop nginx >/dev/null || true
}
trap cleanup EXIT

W1_SIZE="$SIZE" "$KIT/data.sh" make w1 >/dev/null
URL="$("$KIT/data.sh" urls w1 2>/dev/null | awk -v l="$PORT_LABEL" 'index($0, l) == 3 {print $NF}')"
[[ -n "$URL" ]] || { echo "no W1 URL from data.sh" >&2; exit 1; }
HOSTPORT="$(sed -E 's#^https?://([^/]+)/.*#\1#' <<<"$URL")"
SRC="$(find "${BENCH_TMP:-${TMPDIR:-/tmp}/jobdl-bench}" -path '*w1/blob.bin' | head -1)"
BYTES="$(stat -c %s "$SRC")"
export JOBDL_ACCESS_TOKEN=bench

# Run 1: SIGKILL once half of the blob has been written to the part file.
"$BIN" cp "$URL" "$OUT/d" -q --allow-host "$HOSTPORT" &
PID=$!
while :; do
  # The part file is pre-sized and sparse: its allocated blocks are the bytes written so far.
  kill -0 "$PID" 2>/dev/null || { echo "run 1 finished before it could be killed (blob too small?)" >&2; exit 1; }
  R=$(( $(stat -c '%b * %B' "$OUT/d/.blob.bin.jobdl-part" 2>/dev/null || echo 0) ))
  (( R >= BYTES / 2 )) && break
  sleep 0.005
done
kill -9 "$PID"; wait "$PID" 2>/dev/null || true
PID=""
RECEIVED1="$R"

# Run 2: the same command; -v says how many chunks the resume record held.
LOG="$OUT/run2.log"
/usr/bin/time -f '%e %M' -o "$OUT/time2" "$BIN" cp "$URL" "$OUT/d" -v --allow-host "$HOSTPORT" 2>"$LOG" >/dev/null
read -r SECS RSS <"$OUT/time2"
DONE="$(sed -nE 's/.*resuming: ([0-9]+) of ([0-9]+) chunks already on disk.*/\1 \2/p' "$LOG" | head -1)"
read -r HAVE CHUNKS <<<"${DONE:-0 0}"
CHUNK=$((8 << 20))
KEPT=$(( HAVE * CHUNK > BYTES ? BYTES : HAVE * CHUNK ))
FETCHED2=$(( BYTES - KEPT ))
TWICE=$(( RECEIVED1 + FETCHED2 - BYTES ))
(( TWICE < 0 )) && TWICE=0
WANT="$(md5sum <"$SRC" | cut -d' ' -f1)"
GOT="$(md5sum <"$OUT/d/blob.bin" | cut -d' ' -f1)"
pct() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f%%", 100 * a / b }'; }
echo "blob:            $BYTES bytes ($SIZE, ${PORT_LABEL% blob})"
echo "run 1 (SIGKILL): killed with $RECEIVED1 bytes written ($(pct "$RECEIVED1" "$BYTES"))"
echo "resume record:   $HAVE of $CHUNKS chunks durable and recorded ($(pct "$KEPT" "$BYTES"))"
echo "run 2:           fetched $FETCHED2 bytes ($(pct "$FETCHED2" "$BYTES") of the blob) in ${SECS}s, peak RSS $((RSS / 1024)) MiB"
echo "fetched twice:   $TWICE bytes ($(pct "$TWICE" "$BYTES") of the blob)"
if [[ "$WANT" == "$GOT" ]]; then echo "result:          byte-exact (md5 $GOT)"; else echo "result:          MD5 MISMATCH ($GOT, want $WANT)"; exit 1; fi

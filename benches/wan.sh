#!/usr/bin/env bash
# Far from the data: W1, W2 and W3 from the kit's nginx through examples/relay.rs, which holds every
# byte for ONE_WAY ms in each direction (and can cap each connection), alternating jobdl at its
# defaults with rclone (--transfers 64, and its defaults), aria2c and the kit's limit row (and azcopy
# on W2, the only workload whose files need no ranged GET: nginx ignores azcopy's x-ms-range).
#
#   benches/wan.sh                         (defaults below; needs the kit: ../shared/bench)
#   DELAYS="50" WORKLOADS="w2" RUNS=5 benches/wan.sh
#   RATE=64M DELAYS=50 WORKLOADS=w1 benches/wan.sh     (a per-connection cap, as a storage account has)
#
#   DELAYS     one-way delays in ms                          default "10 50 100"
#   WORKLOADS  kit workloads                                  default "w1 w2 w3"
#   RUNS       alternating rounds per (workload, delay)       default 3
#   RATE       per-connection cap of the relay (64M, 1G…)     default none
#   TOOLS      rows           default "jobdl rclone64 rclone64_sync rclone aria2c azcopy limit"
#              (rclone64_sync: rclone64 followed by a sync of every file and directory it wrote)
#   JOBDL_ARGS extra jobdl flags; sizes as the kit's data.sh (defaults here: W1_SIZE=1G, W3_BIG_SIZE=512M)
#
# Every output is checked (file count and bytes) against the workload. Prints one table per
# (workload, delay) with medians, MiB/s, files/s, peak RSS and jobdl's ratio to each row, and one
# `wan tool=… workload=… delay_ms=… median_s=…` line per row. Stops the relay and nginx on exit.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
KIT="${BENCH_KIT:-$(cd .. && pwd)/shared/bench}"
[[ -x "$KIT/compare.sh" ]] || { echo "benchmark kit not found at $KIT (set BENCH_KIT)" >&2; exit 2; }
DELAYS="${DELAYS:-10 50 100}"
WORKLOADS="${WORKLOADS:-w1 w2 w3}"
RUNS="${RUNS:-3}"
RATE="${RATE:-}"
TOOLS="${TOOLS:-jobdl rclone64 rclone64_sync rclone aria2c azcopy limit}"
RELAY_PORT="${RELAY_PORT:-28080}"
export W1_SIZE="${W1_SIZE:-1G}" W3_BIG_SIZE="${W3_BIG_SIZE:-512M}"

cargo build --release --locked --bin jobdl --example relay --quiet
TMP="$(mktemp -d "${TMPDIR:-/tmp}/jobdl-wan-bench.XXXXXX")"
BIN="$TMP/jobdl"; RELAY="$TMP/relay"
cp target/release/jobdl "$BIN"; cp target/release/examples/relay "$RELAY"
"$KIT/setup.sh" > /dev/null
"$KIT/servers.sh" start nginx > /dev/null
RELAY_PID=
cleanup() {
  [[ -n "$RELAY_PID" ]] && kill "$RELAY_PID" 2> /dev/null && wait "$RELAY_PID" 2> /dev/null
  "$KIT/servers.sh" stop nginx > /dev/null 2>&1 || true
  [[ "${KEEP:-0}" == 1 ]] || "$KIT/data.sh" clean > /dev/null 2>&1 || true
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
# shellcheck disable=SC2086
NO_AZURITE=1 "$KIT/data.sh" make $WORKLOADS > /dev/null
. "$KIT/common.sh"
SAS="sv=2022-11-02&sr=c&sp=rl&sig=unused"   # nginx ignores the query; jobdl wants a SAS shape
BASE="http://127.0.0.1:$RELAY_PORT/$BENCH_ACCOUNT/$BENCH_CONTAINER"
printf '%s\n' "jobdl $(git rev-parse --short HEAD) (release); $(nproc) cores; relay cap: ${RATE:-none}; load $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%s\n' "rclone: $(rclone version 2> /dev/null | head -n1); aria2c: $(aria2c --version | head -n1)"

start_relay() { # ONE_WAY_MS
  [[ -n "$RELAY_PID" ]] && { kill "$RELAY_PID"; wait "$RELAY_PID" 2> /dev/null || true; }
  # shellcheck disable=SC2086
  "$RELAY" "$RELAY_PORT" "$BENCH_NGINX_PORT" "$1" $RATE 2> "$TMP/relay.log" &
  RELAY_PID=$!
  for _ in $(seq 50); do curl -s -o /dev/null "http://127.0.0.1:$RELAY_PORT/" && return 0; sleep 0.1; done
  echo "the relay did not start: $(cat "$TMP/relay.log")" >&2; exit 1
}

cmd_for() { # TOOL DEST -> CMD
  local t=$1 dest=$2 url="$BASE/$W?$SAS"
  [[ $W == w1 ]] && url="$BASE/w1/blob.bin?$SAS"
  case $t in
    jobdl) # shellcheck disable=SC2086
      CMD=(env "JOBDL_ALLOW_HOSTS=127.0.0.1:$RELAY_PORT" "$BIN" cp ${JOBDL_ARGS:-} "$url" "$dest" -q) ;;
    rclone64) CMD=(env RCLONE_CONFIG="$TMP/rclone.conf" rclone copy :http: "$dest" --http-url "$BASE/$W/"
      --transfers 64 --checkers 64 --multi-thread-streams 16 -q) ;;
    rclone) CMD=(env RCLONE_CONFIG="$TMP/rclone.conf" rclone copy :http: "$dest" --http-url "$BASE/$W/" -q) ;;
    rclone64_sync) # the fastest peer made as durable as jobdl's files: rclone64, then a sync of all it wrote
      cmd_for rclone64 "$dest"
      CMD=(bash -c '"${@:2}" && find "$1" \( -type f -o -type d \) -exec sync {} +' _ "$dest" "${CMD[@]}") ;;
    aria2c)
      if [[ $W == w1 ]]; then
        CMD=(aria2c -q -x16 -s16 --file-allocation=none --allow-overwrite=true --auto-file-renaming=false -d "$dest" -o blob.bin "$url")
      else
        CMD=(aria2c -q -j64 -x16 -s16 --file-allocation=none --allow-overwrite=true --auto-file-renaming=false -d "$dest" -i "$TMP/$W.aria2")
      fi ;;
    azcopy) CMD=(env "AZCOPY_LOG_LOCATION=$TMP/azc" "AZCOPY_JOB_PLAN_LOCATION=$TMP/azc" AZCOPY_DISABLE_SYSLOG=true
      azcopy copy "$BASE/$W?$SAS" "$dest" --recursive --from-to BlobLocal --skip-version-check --log-level ERROR --output-level quiet) ;;
    limit)
      if [[ $W == w1 ]]; then CMD=(bench-limit "$url" "$dest/blob.bin" 32 8)
      else CMD=(bench-limit --many "$TMP/$W.aria2" "$dest" 64); fi ;;
  esac
}

# Sum of bytes and count of regular files under a directory, jobdl's hidden files excluded.
tally() { find "$1" -type f ! -path '*/.jobdl/*' ! -name '.*' -printf '%s\n' | awk '{ n++; b += $1 } END { printf "%d %d\n", n, b }'; }

for W in $WORKLOADS; do
  SRC="$(workload_dir "$W")"
  read -r NFILES BYTES < <(tally "$SRC")
  (cd "$SRC" && find . -type f -printf '%P\n' | sort) |
    awk -v b="$BASE/$W/" -v q="?$SAS" '{ printf "%s%s%s\n  out=%s\n", b, $1, q, $1 }' > "$TMP/$W.aria2"
  for D in $DELAYS; do
    start_relay "$D"
    declare -A SECS=() RSS=()
    rows=()
    for t in $TOOLS; do
      [[ $t == azcopy && $W != w2 ]] && continue
      [[ $t == azcopy ]] && ! command -v azcopy > /dev/null && continue
      rows+=("$t")
    done
    for r in $(seq 1 "$RUNS"); do
      order=("${rows[@]:r%${#rows[@]}}" "${rows[@]:0:r%${#rows[@]}}")
      for t in "${order[@]}"; do
        dest="$TMP/out"; rm -rf "$dest" "$TMP/azc"; mkdir -p "$dest" "$TMP/azc"
        sync
        cmd_for "$t" "$dest"
        /usr/bin/time -o "$TMP/time" -f '%e %M' timeout 900 "${CMD[@]}" > "$TMP/log" 2>&1 || {
          echo "$W ${D}ms $t failed: $(tail -3 "$TMP/log")" >&2; continue; }
        read -r n b < <(tally "$dest")
        [[ $n == "$NFILES" && $b == "$BYTES" ]] || { echo "$W ${D}ms $t: got $n files, $b bytes; want $NFILES, $BYTES" >&2; continue; }
        out="$(tail -1 "$TMP/time")"
        SECS[$t]+="${out%% *} "; RSS[$t]+="${out##* } "
      done
    done
    echo
    echo "== $W ($NFILES files, $(numfmt --to=iec "$BYTES")B), ${D} ms one way ($((2 * D)) ms RTT), $RUNS rounds"
    printf '%-9s %8s %8s %9s %9s %8s %12s\n' row med_s min_s MiB/s files/s RSS_MB jobdl÷row
    jm="$(printf '%s\n' ${SECS[jobdl]:-} | sort -g | awk '{ a[NR] = $1 } END { if (NR) print a[int((NR + 1) / 2)] }')"
    for t in "${rows[@]}"; do
      [[ -n "${SECS[$t]:-}" ]] || { printf '%-9s failed\n' "$t"; continue; }
      # shellcheck disable=SC2086
      m="$(printf '%s\n' ${SECS[$t]} | sort -g | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }')"
      # shellcheck disable=SC2086
      lo="$(printf '%s\n' ${SECS[$t]} | sort -g | head -1)"
      # shellcheck disable=SC2086
      rss="$(printf '%s\n' ${RSS[$t]} | sort -g | tail -1)"
      awk -v t="$t" -v m="$m" -v lo="$lo" -v b="$BYTES" -v n="$NFILES" -v rss="$rss" -v j="$jm" -v w="$W" -v d="$D" 'BEGIN {
        ratio = (j > 0) ? sprintf("%.2f", m / j) : "NA"
        printf "%-9s %8.2f %8.2f %9.0f %9.0f %8.1f %12s\n", t, m, lo, b / 1048576 / m, n / m, rss / 1024, ratio
        printf "wan tool=%s workload=%s delay_ms=%s median_s=%.3f mibps=%.0f rss_mb=%.1f\n", t, w, d, m, b / 1048576 / m, rss / 1024 > "/dev/stderr"
      }'
    done
  done
done

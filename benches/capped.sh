#!/usr/bin/env bash
# W1t (issue: transfer engine): one big blob from nginx's capped port (64 MiB/s per connection),
# fetched by `jobdl cp` at its defaults, by aria2c -x16 -s16 (its most connections) and by the
# kit's speed-limit downloader at 32 connections, in one run with alternating order.
#
#   benches/capped.sh           (W1_SIZE=4G RUNS=3 by default; needs the kit: ../shared/bench)
#
# Uses the kit's setup.sh, servers.sh (nginx only) and data.sh (w1); stops nginx and deletes the
# data on exit unless KEEP=1. Every output is compared with the source.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
KIT="${BENCH_KIT:-$(cd .. && pwd)/shared/bench}"
[[ -x "$KIT/compare.sh" ]] || { echo "benchmark kit not found at $KIT (set BENCH_KIT)" >&2; exit 2; }
RUNS="${RUNS:-3}"
export W1_SIZE="${W1_SIZE:-4G}"

cargo build --release --locked --bin jobdl --quiet
TMP="$(mktemp -d "${TMPDIR:-/tmp}/jobdl-capped-bench.XXXXXX")"
BIN="$TMP/jobdl"
cp target/release/jobdl "$BIN"
"$KIT/setup.sh" > /dev/null
"$KIT/servers.sh" start nginx > /dev/null
cleanup() {
  "$KIT/servers.sh" stop nginx > /dev/null 2>&1 || true
  [[ "${KEEP:-0}" == 1 ]] || "$KIT/data.sh" clean > /dev/null 2>&1 || true
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
NO_AZURITE=1 "$KIT/data.sh" make w1 > /dev/null
URL="$(NO_AZURITE=1 "$KIT/data.sh" urls w1 | awk '$1 == "nginx-capped" && $2 == "blob" { print $3; exit }')"
[[ -n "$URL" ]] || { echo "no nginx-capped blob URL from data.sh urls" >&2; exit 1; }
. "$KIT/common.sh"
FILE="$(workload_dir w1)/blob.bin"
BYTES="$(stat -c %s "$FILE")"
LIMIT="$BENCH_HOME/bin/bench-limit"
echo "jobdl $(git rev-parse --short HEAD) (release); $(nproc) cores; w1 = $(numfmt --to=iec "$BYTES")B from nginx capped at 64 MiB/s per connection; load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "  jobdl    $BIN cp '<blob URL>' DIR -q        (defaults: 8 connections, climbing to 32)"
echo "  aria2c   aria2c -q -x16 -s16 -d DIR '<blob URL>'"
echo "  limit32  bench-limit '<blob URL>' DIR/blob.bin 32 8"

declare -A SECS RSS
measure() { # name command...: appends "seconds rss_kib" for one run, then checks the copy
  local name=$1; shift
  rm -rf "$TMP/out"; mkdir -p "$TMP/out"
  sync
  cat "$FILE" > /dev/null
  /usr/bin/time -o "$TMP/time" -f '%e %M' "$@" > /dev/null 2> "$TMP/err" || {
    echo "$name failed: $(cat "$TMP/err")" >&2; exit 1; }
  cmp -s "$FILE" "$TMP/out/blob.bin" || { echo "$name: the copy differs" >&2; exit 1; }
  local out; out="$(tail -1 "$TMP/time")"
  SECS[$name]+="${out%% *} "
  RSS[$name]+="${out##* } "
}
for r in $(seq 1 "$RUNS"); do
  order=(jobdl aria2c limit32)
  (( r % 3 == 2 )) && order=(aria2c limit32 jobdl)
  (( r % 3 == 0 )) && order=(limit32 jobdl aria2c)
  for t in "${order[@]}"; do
    case $t in
      jobdl) measure jobdl env JOBDL_ALLOW_HOSTS=127.0.0.1:18081 "$BIN" cp "$URL" "$TMP/out" -q ;;
      aria2c) measure aria2c aria2c -q -x16 -s16 --allow-overwrite=true --auto-file-renaming=false \
                --file-allocation=none -d "$TMP/out" -o blob.bin "$URL" ;;
      limit32) measure limit32 "$LIMIT" "$URL" "$TMP/out/blob.bin" 32 8 ;;
    esac
  done
  echo "round $r/$RUNS done (${order[*]})"
done

median() { printf '%s\n' $1 | sort -g | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
best() { printf '%s\n' $1 | sort -g | head -1; }
most() { printf '%s\n' $1 | sort -g | tail -1; }
printf '%-8s %9s %9s %12s %12s %10s\n' row best_s med_s best_MiB/s med_MiB/s maxRSS_MB
declare -A MIBS
for n in jobdl aria2c limit32; do
  b=$(best "${SECS[$n]}"); m=$(median "${SECS[$n]}"); rss=$(most "${RSS[$n]}")
  bm=$(awk -v s="$b" -v n="$BYTES" 'BEGIN { printf "%.0f", n / 1048576 / s }')
  mm=$(awk -v s="$m" -v n="$BYTES" 'BEGIN { printf "%.0f", n / 1048576 / s }')
  MIBS[$n]=$mm
  printf '%-8s %9s %9s %12s %12s %10.1f\n' "$n" "$b" "$m" "$bm" "$mm" "$(awk -v k="$rss" 'BEGIN { print k / 1000 }')"
done
awk -v j="${MIBS[jobdl]}" -v a="${MIBS[aria2c]}" -v l="${MIBS[limit32]}" 'BEGIN {
  printf "jobdl / aria2c -x16 = %.2f (target >= 1.5); jobdl / limit32 = %.2f (target >= 0.9) (medians)\n", j / a, j / l }'
echo "load at end $(cut -d' ' -f1-3 /proc/loadavg)"

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
. benches/lib.sh
RUNS="${RUNS:-3}"
bench_w1_setup capped
URL="$(w1_url nginx-capped blob)"
LIMIT="$BENCH_HOME/bin/bench-limit"
echo "jobdl $(git rev-parse --short HEAD) (release); $(nproc) cores; w1 = $(numfmt --to=iec "$BYTES")B from nginx capped at 64 MiB/s per connection; load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "  jobdl    $BIN cp '<blob URL>' DIR -q        (defaults: 8 connections, climbing to 32)"
echo "  aria2c   aria2c -q -x16 -s16 -d DIR '<blob URL>'"
echo "  limit32  bench-limit '<blob URL>' DIR/blob.bin 32 8"

for r in $(seq 1 "$RUNS"); do
  order=(jobdl aria2c limit32)
  (( r % 3 == 2 )) && order=(aria2c limit32 jobdl)
  (( r % 3 == 0 )) && order=(limit32 jobdl aria2c)
  for t in "${order[@]}"; do
    rm -rf "$TMP/out"; mkdir -p "$TMP/out"
    case $t in
      jobdl) measure jobdl env JOBDL_ALLOW_HOSTS=127.0.0.1:18081 "$BIN" cp "$URL" "$TMP/out" -q ;;
      aria2c) measure aria2c aria2c -q -x16 -s16 --allow-overwrite=true --auto-file-renaming=false \
                --file-allocation=none -d "$TMP/out" -o blob.bin "$URL" ;;
      limit32) measure limit32 "$LIMIT" "$URL" "$TMP/out/blob.bin" 32 8 ;;
    esac
    cmp -s "$FILE" "$TMP/out/blob.bin" || { echo "$t: the copy differs" >&2; exit 1; }
  done
  echo "round $r/$RUNS done (${order[*]})"
done

print_table jobdl aria2c limit32
awk -v j="${MIBS[jobdl]}" -v a="${MIBS[aria2c]}" -v l="${MIBS[limit32]}" 'BEGIN {
  printf "jobdl / aria2c -x16 = %.2f (target >= 1.5); jobdl / limit32 = %.2f (target >= 0.9) (medians)\n", j / a, j / l }'
echo "load at end $(cut -d' ' -f1-3 /proc/loadavg)"

#!/usr/bin/env bash
# W1 vs W1-MD5 (issue: transfer engine): one big blob from unthrottled nginx, fetched by `jobdl cp`
#   - through its blob URL (no MD5 known: size only), and
#   - through the prefix URL, whose List Blobs answer carries the blob's Content-MD5, so jobdl
#     verifies while the bytes land;
# beside the one-core MD5 speed of the same file from the page cache (`md5sum`), in one run with
# alternating order. MD5 is sequential, so W1-MD5's limit is min(W1, md5sum).
#
#   benches/md5.sh                (W1_SIZE=4G RUNS=3 by default; needs the kit: ../shared/bench)
#
# Uses the kit's setup.sh, servers.sh (nginx only) and data.sh (w1); stops nginx and deletes the data
# on exit unless KEEP=1.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
KIT="${BENCH_KIT:-$(cd .. && pwd)/shared/bench}"
[[ -x "$KIT/compare.sh" ]] || { echo "benchmark kit not found at $KIT (set BENCH_KIT)" >&2; exit 2; }
RUNS="${RUNS:-3}"
export W1_SIZE="${W1_SIZE:-4G}"

cargo build --release --locked --bin jobdl --quiet
TMP="$(mktemp -d "${TMPDIR:-/tmp}/jobdl-md5-bench.XXXXXX")"
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
URLS="$(NO_AZURITE=1 "$KIT/data.sh" urls w1)"
PREFIX_URL="$(awk '$1 == "nginx" { print $2; exit }' <<< "$URLS")"
BLOB_URL="$(awk '$1 == "nginx" && $2 == "blob" { print $3; exit }' <<< "$URLS")"
. "$KIT/common.sh"
FILE="$(workload_dir w1)/blob.bin"
BYTES="$(stat -c %s "$FILE")"
[[ -n "$PREFIX_URL" && -n "$BLOB_URL" ]] || { echo "no nginx URLs from data.sh urls" >&2; exit 1; }
echo "jobdl $(git rev-parse --short HEAD) (release); $(nproc) cores; w1 = $(numfmt --to=iec "$BYTES")B; load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "  W1      $BIN cp '<blob URL>' DIR -q"
echo "  W1-MD5  $BIN cp '<prefix URL>' DIR -q      (listing carries Content-MD5: verified)"
echo "  md5sum  md5sum $FILE   (page cache)"

declare -A SECS RSS
measure() { # name command...: appends "seconds rss_kib" for one run
  local name=$1; shift
  sync
  cat "$FILE" > /dev/null
  local out
  /usr/bin/time -o "$TMP/time" -f '%e %M' "$@" > /dev/null 2> "$TMP/err" || {
    echo "$name failed: $(cat "$TMP/err")" >&2; exit 1; }
  out="$(tail -1 "$TMP/time")"
  SECS[$name]+="${out%% *} "
  RSS[$name]+="${out##* } "
}
for r in $(seq 1 "$RUNS"); do
  order=(w1 md5 sum)
  (( r % 2 == 0 )) && order=(sum md5 w1)
  for t in "${order[@]}"; do
    rm -rf "$TMP/out"
    case $t in
      w1) measure W1 env JOBDL_ALLOW_HOSTS=127.0.0.1:18080 "$BIN" cp "$BLOB_URL" "$TMP/out" -q ;;
      md5)
        measure W1-MD5 env JOBDL_ALLOW_HOSTS=127.0.0.1:18080 "$BIN" cp "$PREFIX_URL" "$TMP/out" -q --json
        cmp -s "$FILE" "$TMP/out/blob.bin" || { echo "W1-MD5 copy differs" >&2; exit 1; } ;;
      sum) measure md5sum md5sum "$FILE" ;;
    esac
  done
  echo "round $r/$RUNS done (${order[*]})"
done
# The verified run must say so.
JOBDL_ALLOW_HOSTS=127.0.0.1:18080 "$BIN" cp "$PREFIX_URL" "$TMP/out2" -q --json | grep -q '"md5":"verified"' \
  || { echo "W1-MD5 did not verify the MD5" >&2; exit 1; }

# median / best / most of a space-separated list of numbers
median() { printf '%s\n' $1 | sort -g | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
best() { printf '%s\n' $1 | sort -g | head -1; }
most() { printf '%s\n' $1 | sort -g | tail -1; }
printf '%-8s %9s %9s %12s %12s %10s\n' row best_s med_s best_MiB/s med_MiB/s maxRSS_MB
declare -A MIBS
for n in W1 W1-MD5 md5sum; do
  b=$(best "${SECS[$n]}"); m=$(median "${SECS[$n]}"); rss=$(most "${RSS[$n]}")
  bm=$(awk -v s="$b" -v n="$BYTES" 'BEGIN { printf "%.0f", n / 1048576 / s }')
  mm=$(awk -v s="$m" -v n="$BYTES" 'BEGIN { printf "%.0f", n / 1048576 / s }')
  MIBS[$n]=$mm
  printf '%-8s %9s %9s %12s %12s %10.1f\n' "$n" "$b" "$m" "$bm" "$mm" "$(awk -v k="$rss" 'BEGIN { print k / 1000 }')"
done
awk -v a="${MIBS[W1-MD5]}" -v w="${MIBS[W1]}" -v s="${MIBS[md5sum]}" 'BEGIN {
  lim = (w < s) ? w : s
  printf "W1-MD5 / min(W1, md5sum) = %.2f (medians; target >= 0.9)\n", a / lim }'
echo "load at end $(cut -d' ' -f1-3 /proc/loadavg)"

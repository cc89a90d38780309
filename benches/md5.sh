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
. benches/lib.sh
RUNS="${RUNS:-3}"
bench_w1_setup md5
PREFIX_URL="$(w1_url nginx)"
BLOB_URL="$(w1_url nginx blob)"
echo "jobdl $(git rev-parse --short HEAD) (release); $(nproc) cores; w1 = $(numfmt --to=iec "$BYTES")B; load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "  W1      $BIN cp '<blob URL>' DIR -q"
echo "  W1-MD5  $BIN cp '<prefix URL>' DIR -q      (listing carries Content-MD5: verified)"
echo "  md5sum  md5sum $FILE   (page cache)"

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

print_table W1 W1-MD5 md5sum
awk -v a="${MIBS[W1-MD5]}" -v w="${MIBS[W1]}" -v s="${MIBS[md5sum]}" 'BEGIN {
  lim = (w < s) ? w : s
  printf "W1-MD5 / min(W1, md5sum) = %.2f (medians; target >= 0.9)\n", a / lim }'
echo "load at end $(cut -d' ' -f1-3 /proc/loadavg)"

#!/usr/bin/env bash
# Throughput and memory figures for `jobdl cp` against its peers (curl, aria2c, rclone, azcopy,
# hf_transfer), the ceiling (curl + sync) and the speed limit (bench-limit), all in one run on
# 127.0.0.1, using the shared benchmark kit (../shared/bench, see its README).
#
#   benches/run.sh [quick|full] [--keep]
#
# quick: 1 GiB / 2,000 files / 512 MiB model, 3 rounds (about 15 minutes on 2 cores)
# full:  the kit's default sizes (4 GiB, 2,000 files, 1 GiB model), 5 rounds
# Prints the kit's tables and `tool=... workload=...` lines; results stay in $BENCH_HOME/results.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
KIT="${BENCH_KIT:-$(cd .. && pwd)/shared/bench}"
[[ -x "$KIT/compare.sh" ]] || { echo "benchmark kit not found at $KIT (set BENCH_KIT)" >&2; exit 2; }
MODE="${1:-quick}"
KEEP=0; [[ "${2:-}" == "--keep" ]] && KEEP=1

cargo build --release --locked --bin jobdl
BIN="$(mktemp -d)/jobdl"
cp target/release/jobdl "$BIN"   # a rebuild during the run must not change what is measured
echo "jobdl $(git rev-parse --short HEAD) (release) at $BIN"

"$KIT/setup.sh"
"$KIT/servers.sh" start
trap '"$KIT/servers.sh" stop; [[ $KEEP == 1 ]] || "$KIT/data.sh" clean' EXIT

if [[ "$MODE" == full ]]; then
  RUNS=5
  "$KIT/data.sh"
else
  RUNS=3
  W1_SIZE=1G W2_FILES=2000 W3_BIG_SIZE=512M "$KIT/data.sh"
fi

for w in w1 w2 w3; do
  "$KIT/compare.sh" "$w" "$BIN" --server nginx --runs "$RUNS"
done
# jobdl verifies MD5 when the listing carries it: the prefix URL of w3 through nginx's listing.
"$KIT/compare.sh" w3 "$BIN" --server nginx --runs 1 --verify --tools jobdl
for w in w1 w2; do
  "$KIT/compare.sh" "$w" "$BIN" --server azurite --runs "$RUNS"
done

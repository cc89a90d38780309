# Shared by benches/md5.sh and benches/capped.sh (sourced, not run): the kit, the release binary,
# nginx and the W1 blob, and the table of one alternating run.
#
#   bench_w1_setup NAME   sets KIT, TMP, BIN, FILE (the W1 blob) and BYTES; builds jobdl (release),
#                         runs the kit's setup.sh, starts nginx, makes w1 (W1_SIZE, default 4G); on
#                         exit stops nginx and deletes the data unless KEEP=1
#   w1_url LABEL [blob]   the URL data.sh prints for the label (nginx, nginx-capped), blob or prefix
#   measure NAME CMD...   one timed run: appends seconds and peak RSS (KiB) to SECS[NAME], RSS[NAME]
#   print_table ROW...    best/median seconds, MiB/s and the most RSS of each row; sets MIBS[ROW]
bench_w1_setup() {
  KIT="${BENCH_KIT:-$(cd .. && pwd)/shared/bench}"
  [[ -x "$KIT/compare.sh" ]] || { echo "benchmark kit not found at $KIT (set BENCH_KIT)" >&2; exit 2; }
  export W1_SIZE="${W1_SIZE:-4G}"
  cargo build --release --locked --bin jobdl --quiet
  TMP="$(mktemp -d "${TMPDIR:-/tmp}/jobdl-$1-bench.XXXXXX")"
  BIN="$TMP/jobdl"
  cp target/release/jobdl "$BIN"   # a rebuild during the run must not change what is measured
  "$KIT/setup.sh" > /dev/null
  "$KIT/servers.sh" start nginx > /dev/null
  trap bench_cleanup EXIT
  trap 'exit 130' INT TERM
  NO_AZURITE=1 "$KIT/data.sh" make w1 > /dev/null
  . "$KIT/common.sh"
  FILE="$(workload_dir w1)/blob.bin"
  BYTES="$(stat -c %s "$FILE")"
  declare -gA SECS RSS MIBS
}

bench_cleanup() {
  "$KIT/servers.sh" stop nginx > /dev/null 2>&1 || true
  [[ "${KEEP:-0}" == 1 ]] || "$KIT/data.sh" clean > /dev/null 2>&1 || true
  rm -rf "$TMP"
}

w1_url() {
  local url
  if [[ "${2:-}" == blob ]]; then
    url="$(NO_AZURITE=1 "$KIT/data.sh" urls w1 | awk -v l="$1" '$1 == l && $2 == "blob" { print $3; exit }')"
  else
    url="$(NO_AZURITE=1 "$KIT/data.sh" urls w1 | awk -v l="$1" '$1 == l && $2 != "blob" { print $2; exit }')"
  fi
  [[ -n "$url" ]] || { echo "no $1 ${2:-prefix} URL from data.sh urls" >&2; exit 1; }
  echo "$url"
}

measure() {
  local name=$1; shift
  sync
  cat "$FILE" > /dev/null
  /usr/bin/time -o "$TMP/time" -f '%e %M' "$@" > /dev/null 2> "$TMP/err" || {
    echo "$name failed: $(cat "$TMP/err")" >&2; exit 1; }
  local out; out="$(tail -1 "$TMP/time")"
  SECS[$name]+="${out%% *} "
  RSS[$name]+="${out##* } "
}

median() { printf '%s\n' $1 | sort -g | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
best() { printf '%s\n' $1 | sort -g | head -1; }
most() { printf '%s\n' $1 | sort -g | tail -1; }

print_table() {
  printf '%-8s %9s %9s %12s %12s %10s\n' row best_s med_s best_MiB/s med_MiB/s maxRSS_MB
  local n b m rss bm mm
  for n in "$@"; do
    b=$(best "${SECS[$n]}"); m=$(median "${SECS[$n]}"); rss=$(most "${RSS[$n]}")
    bm=$(awk -v s="$b" -v n="$BYTES" 'BEGIN { printf "%.0f", n / 1048576 / s }')
    mm=$(awk -v s="$m" -v n="$BYTES" 'BEGIN { printf "%.0f", n / 1048576 / s }')
    MIBS[$n]=$mm
    printf '%-8s %9s %9s %12s %12s %10.1f\n' "$n" "$b" "$m" "$bm" "$mm" "$(awk -v k="$rss" 'BEGIN { print k / 1000 }')"
  done
}

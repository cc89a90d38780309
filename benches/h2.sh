#!/usr/bin/env bash
# HTTP/2 against HTTP/1.1 far from the data: the kit's W2 and a W1-like single file served by a
# local nginx over TLS that offers both (ALPN h2 and http/1.1), behind examples/relay.rs (ONE_WAY
# ms each way, optionally RATE per connection), alternating jobdl as it is (HTTP/1.1) with
# jobdl allowed to speak h2 (JOBDL_HTTP2=1).
#
#   benches/h2.sh                              (defaults below; needs the kit: ../shared/bench)
#   ONE_WAY=50 RUNS=5 CASES="w2 w1" benches/h2.sh
#
#   ONE_WAY    one-way delay in ms                                   default 50
#   RUNS       alternating rounds per case                           default 3
#   CASES      w2 (2,000 x 64 KiB), w1 (one W1_SIZE file), w1cap (the same through a relay that
#              caps each connection at RATE)                         default "w2 w1 w1cap"
#   RATE       per-connection cap of the w1cap relay                 default 64M
#   ROWS       LABEL:ENV (ENV: VAR=VALUE,VAR=VALUE or -)             default "h1:- h2:JOBDL_HTTP2=1"
#   W1_SIZE    size of the single file                               default 1G
#
# Installs nginx and openssl from Debian when missing (keeping the packaged service from
# starting), makes a throw-away CA and a certificate for 127.0.0.1 that jobdl trusts through
# SSL_CERT_FILE, and runs its own nginx (config, logs and PID in a temporary directory) over the
# kit's data dir. nginx logs the protocol of every request; each row's share of HTTP/2 requests is
# printed, so a row that did not speak what it claims is seen. Every output is checked (file count
# and bytes). Prints one table per case with medians and one `h2 case=… row=… median_s=…` line per
# row. Stops the relays and nginx on exit, and deletes the data (made again at every run).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
KIT="${BENCH_KIT:-$(cd .. && pwd)/shared/bench}"
[[ -x "$KIT/data.sh" ]] || { echo "benchmark kit not found at $KIT (set BENCH_KIT)" >&2; exit 2; }
ONE_WAY="${ONE_WAY:-50}"
RUNS="${RUNS:-3}"
CASES="${CASES:-w2 w1 w1cap}"
RATE="${RATE:-64M}"
ROWS="${ROWS:-h1:- h2:JOBDL_HTTP2=1}"
TLS_PORT="${TLS_PORT:-28443}" RELAY_PORT="${RELAY_PORT:-28444}" CAPPED_PORT="${CAPPED_PORT:-28445}"
export W1_SIZE="${W1_SIZE:-1G}"

missing=()
for c in nginx openssl curl; do command -v "$c" > /dev/null || missing+=("$c"); done
[[ -x /usr/bin/time ]] || missing+=(time)
if ((${#missing[@]})); then
  [[ $(id -u) == 0 ]] || { echo "needs ${missing[*]} (run as root to install them)" >&2; exit 2; }
  own_policy=0
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d && own_policy=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" > /dev/null
  ((own_policy)) && rm -f /usr/sbin/policy-rc.d
fi

cargo build --release --locked --bin jobdl --example relay --quiet
TMP="$(mktemp -d "${TMPDIR:-/tmp}/jobdl-h2-bench.XXXXXX")"
chmod 755 "$TMP"
BIN="$TMP/jobdl"; RELAY="$TMP/relay"
cp target/release/jobdl "$BIN"; cp target/release/examples/relay "$RELAY"
# The kit's data and state in this run's own directory: a kit bench running beside this one
# (its servers.env, its data dir) is neither read nor cleaned.
export BENCH_HOME="$TMP/kit-home" BENCH_TMP="$TMP/kit"
NGINX_PID= RELAY_PIDS=()
cleanup() {
  for p in "${RELAY_PIDS[@]}"; do kill "$p" 2> /dev/null && wait "$p" 2> /dev/null; done
  [[ -n "$NGINX_PID" ]] && kill "$NGINX_PID" 2> /dev/null && wait "$NGINX_PID" 2> /dev/null
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

wls=()
[[ " $CASES " == *" w2 "* ]] && wls+=(w2)
[[ " $CASES " == *" w1"* ]] && wls+=(w1)
NO_AZURITE=1 "$KIT/data.sh" make "${wls[@]}" > /dev/null
. "$KIT/common.sh"

# A CA and a server certificate for 127.0.0.1 signed by it (a self-signed leaf is no trust anchor).
(
  cd "$TMP"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=jobdl-bench-ca \
    -keyout ca.key -out ca.pem 2> /dev/null
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=127.0.0.1 \
    -keyout server.key -out server.csr 2> /dev/null
  printf 'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' > ext.cnf
  openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -extfile ext.cnf \
    -out server.pem 2> /dev/null
  chmod 644 server.key
)

# nginx 1.25.1 and later take `http2 on;`, older ones `listen … http2`.
ver="$(nginx -v 2>&1 | sed 's/.*nginx\///; s/ .*//')"
if printf '%s\n' 1.25.1 "$ver" | sort -V -C; then LISTEN_H2=""; H2_ON="http2 on;"; else LISTEN_H2=" http2"; H2_ON=""; fi
mkdir -p "$TMP/nginx/tmp"
cat > "$TMP/nginx/nginx.conf" << EOF
$([[ $(id -u) == 0 ]] && echo 'user nobody nogroup;')
worker_processes 2;
pid $TMP/nginx/nginx.pid;
error_log $TMP/nginx/error.log warn;
events { worker_connections 4096; }
http {
    log_format proto '\$server_protocol';
    access_log $TMP/nginx/access.log proto;
    server_tokens off;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_requests 100000;
    keepalive_timeout 120s;
    types { }
    default_type application/octet-stream;
    client_body_temp_path $TMP/nginx/tmp/body;
    proxy_temp_path $TMP/nginx/tmp/proxy;
    fastcgi_temp_path $TMP/nginx/tmp/fastcgi;
    uwsgi_temp_path $TMP/nginx/tmp/uwsgi;
    scgi_temp_path $TMP/nginx/tmp/scgi;
    map \$arg_prefix \$bench_list {
        ""                                     all;
        "~^(?<wl>[A-Za-z0-9._-]+)(/|%2[Ff])?\$" \$wl;
        default                                unsupported-prefix;
    }
    server {
        listen 127.0.0.1:$TLS_PORT ssl$LISTEN_H2;
        $H2_ON
        ssl_certificate $TMP/server.pem;
        ssl_certificate_key $TMP/server.key;
        root $BENCH_DATA;
        location / {
            try_files \$uri =404;
            add_header x-ms-blob-type BlockBlob;
        }
        location = /$BENCH_ACCOUNT/$BENCH_CONTAINER {
            if (\$arg_comp != "list") { return 404; }
            default_type application/xml;
            rewrite ^ /.bench-list/\$bench_list.xml break;
        }
    }
}
EOF
nginx -q -t -p "$TMP/nginx" -e "$TMP/nginx/error.log" -c "$TMP/nginx/nginx.conf"
nginx -p "$TMP/nginx" -e "$TMP/nginx/error.log" -c "$TMP/nginx/nginx.conf" -g 'daemon off;' > /dev/null 2>&1 &
NGINX_PID=$!

start_relay() { # PORT [RATE]
  "$RELAY" "$1" "$TLS_PORT" "$ONE_WAY" ${2:+"$2"} 2> "$TMP/relay-$1.log" &
  RELAY_PIDS+=($!)
}
start_relay "$RELAY_PORT"
[[ " $CASES " == *" w1cap "* ]] && start_relay "$CAPPED_PORT" "$RATE"
for p in "$TLS_PORT" "$RELAY_PORT"; do
  for _ in $(seq 50); do curl -s -o /dev/null --cacert "$TMP/ca.pem" "https://127.0.0.1:$p/" && break; sleep 0.1; done
done
got="$(curl -s -o /dev/null -w '%{http_version}' --http2 --cacert "$TMP/ca.pem" "https://127.0.0.1:$TLS_PORT/$BENCH_ACCOUNT/$BENCH_CONTAINER?comp=list")"
[[ $got == 2 ]] || { echo "nginx does not offer h2 (curl got HTTP/$got)" >&2; exit 1; }

SAS="sv=2022-11-02&sr=c&sp=rl&sig=unused"   # nginx ignores the query; jobdl wants a SAS shape
printf '%s\n' "jobdl $(git rev-parse --short HEAD) (release); $(nproc) cores; nginx $ver over TLS; ${ONE_WAY} ms one way; load $(cut -d' ' -f1-3 /proc/loadavg)"

tally() { find "$1" -type f ! -path '*/.jobdl/*' ! -name '.*' -printf '%s\n' | awk '{ n++; b += $1 } END { printf "%d %d\n", n, b }'; }
median() { printf '%s\n' $1 | sort -g | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }

labels=()
declare -A ENVS=()
for r in $ROWS; do labels+=("${r%%:*}"); e="${r#*:}"; [[ $e == - ]] && e=""; ENVS[${r%%:*}]="${e//,/ }"; done

for C in $CASES; do
  case $C in
    w2) W=w2; PORT=$RELAY_PORT; path="w2" ;;
    w1) W=w1; PORT=$RELAY_PORT; path="w1/blob.bin" ;;
    w1cap) W=w1; PORT=$CAPPED_PORT; path="w1/blob.bin" ;;
    *) echo "unknown case $C (w2 w1 w1cap)" >&2; exit 2 ;;
  esac
  read -r NFILES BYTES < <(tally "$(workload_dir "$W")")
  url="https://127.0.0.1:$PORT/$BENCH_ACCOUNT/$BENCH_CONTAINER/$path?$SAS"
  declare -A SECS=() RSS=() H2=()
  for r in $(seq 1 "$RUNS"); do
    order=("${labels[@]:r%${#labels[@]}}" "${labels[@]:0:r%${#labels[@]}}")
    for t in "${order[@]}"; do
      dest="$TMP/out"; rm -rf "$dest"; mkdir -p "$dest"; sync
      : > "$TMP/nginx/access.log"
      # shellcheck disable=SC2086
      /usr/bin/time -o "$TMP/time" -f '%e %M' timeout 900 env "SSL_CERT_FILE=$TMP/ca.pem" \
        "JOBDL_ALLOW_HOSTS=127.0.0.1:$PORT" ${ENVS[$t]} ${JOBDL_ARGS:-} "$BIN" cp "$url" "$dest" -q > "$TMP/log" 2>&1 || {
        echo "$C $t failed: $(tail -3 "$TMP/log")" >&2; continue; }
      read -r n b < <(tally "$dest")
      [[ $n == "$NFILES" && $b == "$BYTES" ]] || { echo "$C $t: got $n files, $b bytes; want $NFILES, $BYTES" >&2; continue; }
      out="$(tail -1 "$TMP/time")"
      SECS[$t]+="${out%% *} "; RSS[$t]+="${out##* } "
      H2[$t]="$(awk '{ n++; if ($1 == "HTTP/2.0") h++ } END { printf "%d/%d", h, n }' "$TMP/nginx/access.log")"
    done
  done
  echo
  cap=""; [[ $C == w1cap ]] && cap=", $RATE per connection"
  echo "== $C ($NFILES files, $(numfmt --to=iec "$BYTES")B), ${ONE_WAY} ms one way$cap; $RUNS rounds"
  printf '%-6s %8s %8s %9s %8s %12s %12s\n' row med_s min_s MiB/s RSS_MB h2_requests "÷${labels[0]}"
  base="$(median "${SECS[${labels[0]}]:-0}")"
  for t in "${labels[@]}"; do
    [[ -n "${SECS[$t]:-}" ]] || { printf '%-6s failed\n' "$t"; continue; }
    m="$(median "${SECS[$t]}")"
    lo="$(printf '%s\n' ${SECS[$t]} | sort -g | head -1)"
    rss="$(printf '%s\n' ${RSS[$t]} | sort -g | tail -1)"
    awk -v t="$t" -v m="$m" -v lo="$lo" -v b="$BYTES" -v rss="$rss" -v h="${H2[$t]}" -v base="$base" -v c="$C" -v d="$ONE_WAY" 'BEGIN {
      printf "%-6s %8.2f %8.2f %9.0f %8.1f %12s %12.2f\n", t, m, lo, b / 1048576 / m, rss / 1024, h, (base > 0 ? m / base : 0)
      printf "h2 case=%s row=%s delay_ms=%s median_s=%.3f mibps=%.0f h2=%s\n", c, t, d, m, b / 1048576 / m, h > "/dev/stderr"
    }'
  done
done

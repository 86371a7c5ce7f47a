#!/usr/bin/env bash
# Load harness: Gatehouse against direct, a plain httputil.ReverseProxy
# (the baseline) and nginx, side by side on loopback. See docs/performance.md.
#
#   scripts/bench.sh                  # full run: 3 interleaved rounds of 5 s, ~6 min
#   BENCH_QUICK=1 scripts/bench.sh    # 1 round of 2 s, ~1 min, no TIME_WAIT soak
#
# Settings (environment):
#   BENCH_QUICK=1            quick mode (defaults below change to the quick ones)
#   BENCH_DURATION=5         seconds per measured wrk run (quick: 2)
#   BENCH_ROUNDS=3           interleaved rounds per (body, connections) (quick: 1)
#   BENCH_WARMUP=2           unmeasured seconds per target before each block (quick: 1; 0: none)
#   BENCH_BODIES="100 16384" response body sizes in bytes
#   BENCH_CONNS="50 200"     wrk connections
#   BENCH_THREADS=2          wrk threads
#   BENCH_TARGETS=...        subset/order of direct,baseline,nginx,gatehouse,gatehouse-nethttp[,haproxy,caddy]
#   BENCH_NGINX_WORKERS=auto nginx worker_processes
#   BENCH_TIMEWAIT=1         run the TIME_WAIT soak (default: on in full mode, off in quick)
#   BENCH_TIMEWAIT_DURATION=60  seconds of the soak at 200 connections against gatehouse
#   BENCH_OUT=bench-results.md  results file (relative to the directory you ran from)
#   BENCH_KEEP=1             keep the temporary directory (logs, configs, raw wrk output)
#   BENCH_TIMEOUT=1200       hard limit in seconds for the whole run
#   BENCH_GATEHOUSE_BIN=PATH use this gatehouse binary instead of building ./cmd/gatehouse
#
# Everything listens on 127.0.0.1 ports chosen free at start. Every process
# the script starts is recorded by PID and stopped on exit or interrupt; it
# never kills anything by name.
set -euo pipefail

INVOKED_FROM=$PWD
cd "$(dirname "$0")/.."
REPO=$PWD

QUICK=${BENCH_QUICK:-0}
if [ "$QUICK" = 1 ]; then
  DURATION=${BENCH_DURATION:-2}; ROUNDS=${BENCH_ROUNDS:-1}; WARMUP=${BENCH_WARMUP:-1}
  TIMEWAIT=${BENCH_TIMEWAIT:-0}; IDLE=2
else
  DURATION=${BENCH_DURATION:-5}; ROUNDS=${BENCH_ROUNDS:-3}; WARMUP=${BENCH_WARMUP:-2}
  TIMEWAIT=${BENCH_TIMEWAIT:-1}; IDLE=3
fi
BODIES=${BENCH_BODIES:-100 16384}
CONNS=${BENCH_CONNS:-50 200}
THREADS=${BENCH_THREADS:-2}
NGINX_WORKERS=${BENCH_NGINX_WORKERS:-auto}
TIMEWAIT_DURATION=${BENCH_TIMEWAIT_DURATION:-60}
TIMEOUT=${BENCH_TIMEOUT:-1200}
OUT=${BENCH_OUT:-bench-results.md}
case "$OUT" in /*) ;; *) OUT="$INVOKED_FROM/$OUT" ;; esac

log() { printf '== %s\n' "$*" >&2; }
die() { printf 'bench: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------- tools
PATH="$PATH:/usr/sbin:/sbin"
if ! command -v wrk >/dev/null 2>&1 || ! command -v nginx >/dev/null 2>&1; then
  log "installing wrk and nginx-light (Debian)"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq wrk nginx-light >/dev/null
fi
command -v wrk >/dev/null 2>&1 || die "wrk is still missing after install"
command -v nginx >/dev/null 2>&1 || die "nginx is still missing after install"
command -v ss >/dev/null 2>&1 || die "ss (iproute2) is missing"

# ---------------------------------------------------------------- processes
TMP=$(mktemp -d "${TMPDIR:-/tmp}/gatehouse-bench.XXXXXX")
PIDS=()      # our children, in start order; stopped in reverse order
ORPHANS=()   # nginx workers: not our children, stopped if the master leaves them

# alive PID: true while PID exists and is not a zombie.
alive() {
  local st
  st=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  st=${st##*) }
  [ "${st%% *}" != Z ]
}

# stop PID: SIGTERM, up to 5 s to exit, then SIGKILL; reaps our children.
stop() {
  local pid=$1 i
  if alive "$pid"; then
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do alive "$pid" || break; sleep 0.1; done
    if alive "$pid"; then kill -KILL "$pid" 2>/dev/null || true; fi
  fi
  wait "$pid" 2>/dev/null || true
}

cleanup() {
  local rc=$? i pid
  trap - EXIT INT TERM
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do stop "${PIDS[i]}"; done
  for pid in "${ORPHANS[@]}"; do
    if alive "$pid" && grep -q nginx "/proc/$pid/cmdline" 2>/dev/null; then
      kill -KILL "$pid" 2>/dev/null || true
    fi
  done
  # Keep the logs when asked to, or when the run failed (not when interrupted).
  if [ "${BENCH_KEEP:-0}" = 1 ] || { [ "$rc" != 0 ] && [ "$rc" != 130 ] && [ "$rc" != 143 ]; }; then
    log "kept $TMP (logs, configs, raw wrk output)"
  else
    rm -rf "$TMP"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# start NAME CMD...: runs CMD in the background, logging to $TMP/NAME.log;
# sets LAST_PID.
start() {
  local name=$1; shift
  "$@" >"$TMP/$name.log" 2>&1 &
  LAST_PID=$!
  PIDS+=("$LAST_PID")
}

# A watchdog bounds the whole run even if something hangs.
# Its sleep is stopped with it, so nothing outlives the run.
(
  trap 'kill "$sp" 2>/dev/null; exit 0' TERM
  sleep "$TIMEOUT" & sp=$!
  wait "$sp" || exit 0
  echo "bench: hard limit of ${TIMEOUT}s reached" >&2
  kill -TERM $$
) &
PIDS+=("$!")

# ---------------------------------------------------------------- build
log "building gatehouse and the harness into $TMP/bin"
mkdir -p "$TMP/bin"
if [ -n "${BENCH_GATEHOUSE_BIN:-}" ]; then
  cp "$BENCH_GATEHOUSE_BIN" "$TMP/bin/gatehouse"
else
  go build -o "$TMP/bin/gatehouse" ./cmd/gatehouse
fi
for p in backend baseline tool; do go build -o "$TMP/bin/$p" "./scripts/bench/$p"; done
BIN=$TMP/bin
TOOL=$BIN/tool

# ---------------------------------------------------------------- ports
mapfile -t P < <("$TOOL" ports 12)
B1=${P[0]} B2=${P[1]} BASE=${P[2]} NGX=${P[3]} GW=${P[4]} ADMIN=${P[5]}
ETCD_CLIENT=${P[6]} ETCD_PEER=${P[7]} HAP=${P[8]} CADDY=${P[9]} GWF=${P[10]} ADMINF=${P[11]}

declare -A URL PROCS MINB
PATH_PREFIX=/bench   # every target gets /bench/<bytes>; Gatehouse routes /bench/* to service bench

# ---------------------------------------------------------------- backends
log "backends on 127.0.0.1:$B1 and 127.0.0.1:$B2"
sizes=$(echo "$BODIES" | tr ' ' ',')
start backend1 "$BIN/backend" -listen "127.0.0.1:$B1" -name b1 -sizes "$sizes"; PID_B1=$LAST_PID
start backend2 "$BIN/backend" -listen "127.0.0.1:$B2" -name b2 -sizes "$sizes"
"$TOOL" wait "http://127.0.0.1:$B1/" 10s
"$TOOL" wait "http://127.0.0.1:$B2/" 10s
URL[direct]="http://127.0.0.1:$B1$PATH_PREFIX"; PROCS[direct]=$PID_B1; MINB[direct]=1

# ---------------------------------------------------------------- baseline
log "baseline httputil.ReverseProxy on 127.0.0.1:$BASE"
start baseline "$BIN/baseline" -listen "127.0.0.1:$BASE" \
  -backends "http://127.0.0.1:$B1,http://127.0.0.1:$B2" -max-idle-conns-per-host 1024
URL[baseline]="http://127.0.0.1:$BASE$PATH_PREFIX"; PROCS[baseline]=$LAST_PID; MINB[baseline]=2
"$TOOL" wait "http://127.0.0.1:$BASE/" 10s

# ---------------------------------------------------------------- nginx
log "nginx (worker_processes $NGINX_WORKERS) on 127.0.0.1:$NGX"
NP=$TMP/nginx
mkdir -p "$NP/tmp"
user_line=""
[ "$(id -u)" = 0 ] && user_line="user $(id -un) $(id -gn);"
cat >"$NP/nginx.conf" <<EOF
# Generated by scripts/bench.sh: an upstream equivalent to Gatehouse's.
$user_line
worker_processes $NGINX_WORKERS;
daemon off;
master_process on;
pid $NP/nginx.pid;
error_log $NP/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $NP/tmp/client;
  proxy_temp_path $NP/tmp/proxy;
  fastcgi_temp_path $NP/tmp/fastcgi;
  uwsgi_temp_path $NP/tmp/uwsgi;
  scgi_temp_path $NP/tmp/scgi;
  # Go's servers and transports put no cap on requests per connection;
  # nginx's default of 1000 would make it reconnect to wrk and to backends.
  keepalive_requests 1000000;
  keepalive_timeout 300s;
  upstream backends {
    server 127.0.0.1:$B1;
    server 127.0.0.1:$B2;
    keepalive 256;
    keepalive_requests 1000000;
    keepalive_timeout 300s;
  }
  server {
    listen 127.0.0.1:$NGX;
    location / {
      proxy_pass http://backends;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Host \$host;
      proxy_set_header X-Forwarded-Proto \$scheme;
    }
  }
}
EOF
start nginx nginx -p "$NP" -c "$NP/nginx.conf" -e "$NP/error.log"
NGX_MASTER=$LAST_PID
"$TOOL" wait "http://127.0.0.1:$NGX/" 10s
mapfile -t NGX_WORKERS < <(pgrep -P "$NGX_MASTER" || true)
[ "${#NGX_WORKERS[@]}" -gt 0 ] || die "nginx started no workers; see $NP/error.log"
ORPHANS+=("${NGX_WORKERS[@]}")
URL[nginx]="http://127.0.0.1:$NGX$PATH_PREFIX"; PROCS[nginx]="$NGX_MASTER ${NGX_WORKERS[*]}"; MINB[nginx]=2

# ---------------------------------------------------------------- gatehouse
log "gatehouse gateway on 127.0.0.1:$GW (admin $ADMIN, embedded etcd $ETCD_CLIENT) + 2 sidecars"
start gateway "$BIN/gatehouse" gateway --listen "127.0.0.1:$GW" --admin "127.0.0.1:$ADMIN" \
  --registry embedded --embedded-client-addr "127.0.0.1:$ETCD_CLIENT" \
  --embedded-peer-addr "127.0.0.1:$ETCD_PEER" --access-log=false --log-level warn
GW_PID=$LAST_PID
"$TOOL" wait "http://127.0.0.1:$ADMIN/readyz" 60s || die "gateway not ready; see $TMP/gateway.log"
for b in "$B1" "$B2"; do
  start "sidecar-$b" "$BIN/gatehouse" sidecar --registry "etcd://127.0.0.1:$ETCD_CLIENT" \
    --service bench --address "http://127.0.0.1:$b" --ttl 10s --interval 1s --drain 0s --log-level warn
done
"$TOOL" wait-instances "http://127.0.0.1:$ADMIN/admin/services" bench 2 60s \
  || die "gateway never listed 2 instances of bench; see $TMP/gateway.log, $TMP/sidecar-*.log"
URL[gatehouse]="http://127.0.0.1:$GW$PATH_PREFIX"; PROCS[gatehouse]=$GW_PID; MINB[gatehouse]=2

# The same gateway on the net/http front end (the default is fasthttp),
# following the first one's embedded registry (so its CPU excludes etcd).
log "gatehouse-nethttp (--server nethttp) on 127.0.0.1:$GWF, registry etcd://127.0.0.1:$ETCD_CLIENT"
start gateway-nethttp "$BIN/gatehouse" gateway --listen "127.0.0.1:$GWF" --admin "127.0.0.1:$ADMINF" \
  --registry "etcd://127.0.0.1:$ETCD_CLIENT" --server nethttp --access-log=false --log-level warn \
  --advertise-admin none
GWF_PID=$LAST_PID
"$TOOL" wait-instances "http://127.0.0.1:$ADMINF/admin/services" bench 2 60s \
  || die "gateway-nethttp never listed 2 instances of bench; see $TMP/gateway-nethttp.log"
URL[gatehouse-nethttp]="http://127.0.0.1:$GWF$PATH_PREFIX"; PROCS[gatehouse-nethttp]=$GWF_PID; MINB[gatehouse-nethttp]=2

# ---------------------------------------------------------------- optional: haproxy, caddy
DEFAULT_TARGETS="direct baseline nginx gatehouse gatehouse-nethttp"
if command -v haproxy >/dev/null 2>&1; then
  log "haproxy on 127.0.0.1:$HAP"
  cat >"$TMP/haproxy.cfg" <<EOF
global
  nbthread 2
  maxconn 4096
defaults
  mode http
  timeout connect 2s
  timeout client 60s
  timeout server 60s
  option http-keep-alive
  option forwardfor
  http-reuse always
frontend fe
  bind 127.0.0.1:$HAP
  default_backend be
backend be
  balance roundrobin
  server b1 127.0.0.1:$B1
  server b2 127.0.0.1:$B2
EOF
  start haproxy haproxy -db -f "$TMP/haproxy.cfg"
  URL[haproxy]="http://127.0.0.1:$HAP$PATH_PREFIX"; PROCS[haproxy]=$LAST_PID; MINB[haproxy]=2
  "$TOOL" wait "http://127.0.0.1:$HAP/" 10s
  DEFAULT_TARGETS+=" haproxy"
fi
if command -v caddy >/dev/null 2>&1; then
  log "caddy on 127.0.0.1:$CADDY"
  cat >"$TMP/Caddyfile" <<EOF
{
	admin off
	auto_https off
}
http://127.0.0.1:$CADDY {
	bind 127.0.0.1
	reverse_proxy 127.0.0.1:$B1 127.0.0.1:$B2 {
		lb_policy round_robin
		transport http {
			keepalive_idle_conns 2048
			keepalive_idle_conns_per_host 1024
		}
	}
}
EOF
  start caddy env HOME="$TMP" XDG_DATA_HOME="$TMP/caddy-data" XDG_CONFIG_HOME="$TMP/caddy-config" \
    caddy run --config "$TMP/Caddyfile" --adapter caddyfile
  URL[caddy]="http://127.0.0.1:$CADDY$PATH_PREFIX"; PROCS[caddy]=$LAST_PID; MINB[caddy]=2
  "$TOOL" wait "http://127.0.0.1:$CADDY/" 20s
  DEFAULT_TARGETS+=" caddy"
fi
read -r -a TARGETS <<<"$(echo "${BENCH_TARGETS:-$DEFAULT_TARGETS}" | tr ',' ' ')"
for t in "${TARGETS[@]}"; do [ -n "${URL[$t]:-}" ] || die "unknown or unavailable target $t"; done

# Every target must answer every size correctly, from both backends.
for t in "${TARGETS[@]}"; do
  for body in $BODIES; do
    "$TOOL" check "${URL[$t]}/$body" "$body" "${MINB[$t]}" || die "target $t failed its check"
  done
done

# ---------------------------------------------------------------- measuring
CLK_TCK=$(getconf CLK_TCK)

# cpu_ticks PID...: utime+stime of the processes (all their threads), in clock ticks.
cpu_ticks() {
  local total=0 pid st f
  for pid in "$@"; do
    st=$(cat "/proc/$pid/stat") || die "process $pid is gone"
    read -r -a f <<<"${st##*) }"
    total=$((total + f[11] + f[12]))
  done
  echo "$total"
}
# peak_rss_kib PID...: sum of VmHWM; reset_peak PID... starts a new peak.
peak_rss_kib() {
  local total=0 pid v
  for pid in "$@"; do
    v=$(awk '/^VmHWM:/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)
    total=$((total + ${v:-0}))
  done
  echo "$total"
}
RSS_RESET=1
reset_peak() {
  local pid
  for pid in "$@"; do echo 5 >"/proc/$pid/clear_refs" 2>/dev/null || RSS_RESET=0; done
}

# cpu_busy: "busy total" jiffies of the whole machine, from /proc/stat.
cpu_busy() { awk '/^cpu / {t = 0; for (i = 2; i <= 9; i++) t += $i; print t - $5 - $6, t; exit}' /proc/stat; }
# foreign_load SECONDS: percent of the machine's CPU busy over SECONDS while our
# processes idle, i.e. what other work on the machine is using.
foreign_load() {
  local b0 t0 b1 t1
  read -r b0 t0 < <(cpu_busy)
  sleep "$1"
  read -r b1 t1 < <(cpu_busy)
  awk -v b="$((b1 - b0))" -v t="$((t1 - t0))" 'BEGIN {printf "%.0f%%", (t > 0 ? 100 * b / t : 0)}'
}

# tw_count [FILTER...]: TIME_WAIT TCP sockets (IPv4 and IPv6), optionally filtered.
tw_count() { ss -Htan state time-wait "$@" 2>/dev/null | wc -l; }
tw_split() {
  local all client upstream
  all=$(tw_count)
  client=$(tw_count "( sport = :$GW or dport = :$GW )")
  upstream=$(tw_count "( dport = :$B1 or dport = :$B2 or sport = :$B1 or sport = :$B2 )")
  echo "all $all, client side (wrk<->gateway port) $client, upstream side (any<->backend ports) $upstream"
}

SAMPLES=$TMP/samples.tsv
: >"$SAMPLES"
TW_NOTES=()

# run_wrk OUT SECONDS CONNS URL
run_wrk() {
  timeout "$(($2 + 30))" wrk -t"$THREADS" -c"$3" -d"$2s" --latency "$4" >"$1" 2>&1 \
    || die "wrk failed against $4: $(tail -n 3 "$1")"
}

# measure TARGET BODY CONNS ROUND
measure() {
  local t=$1 body=$2 conns=$3 round=$4 out c0 c1 rss
  local -a pids
  read -r -a pids <<<"${PROCS[$t]}"
  out="$TMP/wrk-$body-$conns-$round-$t.txt"
  reset_peak "${pids[@]}"
  c0=$(cpu_ticks "${pids[@]}")
  run_wrk "$out" "$DURATION" "$conns" "${URL[$t]}/$body"
  c1=$(cpu_ticks "${pids[@]}")
  rss=-1; [ "$RSS_RESET" = 1 ] && rss=$(peak_rss_kib "${pids[@]}")
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$body" "$conns" "$round" "$t" "$out" "$((c1 - c0))" "$rss" >>"$SAMPLES"
  printf '   %-10s %8s req/s  cpu %s ticks\n' "$t" "$(awk '/^Requests\/sec/ {printf "%.0f", $2}' "$out")" "$((c1 - c0))" >&2
  if [ "$t" = gatehouse ] && [ "$conns" -ge 200 ]; then
    TW_NOTES+=("after gatehouse, ${body} B, $conns conns, round $round: $(tw_split)")
  fi
}

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
START_TS=$(date -u '+%Y-%m-%d %H:%M UTC')
SECONDS=0

# Idle: what each target burns and holds with no traffic (Gatehouse: embedded
# etcd, lease keep-alives), and how busy the machine is with other work.
log "idle CPU over ${IDLE}s"
declare -A IDLE0
for t in "${TARGETS[@]}"; do read -r -a pids <<<"${PROCS[$t]}"; IDLE0[$t]=$(cpu_ticks "${pids[@]}"); done
BUSY_BEFORE=$(foreign_load "$IDLE")
IDLE_LINE=""
for t in "${TARGETS[@]}"; do
  read -r -a pids <<<"${PROCS[$t]}"
  d=$(($(cpu_ticks "${pids[@]}") - IDLE0[$t]))
  rss=0
  for pid in "${pids[@]}"; do
    v=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)
    rss=$((rss + ${v:-0}))
  done
  IDLE_LINE+="${IDLE_LINE:+; }$t $(awk -v d="$d" -v s="$IDLE" -v hz="$CLK_TCK" -v r="$rss" \
    'BEGIN {printf "%.1f ms/s, %.1f MiB", d / hz * 1000 / s, r / 1024}')"
done

n=${#TARGETS[@]}
for body in $BODIES; do
  for conns in $CONNS; do
    if [ "$WARMUP" -gt 0 ]; then
      log "body $body B, $conns connections: warm-up ${WARMUP}s per target"
      for t in "${TARGETS[@]}"; do run_wrk "$TMP/warmup.txt" "$WARMUP" "$conns" "${URL[$t]}/$body"; done
    fi
    for ((r = 1; r <= ROUNDS; r++)); do
      log "body $body B, $conns connections: round $r/$ROUNDS"
      # Rotate the order each round so no target always runs first or last.
      for ((i = 0; i < n; i++)); do
        measure "${TARGETS[$(((i + r - 1) % n))]}" "$body" "$conns" "$r"
      done
    done
  done
done

# ---------------------------------------------------------------- TIME_WAIT soak
SOAK_LINE=""
if [ "$TIMEWAIT" = 1 ] && [[ " ${TARGETS[*]} " == *" gatehouse "* ]]; then
  log "TIME_WAIT soak: ${TIMEWAIT_DURATION}s at 200 connections against gatehouse"
  first=${BODIES%% *}
  # A quiet moment first: the sample at the end of the soak then sees (almost)
  # only TIME_WAIT sockets the soak made, since TIME_WAIT lasts at most 60 s.
  sleep 3
  tw_before=$(tw_split)
  timeout "$((TIMEWAIT_DURATION + 30))" wrk -t"$THREADS" -c200 -d"${TIMEWAIT_DURATION}s" --latency \
    "${URL[gatehouse]}/$first" >"$TMP/wrk-soak.txt" 2>&1 &
  SOAK_PID=$!
  PIDS+=("$SOAK_PID")
  sleep "$((TIMEWAIT_DURATION > 3 ? TIMEWAIT_DURATION - 2 : 1))"
  tw_during=$(tw_split)
  wait "$SOAK_PID" || die "soak wrk failed: $(tail -n 3 "$TMP/wrk-soak.txt")"
  tw_after=$(tw_split)
  soak_rps=$(awk '/^Requests\/sec/ {printf "%.0f", $2}' "$TMP/wrk-soak.txt")
  SOAK_LINE="- before: $tw_before
- at ${TIMEWAIT_DURATION}-2 s, under load ($soak_rps req/s, ${first} B bodies): $tw_during
- just after wrk closed its connections: $tw_after"
fi

ELAPSED=$SECONDS
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
BUSY_AFTER=$(foreign_load 2)

# ---------------------------------------------------------------- report
tables=$("$TOOL" report -samples "$SAMPLES" -ticks "$CLK_TCK" -targets "$(echo "${TARGETS[*]}" | tr ' ' ',')")
mode=full; [ "$QUICK" = 1 ] && mode=quick
if [ -n "${BENCH_GATEHOUSE_BIN:-}" ]; then
  rev="binary $BENCH_GATEHOUSE_BIN"
else
  rev=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)
  [ -z "$(git -C "$REPO" status --porcelain -- . 2>/dev/null)" ] || rev+=" (with uncommitted changes)"
fi
{
  echo "## Gatehouse load harness — $START_TS"
  echo
  echo "- mode: $mode; $ROUNDS interleaved round(s) of ${DURATION}s per target, warm-up ${WARMUP}s; wrk -t$THREADS --latency; ${ELAPSED}s in all"
  echo "- machine: $(nproc) CPUs, $(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo), kernel $(uname -r)"
  echo "- other work on the machine (CPU busy while the harness idled): before $BUSY_BEFORE, after $BUSY_AFTER;"
  echo "  load average before $LOAD_BEFORE, after $LOAD_AFTER. Anything but ~0% skews the numbers."
  echo "- gatehouse $rev, $(go version | cut -d' ' -f3); $(nginx -v 2>&1 | sed 's/^nginx version: //') (worker_processes $NGINX_WORKERS: ${#NGX_WORKERS[@]} workers); $(wrk -v 2>&1 | head -n1 | cut -d' ' -f1-2)"
  echo "- direct = wrk against backend 1 alone; its CPU and RSS are that backend's. nginx = master + workers summed."
  echo "  gatehouse = the gateway process only, which includes its embedded etcd."
  [ "$RSS_RESET" = 1 ] || echo "- peak RSS could not be reset between runs: it is the peak since start"
  echo "- idle, before any traffic (CPU per second, RSS): $IDLE_LINE"
  echo
  echo "$tables"
  echo
  if [ "${#TW_NOTES[@]}" -gt 0 ]; then
    echo "TIME_WAIT sockets right after each 200-connection gatehouse run. \"all\" is the whole machine"
    echo "(other work included); the backend-port count includes what the other targets' runs of the last"
    echo "60 s left, among them wrk's own sockets from the direct runs; the soak below is the clean measure."
    echo
    for l in "${TW_NOTES[@]}"; do echo "- $l"; done
    echo
  fi
  if [ -n "$SOAK_LINE" ]; then
    echo "TIME_WAIT soak, ${TIMEWAIT_DURATION}s at 200 connections against gatehouse:"
    echo
    echo "$SOAK_LINE"
    echo
  fi
} >"$OUT"
cat "$OUT"
log "results written to $OUT"

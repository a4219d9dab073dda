#!/usr/bin/env bash
# HTTP load benchmark: what webhook-guard costs in front of an axum handler,
# and what the durable queue costs against the in-memory one.
#
# Servers (benches/peers, `webhook-guard-peers serve <mode>`), all on the
# same runtime and handler:
#   bare          plain axum route, the handler takes the body as bytes
#   stack         rate limit + GitHub signature verification + in-memory dedupe
#   stack-metrics stack + MetricsObserver (route and limiter) with the
#                 Prometheus exporter's recorder installed
#   full          stack + JSON Schema validation + typed dispatch (serde struct)
#   queue-mem     stack, but answered 202 once queued in an in-memory AckQueue;
#                 4 workers run the handler
#   queue-sqlite  queue-mem with the dedupe keys and the queue in one SQLite
#                 file (committed with fsync before the 202), kept in a fresh
#                 directory under TMPDIR (default /tmp): put TMPDIR on the
#                 disk you mean to measure
#   stack-redis   stack with the whole state in Redis: the limiter shared
#                 through Redis, the dedupe keys in a RedisStore
#   queue-redis   queue-mem with the whole state in Redis (shared limiter,
#                 RedisStore, RedisQueue)
# The Redis modes use a redis-server the script starts on a free loopback
# port (appendonly yes, appendfsync always: the durable configuration the
# docs recommend; LOAD_REDIS_FSYNC=everysec or no to see what the fsyncs
# cost), pinned to the server's CPU, since it is the server's state; set
# WEBHOOK_GUARD_REDIS_URL to use one you run instead.
# each pinned to one CPU and driven by wrk pinned to another, over loopback,
# with a pool of distinct pre-signed deliveries (1 KiB bodies). LOAD_MODES
# picks the modes (default "bare stack full"); they run in alternation
# (bare, stack, full, bare, ...) for LOAD_ROUNDS rounds; the table shows per
# mode the median requests/s and p99 latency, the server's memory, and the
# ratios to the first mode listed (the baseline).
#
#   bash scripts/load.sh                 # bare, stack, full: 3 rounds of 10 s per mode
#   LOAD_SMOKE=1 bash scripts/load.sh    # CI: 1 round of 2 s per mode
#   LOAD_MODES="queue-mem queue-sqlite" bash scripts/load.sh
#                                        # durable queue against in-memory queue
#   LOAD_MODES="queue-mem queue-sqlite" LOAD_CONNECTIONS=128 LOAD_PACE_MS=16 bash scripts/load.sh
#                                        # the same at one offered load (~8 000/s)
#   LOAD_MODES="stack stack-metrics" bash scripts/load.sh
#                                        # what metrics cost over HTTP
#   LOAD_MODES="stack stack-redis queue-mem queue-redis" bash scripts/load.sh
#                                        # the whole state in Redis against in memory
#
# LOAD_PERF=<dir>: records each measured run of the server with `perf record
# -g` into <dir>/<mode>.<round>.data (perf must be installed; read it with
# `perf report -i ...`). The recording costs the server a little.
#
# Knobs: LOAD_MODES ("bare stack full"), LOAD_ROUNDS (3), LOAD_SECONDS (10),
# LOAD_CONNECTIONS (32), LOAD_QUEUE_WORKERS (4: the queue modes' workers),
# LOAD_BIN (a webhook-guard-peers binary to run instead of building one: to
# compare two builds, run the script once with each), LOAD_PACE_MS (0: each
# connection sends its next request as soon as the last is answered; N: it
# waits N ms first, so the modes get about the same offered load,
# connections / (N ms + latency), and their latencies compare at that load
# rather than at each one's saturation), LOAD_SMOKE=1 (1 round of 2 s), LOAD_POOL
# (deliveries in the pool; default: sized for this machine, at least
# 50000), LOAD_DRAIN (60: seconds a queue mode may take to run what it
# queued).
#
# The script fails (exit 1) if wrk is missing and cannot be installed, if
# any response is not 2xx (a queue mode's 202 is 2xx) or any socket error
# occurs, or if the dedupe modes saw duplicates: their numbers would then
# measure the cheaper duplicate path instead of fresh deliveries (raise
# LOAD_POOL).
#
# Queue modes: the req/s is the rate at which deliveries are accepted (202);
# the workers run them meanwhile. After the warm-up and after each measured
# run the script waits (at most LOAD_DRAIN seconds) until the queue is empty,
# so the warm-up's backlog does not run during the measured run, and checks
# that the workers ran every accepted delivery; the round's line shows how
# long the measured run's backlog took to drain, and the rate the workers
# ran deliveries at from the start of the measured run until the queue was
# empty (below req/s when the queue grew). It fails if the queue does not
# drain in time.
#
# Dedupe retention: the servers remember a delivery for 1 s (the least the
# crate allows). wrk replays the pool in order, so the same delivery comes
# round again only after a whole pool of requests; as long as the server
# serves fewer requests a second than the pool holds, its key has expired by
# then and every delivery is fresh. Unless LOAD_POOL is set, a short
# calibration run of the first mode in LOAD_MODES that deduplicates (stack
# by default: the fastest of bare, stack, full that does) sizes the pool to 1.5 times what it serves in the retention, at least
# 50000 deliveries (about 1.3 KB each). The pause after each warm-up
# (longer than the retention) lets the warm-up's keys expire before the
# measured run, which starts at the top of the pool again.
set -euo pipefail
cd "$(dirname "$0")/.."

rounds=${LOAD_ROUNDS:-3}
seconds=${LOAD_SECONDS:-10}
connections=${LOAD_CONNECTIONS:-32}
pace_ms=${LOAD_PACE_MS:-0}
pool_size=${LOAD_POOL:-50000}
warmup=2
drain_limit=${LOAD_DRAIN:-60}
if [ "${LOAD_SMOKE:-0}" = 1 ]; then
  rounds=1
  seconds=2
  warmup=1
fi
retention_ms=1000 # the servers' dedupe retention; read back from each server
read -ra modes <<<"${LOAD_MODES:-bare stack full}"

die() {
  echo "load: error: $*" >&2
  exit 1
}

if [ -n "${LOAD_QUEUE_WORKERS:-}" ]; then
  [[ $LOAD_QUEUE_WORKERS =~ ^[1-9][0-9]*$ ]] ||
    die "LOAD_QUEUE_WORKERS must be a whole number greater than 0, not '$LOAD_QUEUE_WORKERS'"
  export LOAD_QUEUE_WORKERS
fi
for knob in LOAD_ROUNDS:rounds LOAD_SECONDS:seconds LOAD_CONNECTIONS:connections LOAD_POOL:pool_size LOAD_DRAIN:drain_limit; do
  name=${knob#*:}
  value=${!name}
  [[ $value =~ ^[1-9][0-9]*$ ]] || die "${knob%:*} must be a whole number greater than 0, not '$value'"
done
[[ $pace_ms =~ ^[0-9]+$ ]] || die "LOAD_PACE_MS must be a whole number of milliseconds, not '$pace_ms'"

[ "${#modes[@]}" -ge 1 ] || die "LOAD_MODES names no mode"
declare -A seen
for mode in "${modes[@]}"; do
  case $mode in
    bare | stack | stack-metrics | full | queue-mem | queue-sqlite | stack-redis | queue-redis) ;;
    *) die "LOAD_MODES: unknown mode '$mode' (bare, stack, stack-metrics, full, queue-mem, queue-sqlite, stack-redis, queue-redis)" ;;
  esac
  [ -z "${seen[$mode]:-}" ] || die "LOAD_MODES names '$mode' twice"
  seen[$mode]=1
done
base=${modes[0]} # the ratios' baseline
# The first mode that deduplicates sizes the pool (none: no calibration).
calibrate_mode=
for mode in "${modes[@]}"; do
  if [ "$mode" != bare ]; then
    calibrate_mode=$mode
    break
  fi
done
# Width of the mode column: the longest name, at least 5 (per round) and 6
# (table) as with the default modes.
width=5
for mode in "${modes[@]}"; do
  [ "${#mode}" -le "$width" ] || width=${#mode}
done

is_queue() {
  [[ $1 == queue-* ]]
}

# --- tools -------------------------------------------------------------------

command -v taskset >/dev/null || die "taskset (util-linux) is required to pin the server and wrk to CPUs"
if ! command -v wrk >/dev/null; then
  if [ "$(id -u)" != 0 ]; then
    die "wrk is not installed, and only root may install it here; install it (e.g. 'sudo apt-get install -y wrk') and run again"
  fi
  command -v apt-get >/dev/null || die "wrk is not installed and there is no apt-get to install it with; install wrk and run again"
  echo "load: installing wrk" >&2
  if ! apt-get install -y wrk >/dev/null; then
    apt-get update >/dev/null && apt-get install -y wrk >/dev/null || die "could not install wrk with apt-get"
  fi
  command -v wrk >/dev/null || die "wrk is still missing after apt-get install"
fi

# Two CPUs the process may use: the server gets the first, wrk the second.
cpus=()
IFS=',' read -ra ranges <<<"$(sed -n 's/^Cpus_allowed_list:[[:space:]]*//p' /proc/self/status)"
for range in "${ranges[@]}"; do
  if [[ $range == *-* ]]; then
    for ((cpu = ${range%-*}; cpu <= ${range#*-}; cpu++)); do cpus+=("$cpu"); done
  elif [ -n "$range" ]; then
    cpus+=("$range")
  fi
done
[ "${#cpus[@]}" -ge 1 ] || die "cannot read the CPUs this process may use from /proc/self/status"
server_cpu=${cpus[0]}
if [ "${#cpus[@]}" -ge 2 ]; then
  client_cpu=${cpus[1]}
else
  client_cpu=${cpus[0]}
  echo "load: warning: only one CPU is available; the server and wrk share it, so the numbers mean little" >&2
fi

# --- build and pool ----------------------------------------------------------

if [ -n "${LOAD_BIN:-}" ]; then
  bin=$LOAD_BIN
  [ -x "$bin" ] || die "LOAD_BIN: $bin is not an executable file"
  echo "load: running the servers of $bin" >&2
else
  echo "load: building the servers (release)" >&2
  bin=$(cargo build --release --manifest-path benches/peers/Cargo.toml \
    --message-format=json-render-diagnostics |
    sed -n 's/.*"executable":"\([^"]*webhook-guard-peers\)".*/\1/p' | tail -n 1)
  [ -n "$bin" ] && [ -x "$bin" ] || die "cargo did not report the webhook-guard-peers binary"
fi

work=$(mktemp -d)
server_pid=
cleanup() {
  if [ -n "$server_pid" ]; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  if [ -n "${redis_pid:-}" ]; then
    kill "$redis_pid" 2>/dev/null || true
    wait "$redis_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

pool=$work/pool.tsv

# --- Redis for the Redis modes -------------------------------------------------

redis_pid=
needs_redis=
for mode in "${modes[@]}"; do
  [[ $mode == *-redis ]] && needs_redis=1
done
if [ -n "$needs_redis" ] && [ -z "${WEBHOOK_GUARD_REDIS_URL:-}" ]; then
  command -v redis-server >/dev/null || die "the Redis modes need redis-server (apt-get install redis-server)"
  mkdir -p "$work/redis"
  for _ in 1 2 3 4 5 6 7 8 9 10; do
    redis_port=$((20000 + RANDOM % 12000))
    taskset -c "$server_cpu" redis-server --port "$redis_port" --bind 127.0.0.1 --save '' \
      --appendonly yes --appendfsync "${LOAD_REDIS_FSYNC:-always}" --dir "$work/redis" --logfile "$work/redis/redis.log" &
    redis_pid=$!
    for _ in $(seq 50); do
      (exec 3<>"/dev/tcp/127.0.0.1/$redis_port") 2>/dev/null && break
      kill -0 "$redis_pid" 2>/dev/null || break
      sleep 0.1
    done
    (exec 3<>"/dev/tcp/127.0.0.1/$redis_port") 2>/dev/null && break
    wait "$redis_pid" 2>/dev/null || true
    redis_pid=
  done
  [ -n "$redis_pid" ] || die "could not start redis-server on a loopback port"
  export WEBHOOK_GUARD_REDIS_URL="redis://127.0.0.1:$redis_port/"
  echo "load: redis-server for the Redis modes on port $redis_port (appendfsync ${LOAD_REDIS_FSYNC:-always})" >&2
fi

# --- one measurement ---------------------------------------------------------

# A latency as wrk prints it (850.00us, 1.21ms, 2.00s, 1.00m) in ms.
to_ms() {
  awk -v v="$1" 'BEGIN {
    n = v + 0; unit = v; sub(/^[0-9.]+/, "", unit)
    if (unit == "us") n /= 1000; else if (unit == "s") n *= 1000;
    else if (unit == "m") n *= 60000; else if (unit == "h") n *= 3600000;
    else if (unit != "ms") { print "?"; exit }
    printf "%.3f", n }'
}

# GET /stats from the server on port $1 (bash's /dev/tcp: no curl needed).
stats() {
  local reply
  reply=$(
    exec 3<>"/dev/tcp/127.0.0.1/$1" &&
      printf 'GET /stats HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n' >&3 &&
      cat <&3
  ) || die "GET /stats on port $1 failed"
  printf '%s\n' "${reply##*$'\n'}"
}

# The value of counter $2 in the stats document $1.
counter() {
  sed -n "s/.*\"$2\":\([0-9]*\).*/\1/p" <<<"$1"
}

# drain <port> <mode> <what ran> <wrk runs so far>: waits until the queue
# of the server on <port> is empty (at most drain_limit seconds) and checks
# that the workers ran every fresh delivery; sets drained_s to how long it
# took and drained_doc to the stats then. A request wrk cuts off when its run ends may have claimed its key
# and never been queued, so up to one per connection per run may be
# missing.
drain() {
  local start now doc queued handled acquired
  start=$(date +%s.%N)
  while :; do
    doc=$(stats "$1")
    queued=$(counter "$doc" queued)
    now=$(date +%s.%N)
    [ "$queued" = 0 ] && break
    if awk -v s="$start" -v n="$now" -v l="$drain_limit" 'BEGIN { exit !(n - s >= l) }'; then
      die "$3: the $2 queue still held ${queued:-an unknown number of} deliveries after ${drain_limit} s (LOAD_DRAIN); stats $doc"
    fi
    sleep 0.1
  done
  drained_s=$(awk -v s="$start" -v n="$now" 'BEGIN { printf "%.1f", n - s }')
  drained_doc=$doc
  handled=$(counter "$doc" handled)
  acquired=$(counter "$doc" acquired)
  [[ $handled =~ ^[0-9]+$ ]] && [[ $acquired =~ ^[0-9]+$ ]] &&
    [ "$handled" -le "$acquired" ] && [ $((acquired - handled)) -le $((connections * $4)) ] ||
    die "$3: the $2 workers ran $handled deliveries but $acquired were claimed as fresh; stats $doc"
}

# run_wrk <port> <seconds> <output file>
run_wrk() {
  PACE_MS=$pace_ms taskset -c "$client_cpu" wrk -t1 -c"$connections" -d"$2"s --latency \
    -s scripts/load/pool.lua "http://127.0.0.1:$1/webhook" -- "$pool" >"$3" 2>&1 ||
    { cat "$3" >&2; die "wrk failed"; }
}

# Fails unless every response in wrk's output $1 ($2: what ran) was 2xx
# without socket errors.
check_wrk() {
  local non2xx errors
  non2xx=$(awk '/Non-2xx or 3xx responses:/ {print $NF}' "$1")
  errors=$(awk '/Socket errors:/ {gsub(/,/, ""); print $4 + $6 + $8 + $10}' "$1")
  if [ "${non2xx:-0}" != 0 ] || [ "${errors:-0}" != 0 ]; then
    cat "$1" >&2
    die "$2: ${non2xx:-0} responses were not 2xx, ${errors:-0} socket errors"
  fi
}

results=$work/results # mode rps p99_ms rss_kb hwm_kb acquired claims
: >"$results"

# start_server <mode>: starts it pinned to the server CPU; sets server_pid,
# port (a free one, chosen by the kernel) and retention_ms.
start_server() {
  local mode=$1
  port=
  taskset -c "$server_cpu" "$bin" serve "$mode" 127.0.0.1:0 >"$work/$mode.out" 2>"$work/$mode.err" &
  server_pid=$!
  # The server prints its address once it listens.
  for _ in $(seq 100); do
    port=$(sed -n 's#^listening on http://127\.0\.0\.1:\([0-9]*\)/.*#\1#p' "$work/$mode.out")
    [ -n "$port" ] && break
    kill -0 "$server_pid" 2>/dev/null || { cat "$work/$mode.err" >&2; die "the $mode server exited"; }
    sleep 0.1
  done
  [ -n "$port" ] || die "the $mode server did not start listening within 10 s"
  for _ in $(seq 50); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    sleep 0.1
  done
  retention_ms=$(counter "$(stats "$port")" retention_ms)
  [ -n "$retention_ms" ] || die "the $mode server did not report its dedupe retention on GET /stats"
}

stop_server() {
  kill "$server_pid"
  wait "$server_pid" 2>/dev/null || true
  server_pid=
}

# measure <mode> <round>
measure() {
  local mode=$1 round=$2 before after out rps p99 rss hwm acquired claims fresh drained=
  start_server "$mode"

  run_wrk "$port" "$warmup" "$work/warmup.txt"
  check_wrk "$work/warmup.txt" "$mode warm-up"
  if is_queue "$mode"; then
    drain "$port" "$mode" "$mode warm-up" 1
  fi
  # Let the warm-up's dedupe keys expire: the retention plus a second.
  sleep $(((retention_ms + 999) / 1000 + 1))

  before=$(stats "$port")
  out=$work/$mode.$round.txt
  local perf_pid=
  if [ -n "${LOAD_PERF:-}" ]; then
    mkdir -p "$LOAD_PERF"
    perf record -q -g -F 1999 -p "$server_pid" -o "$LOAD_PERF/$mode.$round.data" -- sleep "$seconds" \
      >/dev/null 2>&1 &
    perf_pid=$!
  fi
  run_wrk "$port" "$seconds" "$out"
  [ -z "$perf_pid" ] || wait "$perf_pid" || true
  after=$(stats "$port")
  check_wrk "$out" "$mode"
  if is_queue "$mode"; then
    drain "$port" "$mode" "$mode round $round" 2
    # What the workers ran from the start of the measured run until the
    # queue was empty, per second of that time: the rate the queue keeps
    # up with, where req/s is the rate it accepts.
    drained=$(awk -v h1="$(counter "$drained_doc" handled)" -v h0="$(counter "$before" handled)" \
      -v t="$seconds" -v d="$drained_s" 'BEGIN { printf "  drained in %s s, ran %.0f/s", d, (h1 - h0) / (t + d) }')
  fi

  rps=$(awk '/^Requests\/sec:/ {print $2}' "$out")
  p99=$(to_ms "$(awk '$1 == "99%" {print $2}' "$out")")
  [[ $rps =~ ^[0-9.]+$ ]] && [[ $p99 =~ ^[0-9.]+$ ]] || { cat "$out" >&2; die "$mode: cannot read wrk's output"; }
  rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$server_pid/status")
  hwm=$(awk '/^VmHWM:/ {print $2}' "/proc/$server_pid/status")

  # Dedupe claims during the measured run: fresh (acquired) vs all.
  acquired=$(($(counter "$after" acquired) - $(counter "$before" acquired)))
  claims=$((acquired + $(counter "$after" duplicate) - $(counter "$before" duplicate) +
    $(counter "$after" in_progress) - $(counter "$before" in_progress) +
    $(counter "$after" store_error) - $(counter "$before" store_error)))
  if [ "$claims" -gt 0 ]; then
    fresh=$(awk -v a="$acquired" -v c="$claims" 'BEGIN {printf "%.2f%%", 100 * a / c}')
  else
    fresh="-"
  fi

  stop_server
  printf 'load: round %d %-*s %10.0f req/s  p99 %8.3f ms  VmRSS %6.1f MiB  VmHWM %6.1f MiB  fresh %s%s\n' \
    "$round" "$width" "$mode" "$rps" "$p99" "$(awk -v k="$rss" 'BEGIN {print k / 1024}')" \
    "$(awk -v k="$hwm" 'BEGIN {print k / 1024}')" "$fresh" "$drained" >&2
  echo "$mode $rps $p99 $rss $hwm $acquired $claims" >>"$results"
}

# --- the pool ----------------------------------------------------------------

# generate <n>: (re)writes the pool with n deliveries.
generate() {
  pool_size=$1
  echo "load: writing $pool_size signed deliveries" >&2
  "$bin" gen "$pool_size" "$pool"
}

generate "$pool_size"
if [ -z "${LOAD_POOL:-}" ] && [ -n "$calibrate_mode" ]; then
  # Size the pool for this machine on the first mode that deduplicates
  # (with the default modes, stack: the fastest one that deduplicates);
  # its rate over a short run (duplicates, which are cheaper, included)
  # bounds its fresh rate from above, as long as the machine is as busy as
  # now. The pool must last longer than the retention at that rate: three
  # times that, rounded up to 10 000, since a machine busy during the
  # calibration and quiet after it was seen to serve 2.9 times faster in
  # the rounds than in the calibration. The check at the end still fails
  # the run if any duplicate got through (a faster mode listed after it
  # may need LOAD_POOL).
  start_server "$calibrate_mode"
  run_wrk "$port" 2 "$work/calibrate.txt"
  check_wrk "$work/calibrate.txt" "$calibrate_mode calibration"
  stop_server
  rate=$(awk '/^Requests\/sec:/ {print $2}' "$work/calibrate.txt")
  [[ $rate =~ ^[0-9.]+$ ]] || { cat "$work/calibrate.txt" >&2; die "calibration: cannot read wrk's output"; }
  need=$(awk -v r="$rate" -v ms="$retention_ms" 'BEGIN { n = r * ms / 1000 * 3; printf "%d", (int(n / 10000) + 1) * 10000 }')
  echo "load: the $calibrate_mode mode serves about ${rate%.*} req/s here; the pool must outlast ${retention_ms} ms of that" >&2
  if [ "$need" -gt "$pool_size" ]; then
    generate "$need"
  fi
fi

echo "load: $rounds round(s) of ${seconds} s per mode, $connections connections, server on CPU $server_cpu, wrk on CPU $client_cpu" >&2
for round in $(seq "$rounds"); do
  for mode in "${modes[@]}"; do
    measure "$mode" "$round"
  done
done

# --- table -------------------------------------------------------------------

# The median of the numbers on stdin.
median() {
  sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
# column <mode> <field>: that field of every round of the mode.
column() {
  awk -v m="$1" -v f="$2" '$1 == m { print $f }' "$results"
}

declare -A rps p99 rss hwm fresh
duplicates=0
for mode in "${modes[@]}"; do
  rps[$mode]=$(column "$mode" 2 | median)
  p99[$mode]=$(column "$mode" 3 | median)
  rss[$mode]=$(column "$mode" 4 | median)
  hwm[$mode]=$(column "$mode" 5 | sort -g | tail -n 1)
  read -r acquired claims < <(awk -v m="$mode" '$1 == m { a += $6; c += $7 } END { print a + 0, c + 0 }' "$results")
  if [ "$claims" -gt 0 ]; then
    fresh[$mode]=$(awk -v a="$acquired" -v c="$claims" 'BEGIN {printf "%.2f%%", 100 * a / c}')
    [ "$acquired" = "$claims" ] || duplicates=1
  else
    fresh[$mode]="n/a"
  fi
done

echo
pacing=
[ "$pace_ms" = 0 ] || pacing=", each waiting $pace_ms ms between requests"
echo "HTTP load: $rounds round(s) x ${seconds} s per mode, $connections connections$pacing, 1 KiB bodies, pool of $pool_size deliveries"
echo "(medians over the rounds; RSS: VmRSS at the end of a round, median; HWM: VmHWM, max)"
echo
# Column widths: as with the default modes, wider for longer names.
mw=$((width > 6 ? width : 6))
xw=$((${#base} + 2 > 9 ? ${#base} + 2 : 9))
dw=$((${#base} + 4 > 10 ? ${#base} + 4 : 10))
printf "%-${mw}s %11s %${xw}s %9s %${xw}s %10s %10s %${dw}s %8s\n" \
  mode "req/s" "x $base" "p99 ms" "x $base" "RSS MiB" "HWM MiB" "RSS-$base" fresh
for mode in "${modes[@]}"; do
  awk -v m="$mode" -v r="${rps[$mode]}" -v rb="${rps[$base]}" -v p="${p99[$mode]}" -v pb="${p99[$base]}" \
    -v s="${rss[$mode]}" -v sb="${rss[$base]}" -v h="${hwm[$mode]}" -v f="${fresh[$mode]}" \
    -v mw="$mw" -v xw="$xw" -v dw="$dw" 'BEGIN {
      printf "%-" mw "s %11.0f %" xw ".3f %9.3f %" xw ".3f %10.1f %10.1f %+" dw ".1f %8s\n",
        m, r, r / rb, p, p / pb, s / 1024, h / 1024, (s - sb) / 1024, f }'
done
echo
echo "x $base: the mode's median over $base's (req/s: below 1 is slower; p99: above 1 is slower)."
echo "fresh: dedupe claims that were new deliveries (the handler ran), over all claims."

if [ "$duplicates" != 0 ]; then
  die "the dedupe modes saw duplicate deliveries: the pool came round within the $retention_ms ms dedupe retention; raise LOAD_POOL above what the fastest dedupe mode serves in that time (with a margin)"
fi

#!/usr/bin/env bash
# Capacity check: the demo receiver, with its default settings and the
# sender's networks declared, holds a real sender's peak.
#
# Builds the release receiver (examples/receiver.rs) and the simulator
# (benches/peers, `webhook-guard-peers simulate`), starts the receiver on a
# free loopback port with WEBHOOK_SENDER_NETWORKS set to the three sender
# addresses (127.0.0.2, 127.0.0.3, 127.0.0.4) and its admin listener off,
# and runs for CAPACITY_SECONDS (default 600):
#   - a provider: CAPACITY_RATE (default 2000) distinct, validly signed
#     deliveries a second over stripe, standard, slack, github and shopify,
#     from the three sender addresses; every answer must be 200 processed
#     and the achieved rate at least 95% of the target;
#   - an attacker (127.0.0.9) flooding unsigned requests: it must be cut
#     off at its quota (at most WEBHOOK_RATE_BURST + WEBHOOK_RATE_PER_SEC x
#     seconds answers other than 429; its 401s lock it out first);
#   - a flooder (127.0.0.11) sending validly signed deliveries from an
#     address that is not a declared sender, as fast as it can: at most the
#     default quota is processed, the rest is 429 rate_limited;
#   - a guesser (127.0.0.10) sending wrongly signed deliveries 5 a second:
#     its first 20 answers 401, then 429 too_many_failed_authentications
#     within the minute (WEBHOOK_FAILED_AUTH_PER_MIN);
#   - at the end, 200 processed deliveries still inside their window are
#     replayed from a sender address: every one must be 200 duplicate.
# Meanwhile the receiver's resident memory (VmRSS) is sampled every second;
# the peak minus the RSS before the load must stay within the dedupe budget
# (WEBHOOK_DEDUPE_MAX_BYTES, default 64 MiB) plus 32 MiB. Finally the
# receiver is stopped with SIGTERM and must exit 0.
#
#   bash scripts/capacity.sh                    # 10 minutes
#   CAPACITY_SECONDS=60 bash scripts/capacity.sh  # CI
#
# Knobs: CAPACITY_SECONDS (600), CAPACITY_RATE (2000), CAPACITY_CONNECTIONS
# (keep-alive connections per sender address, 16), CAPACITY_KEEP=1 (keep
# the receiver's log and the RSS samples; their directory is printed).
# Other WEBHOOK_* variables and secrets in the environment reach both the
# receiver and the simulator (which signs with the same secrets).
#
# Exit status: 0 when every check passed, 1 otherwise (the failing checks
# are printed), 2 on a set-up failure (build, port, receiver start).
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${CAPACITY_SECONDS:-600}
rate=${CAPACITY_RATE:-2000}
connections=${CAPACITY_CONNECTIONS:-16}
budget=${WEBHOOK_DEDUPE_MAX_BYTES:-67108864}
headroom=$((32 * 1024 * 1024))
senders=127.0.0.2,127.0.0.3,127.0.0.4
networks=127.0.0.2/32,127.0.0.3/32,127.0.0.4/32

for n in "$seconds" "$rate" "$connections" "$budget"; do
  case $n in '' | *[!0-9]*) echo "capacity: error: not a whole number: '$n'" >&2; exit 2 ;; esac
done

out=$(mktemp -d "${TMPDIR:-/tmp}/capacity.XXXXXX")
receiver_pid=
sampler_pid=
cleanup() {
  if [ -n "$sampler_pid" ]; then kill "$sampler_pid" 2>/dev/null || true; fi
  if [ -n "$receiver_pid" ] && kill -0 "$receiver_pid" 2>/dev/null; then
    kill -KILL "$receiver_pid" 2>/dev/null || true
  fi
  if [ "${CAPACITY_KEEP:-0}" = 1 ]; then
    echo "capacity: logs kept in $out"
  else
    rm -rf "$out"
  fi
}
trap cleanup EXIT
trap "exit 130" INT TERM

setup_fail() {
  echo "capacity: error: $*" >&2
  exit 2
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

echo "capacity: building the release receiver and the simulator"
cargo build --release --example receiver >"$out/build.log" 2>&1 ||
  { tail -n 20 "$out/build.log" >&2; setup_fail "cargo build --release --example receiver failed"; }
cargo build --release --manifest-path benches/peers/Cargo.toml >>"$out/build.log" 2>&1 ||
  { tail -n 20 "$out/build.log" >&2; setup_fail "building benches/peers failed"; }
receiver=target/release/examples/receiver
simulator=benches/peers/target/release/webhook-guard-peers
[ -x "$receiver" ] || setup_fail "$receiver is missing"
[ -x "$simulator" ] || setup_fail "$simulator is missing"

# A free loopback port: a random start in 40000-59999, the first one
# nothing answers on.
port=
start=$((40000 + RANDOM % 20000))
for ((p = start; p < start + 200; p++)); do
  if ! port_open "$p"; then port=$p; break; fi
done
[ -n "$port" ] || setup_fail "no free port in $start-$((start + 199))"
target=127.0.0.1:$port

env WEBHOOK_ADDR="$target" WEBHOOK_ADMIN_ADDR=off WEBHOOK_SENDER_NETWORKS="$networks" \
  "$receiver" >"$out/receiver.out" 2>"$out/receiver.log" &
receiver_pid=$!
for _ in $(seq 1 300); do
  if port_open "$port"; then break; fi
  kill -0 "$receiver_pid" 2>/dev/null ||
    { tail -n 5 "$out/receiver.log" >&2; setup_fail "the receiver exited at start"; }
  sleep 0.1
done
port_open "$port" || setup_fail "the receiver did not listen on $target within 30 s"

rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
ticks_per_sec=$(getconf CLK_TCK)

start_rss=$(rss_kib "$receiver_pid")
start_ticks=$(cpu_ticks "$receiver_pid")
(
  while kill -0 "$receiver_pid" 2>/dev/null; do
    echo "$(date +%s) $(rss_kib "$receiver_pid" 2>/dev/null || echo 0)"
    sleep 1
  done
) >"$out/rss" &
sampler_pid=$!

echo "capacity: receiver pid $receiver_pid on $target (start RSS $((start_rss / 1024)) MiB); simulating $rate/s for $seconds s"
sim_start=$(date +%s.%N)
set +e
timeout --signal=TERM --kill-after=10 $((seconds + 300)) "$simulator" simulate \
  --target "$target" --senders "$senders" --rate "$rate" --seconds "$seconds" \
  --connections "$connections"
sim_rc=$?
set -e
sim_end=$(date +%s.%N)
end_ticks=$(cpu_ticks "$receiver_pid" 2>/dev/null || echo "$start_ticks")
end_rss=$(rss_kib "$receiver_pid" 2>/dev/null || echo 0)
sleep 1
kill "$sampler_pid" 2>/dev/null || true
wait "$sampler_pid" 2>/dev/null || true
sampler_pid=

# Stop the receiver: SIGTERM, exit 0 within its shutdown grace (10 s) plus margin.
kill -TERM "$receiver_pid"
receiver_rc=
for _ in $(seq 1 300); do
  if ! kill -0 "$receiver_pid" 2>/dev/null; then break; fi
  sleep 0.1
done
if kill -0 "$receiver_pid" 2>/dev/null; then
  receiver_rc="still running 30 s after SIGTERM"
  kill -KILL "$receiver_pid" 2>/dev/null || true
  wait "$receiver_pid" 2>/dev/null || true
else
  set +e
  wait "$receiver_pid"
  receiver_rc=$?
  set -e
fi
receiver_pid=

peak_line=$(sort -k2,2n "$out/rss" | tail -n 1)
peak_rss=${peak_line#* }
[ -n "$peak_rss" ] && [ "$peak_rss" -gt 0 ] 2>/dev/null || peak_rss=$end_rss
first_sample=$(head -n 1 "$out/rss" | cut -d' ' -f1)
peak_at=$((${peak_line%% *} - ${first_sample:-0}))
growth_kib=$((peak_rss - start_rss))
limit_kib=$(((budget + headroom) / 1024))
wall=$(awk -v a="$sim_start" -v b="$sim_end" 'BEGIN { printf "%.1f", b - a }')
cpu=$(awk -v t=$((end_ticks - start_ticks)) -v hz="$ticks_per_sec" -v w="$wall" \
  'BEGIN { printf "%.1f s of CPU, %.0f%% of one core", t / hz, 100 * t / hz / w }')

echo
echo "receiver RSS: start $((start_rss / 1024)) MiB, peak $((peak_rss / 1024)) MiB (at +${peak_at} s), end $((end_rss / 1024)) MiB; growth $((growth_kib / 1024)) MiB, limit $((limit_kib / 1024)) MiB (dedupe budget $((budget / 1048576)) MiB + 32 MiB)"
echo "receiver RSS every 10 s (MiB): $(awk -v s="${first_sample:-0}" '($1 - s) % 10 == 0 { printf "%d ", $2 / 1024 }' "$out/rss")"
echo "receiver CPU during the simulation: $cpu over $wall s (this machine has $(nproc) CPUs)"
if grep -qi 'panic' "$out/receiver.log"; then
  echo "receiver log mentions a panic:"; grep -i -m 5 'panic' "$out/receiver.log"
fi

failed=0
check() { # check <ok 0|1> <what>
  if [ "$1" = 0 ]; then echo "ok    $2"; else echo "FAIL  $2"; failed=1; fi
}
check "$([ "$sim_rc" = 0 ] && echo 0 || echo 1)" "simulator checks (exit status $sim_rc)"
check "$([ "$growth_kib" -le "$limit_kib" ] && echo 0 || echo 1)" \
  "receiver RSS growth $((growth_kib / 1024)) MiB <= $((limit_kib / 1024)) MiB"
check "$([ "$receiver_rc" = 0 ] && echo 0 || echo 1)" "receiver exited 0 after SIGTERM ($receiver_rc)"
if grep -qi 'panic' "$out/receiver.log"; then check 1 "receiver log has no panic"; fi
if [ "$failed" != 0 ]; then
  echo "capacity: FAILED (receiver log tail:)"
  tail -n 5 "$out/receiver.log"
  exit 1
fi
echo "capacity: passed"

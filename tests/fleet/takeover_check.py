"""Takeover check of a fleet's shared acknowledgement queue: a replica
killed while it runs handlers leaves its deliveries to the others.

Run by scripts/fleet.sh (which builds the receiver with `--features redis`
and exports the secrets bbkit reads); standalone:

    RECEIVER_BIN=target/release/examples/receiver \
      PYTHONPATH=tests/blackbox:tests/durability:tests/fleet \
      <venv>/bin/python tests/fleet/takeover_check.py

Three receivers on one redis-server of our own, with WEBHOOK_ACK=queue,
WEBHOOK_QUEUE_LEASE_SECS=3 and WEBHOOK_QUEUE_WORKERS=2, each with its own
processed log. Several client threads send a few hundred signed deliveries
(Stripe, GitHub, Standard Webhooks; about 5% are Stripe `test.slow_handler`
events, which the demo handler takes 2 s over) round-robin over the
replicas. Part-way through, a few more slow events are sent until one
replica's processed log shows a slow run started and not done; that
replica gets SIGKILL, and the rest of the deliveries go to the two others.
Then the queue is left to drain (every delivery answered 202 has a `done`
line in some replica's log, and the logs stay quiet for a lease and a
bit). Checks, each delivery identified by its route and body SHA-256:

1. every delivery answered 202 has a `done` line in some replica's log;
2. a delivery whose every answer was 4xx/5xx never started (a request cut
   off by the kill got no answer: it may or may not have run);
3. extra completed runs: at most workers x kills (2) `done` lines beyond
   one per delivery, each re-run with a higher `attempt`;
4. the runs the kill interrupted were taken over by a surviving replica
   (a `done` with a higher attempt, within 20 s of the kill);
5. no `dead` line; every processed-log line is well formed; every answer
   is 202 accepted with the delivery's id and type (or no answer, only
   from the killed replica);
6. a repeat of every accepted delivery sent to each surviving replica is
   200 duplicate;
7. the killed replica, restarted, answers repeats duplicate and runs a
   fresh delivery; SIGTERM then stops every replica with exit 0.

One `ok` / `FAIL` line per check, then `N passed, N failed`; exit 1 on any
failure. About 25 s (SMOKE=1: about 20 s). `FLEET_SEED` replays a run's
random choices (the seed is printed); `DRAIN_TIMEOUT_SECS` (60) bounds the
drain.
"""

import os
import random
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import requests

from bbkit import expect, record
from dkit import SMOKE, run
from fkit import (SLOW, ProcessedLogs, Redis, answer_shape_problems, examples, history, make_delivery, send,
                  start_fleet)

WORKERS = 2
LEASE = 3
FRESH = 210 if SMOKE else 360
SLOW_SHARE = 0.05
THREADS = 6
SEND_SECONDS = 9.0 if SMOKE else 14.0
KILL_AT = 0.4                   # of SEND_SECONDS
DRAIN_TIMEOUT = float(os.environ.get("DRAIN_TIMEOUT_SECS", "60"))
QUIET_SECS = LEASE + 2.0
TAKEOVER_LIMIT = 20.0           # seconds from the kill to the last interrupted run's done
ROUTES = ["stripe", "github", "standard"]
SEED = int(os.environ.get("FLEET_SEED") or random.SystemRandom().randrange(1 << 30))
rng = random.Random(SEED)

lock = threading.Lock()
deliveries = []         # every delivery sent or to send, in creation order
next_index = 0
alive = []              # the replicas new requests go to
rr = 0
kill_info = {}          # at, victim, detail, interrupted


def pick_replica():
    global rr
    with lock:
        rx = alive[rr % len(alive)]
        rr += 1
        return rx


class Pacer:
    """Spreads FRESH requests over SEND_SECONDS."""

    def __init__(self):
        self.interval = SEND_SECONDS / FRESH
        self.next = time.monotonic()
        self.lock = threading.Lock()

    def wait(self):
        now = time.monotonic()
        with self.lock:
            self.next = max(self.next, now - 0.2) + self.interval
            at = self.next
        time.sleep(max(0.0, at - now))


def sender(pacer, fresh_count):
    global next_index
    sessions = {}
    while True:
        with lock:
            if next_index >= fresh_count:
                return
            d = deliveries[next_index]
            next_index += 1
        pacer.wait()
        rx = pick_replica()
        session = sessions.setdefault(rx.name, requests.Session())
        a = send(session, rx, d, lock=lock)
        if a.status is None:
            sessions.pop(rx.name).close()


def killer(fleet, victim, logs, t0):
    """Sends bursts of slow events until the victim runs one, then SIGKILL."""
    time.sleep(max(0.0, t0 + KILL_AT * SEND_SECONDS - time.monotonic()))
    detail = "no slow run seen on it"
    for _ in range(4):
        burst = [make_delivery("stripe", slow=True) for _ in range(6)]
        with lock:
            deliveries.extend(burst)
        with ThreadPoolExecutor(6) as pool:
            for d in burst:
                pool.submit(send, requests.Session(), pick_replica(), d, "fresh", (3, 20), lock)
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline:
            logs.read()
            if logs.running(victim.name, SLOW):
                detail = "a slow handler was running on it"
                break
            time.sleep(0.02)
        if logs.running(victim.name, SLOW):
            break
    with lock:
        alive.remove(victim)
    victim.signal(signal.SIGKILL)
    kill_info.update(at=time.monotonic(), detail=detail)
    time.sleep(0.2)
    logs.read()
    kill_info["interrupted"] = dict(logs.running(victim.name))
    print(f"     SIGKILL {victim.name} at {kill_info['at'] - t0:.1f} s ({detail}; "
          f"{len(kill_info['interrupted'])} runs interrupted)", flush=True)
    # Watch for the takeover: every interrupted run done again somewhere.
    interrupted = {k for k, _ in kill_info["interrupted"]}
    while time.monotonic() - kill_info["at"] < TAKEOVER_LIMIT + 5:
        logs.read()
        if interrupted <= logs.done_keys():
            kill_info["taken_over_at"] = time.monotonic()
            return
        time.sleep(0.05)


def drain(fleet, victim, logs):
    t_drain = time.monotonic()
    missing = []
    while time.monotonic() - t_drain < DRAIN_TIMEOUT:
        logs.read()
        done = logs.done_keys()
        with lock:
            missing = [d for d in deliveries if d.accepted() and d.key not in done]
        if not missing and time.monotonic() - logs.changed_at >= QUIET_SECS:
            break
        dead = [rx.name for rx in fleet if rx is not victim and rx.proc.poll() is not None]
        if dead:
            record("the surviving replicas keep running", [f"{', '.join(dead)} exited"])
            break
        time.sleep(0.25)
    print(f"     drained in {time.monotonic() - t_drain:.1f} s ({len(missing)} accepted deliveries without done)",
          flush=True)


def checks(fleet, victim, logs):
    logs.read()
    by_key = logs.by_key()
    known = {d.key for d in deliveries}
    sent = [d for d in deliveries if d.answers]

    def has(d, phase):
        return any(l["phase"] == phase for l in by_key.get(d.key, []))

    # Shapes.
    bad = []
    for d in sent:
        for a in d.answers:
            if a.status is None:
                if a.replica != victim.name:
                    bad.append(f"no answer from {a.replica} ({a.error})")
            elif a.status != 202:
                bad.append(f"{a.replica}: {a.status} {a.text[:120]!r}")
            else:
                bad += answer_shape_problems(d, a)
    record("5 every answer is 202 accepted with the delivery's id and type (or no answer from the killed "
           "replica)", [f"{len(bad)}: {examples(bad)}"] if bad else [])
    unknown = [f"{l['phase']} {l['_key'][0]} {l['_key'][1][:12]}@{l['_replica']}"
               for l in logs.lines if l["_key"] not in known]
    record("5 processed logs: every line is a contract JSON line about a delivery this run sent",
           ([f"{len(logs.bad)} malformed: {examples(logs.bad)}"] if logs.bad else [])
           + ([f"{len(unknown)} about unknown deliveries: {examples(unknown)}"] if unknown else []))

    acc = [d for d in sent if d.accepted()]
    lost = [d for d in acc if not has(d, "done")]
    record(f"1 every delivery answered 202 has a done line in some replica's log ({len(acc)} accepted)",
           [f"{len(lost)} without done: {examples(history(d, by_key) for d in lost)}"] if lost else [])

    refused = [d for d in sent if d.refused()]
    ran = [d for d in refused if has(d, "start")]
    record(f"2 no delivery whose every answer was 4xx/5xx started ({len(refused)} such deliveries)",
           [f"{len(ran)} started: {examples(history(d, by_key) for d in ran)}"] if ran else [])
    cut = [d for d in sent if not d.accepted() and any(a.status is None for a in d.answers)]
    n_ran = sum(1 for d in cut if has(d, "start"))
    record(f"2 requests cut off by the kill: {len(cut)} deliveries, {n_ran} ran (either is allowed)", [])

    extra, not_higher = 0, []
    for d in sent:
        done = [l for l in by_key.get(d.key, []) if l["phase"] == "done"]
        extra += max(0, len(done) - 1)
        if any(l["attempt"] <= done[0]["attempt"] for l in done[1:]):
            not_higher.append(history(d, by_key))
    bound = WORKERS * 1
    problems = []
    if extra > bound:
        problems.append(f"{extra} extra done lines > {WORKERS} workers x 1 kill")
    if not_higher:
        problems.append(f"{len(not_higher)} re-runs without a higher attempt: {examples(not_higher)}")
    record(f"3 runs completed twice: {extra} extra done lines (at most {bound}), each re-run with a higher attempt",
           problems)

    interrupted = kill_info.get("interrupted", {})
    problems = []
    for (key, attempt), _line in interrupted.items():
        later = [l for l in by_key.get(key, []) if l["phase"] == "done"]
        if not any(l["attempt"] > attempt and l["_replica"] != victim.name for l in later):
            d = next((d for d in deliveries if d.key == key), None)
            problems.append(history(d, by_key) if d else f"{key[0]} {key[1][:12]}")
    if not interrupted:
        problems.append(f"no run was interrupted on {victim.name} ({kill_info.get('detail')})")
    took = kill_info["taken_over_at"] - kill_info["at"] if "taken_over_at" in kill_info else None
    if interrupted and (took is None or took > TAKEOVER_LIMIT):
        problems.append(f"the last interrupted run was done {took and round(took, 1)} s after the kill "
                        f"(limit {TAKEOVER_LIMIT} s with a {LEASE} s lease)")
    record(f"4 the {len(interrupted)} runs interrupted on {victim.name} ({kill_info.get('detail')}) were taken "
           f"over and completed by a survivor with a higher attempt"
           f"{f', {took:.1f} s after the kill' if took is not None else ''}", problems)

    dead = [l for l in logs.lines if l["phase"] == "dead"]
    record("5 no dead line", [f"{len(dead)} dead lines"] if dead else [])
    return acc


def repeats(acc, replicas, label):
    """Every delivery in `acc` again to each of `replicas`: 200 duplicate."""
    wrong = []
    wrong_lock = threading.Lock()
    local = threading.local()

    def one(d, rx):
        sessions = local.__dict__.setdefault("sessions", {})
        a = send(sessions.setdefault(rx.name, requests.Session()), rx, d, "repeat", lock=lock)
        if not a.is_duplicate() or answer_shape_problems(d, a):
            with wrong_lock:
                wrong.append(f"{d.route} {d.key[1][:12]} -> {a.short()}")

    with ThreadPoolExecutor(4) as pool:
        for rx in replicas:
            for d in acc:
                pool.submit(one, d, rx)
    record(f"{label}: {len(acc)} accepted deliveries repeated to {', '.join(rx.name for rx in replicas)}: "
           "each 200 duplicate with its id and type", [f"{len(wrong)} not: {examples(wrong)}"] if wrong else [])


def takeover(workdir):
    redis = Redis(workdir)
    if not expect("redis-server starts", redis.start(), redis.log_tail()):
        return
    fleet, failed = start_fleet(workdir, 3, redis.url(), {
        "WEBHOOK_ACK": "queue", "WEBHOOK_QUEUE_LEASE_SECS": str(LEASE), "WEBHOOK_QUEUE_WORKERS": str(WORKERS),
        "WEBHOOK_QUEUE_MAX_ATTEMPTS": "100",
        "WEBHOOK_RATE_PER_SEC": "1000000", "WEBHOOK_RATE_BURST": "1000000"})
    try:
        if not record("three receivers start on one Redis in queue mode", failed):
            return
        victim = fleet[rng.randrange(3)]
        survivors = [rx for rx in fleet if rx is not victim]
        alive.extend(fleet)
        for i in range(FRESH):
            route = ROUTES[i % 3]
            deliveries.append(make_delivery(route, slow=route == "stripe" and rng.random() < 3 * SLOW_SHARE))
        rng.shuffle(deliveries)
        logs = ProcessedLogs(fleet)
        pacer = Pacer()
        t0 = time.monotonic()
        threads = [threading.Thread(target=sender, args=(pacer, FRESH), daemon=True) for _ in range(THREADS)]
        kt = threading.Thread(target=killer, args=(fleet, victim, ProcessedLogs(fleet), t0), daemon=True)
        for t in threads + [kt]:
            t.start()
        for t in threads:
            t.join()
        sent_in = time.monotonic() - t0
        kt.join()       # the killer also waits for the takeover (TAKEOVER_LIMIT + 5 s at most)
        counts = {}
        for d in deliveries:
            for a in d.answers:
                k = str(a.status) if a.status is not None else "no answer"
                counts[k] = counts.get(k, 0) + 1
        print(f"     sent {sum(counts.values())} requests in {sent_in:.1f} s "
              f"({', '.join(f'{k}: {v}' for k, v in sorted(counts.items()))}); draining", flush=True)
        drain(fleet, victim, logs)
        acc = checks(fleet, victim, logs)
        repeats(acc, survivors, "6")

        # 7. The killed replica comes back.
        if expect(f"7 {victim.name} restarts on the same Redis", victim.start(), victim.log_tail()):
            sample = rng.sample(acc, min(40, len(acc)))
            sample += [d for d in acc if any(k == d.key for k, _ in kill_info.get("interrupted", {}))
                       and d not in sample]
            repeats(sample, [victim], "7 after the restart")
            d = make_delivery("github")
            deliveries.append(d)
            a = send(requests.Session(), victim, d)
            ok = a.status == 202
            deadline = time.monotonic() + 15
            while ok and time.monotonic() < deadline and d.key not in logs.read().done_keys():
                time.sleep(0.1)
            expect(f"7 a fresh delivery to the restarted {victim.name} is 202 and runs",
                   ok and d.key in logs.done_keys(), a.short())
        for rx in fleet:
            if rx.proc and rx.proc.poll() is None:
                code = rx.signal(signal.SIGTERM)
                expect(f"7 {rx.name}: SIGTERM exits 0", code == 0, f"exit code {code}: {rx.log_tail()}")
    finally:
        for rx in fleet:
            rx.stop()
        redis.stop()


if __name__ == "__main__":
    print(f"takeover_check: seed {SEED}, {FRESH} deliveries, {THREADS} clients, 3 replicas, "
          f"lease {LEASE} s, {WORKERS} workers each{' (SMOKE)' if SMOKE else ''}", flush=True)
    run("wg-fleet-takeover-", takeover, kept_note=f" (seed {SEED})")

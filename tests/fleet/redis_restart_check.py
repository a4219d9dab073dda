"""Redis restart check of a fleet in queue mode: while Redis is down the
receivers refuse (503, or 429 where the rate limiter's fallback is `deny`)
and store nothing; when it is back they resume by themselves, and nothing
acknowledged before, during or after the outage is lost.

Run by scripts/fleet.sh (which builds the receiver with `--features redis`
and exports the secrets bbkit reads); standalone:

    RECEIVER_BIN=target/release/examples/receiver \
      PYTHONPATH=tests/blackbox:tests/durability:tests/fleet \
      <venv>/bin/python tests/fleet/redis_restart_check.py

One redis-server of our own on a fixed port and dir, `appendonly yes`,
`appendfsync always`, no RDB. Two receivers with WEBHOOK_ACK=queue,
WEBHOOK_QUEUE_LEASE_SECS=5 and a high rate limit: `local` has the default
WEBHOOK_RATE_REDIS_FALLBACK (local), `deny` has
WEBHOOK_RATE_REDIS_FALLBACK=deny. Client threads send signed deliveries
(Stripe, GitHub, Standard Webhooks; a few `test.slow_handler`) to both,
all along. After a few seconds Redis gets SIGKILL; about 3 s later it is
started again on the same port and dir; a few seconds more of traffic;
then every delivery that was refused is retried (as its provider would)
and the queue is left to drain. Checks:

1. every answer is 202 accepted (with the delivery's id and type), 503
   problem+json with Retry-After and reason `dedupe_store_unavailable` or
   `queue_unavailable`, or, from `deny` only, 429 `rate_limited` with
   Retry-After; every request gets an answer;
2. in the middle of the outage: `deny` answers a signed delivery 429
   `rate_limited`, `local` answers 503 (the store), not 429; the
   background traffic agrees (`local` some 503s and no 429, `deny` some
   429s while Redis was down);
3. both replicas answer 202 again within 10 s of Redis being back;
4. deliveries acknowledged before the SIGKILL are still known after it:
   repeats to both replicas are 200 duplicate;
5. every delivery refused during the outage, retried afterwards, is
   accepted (202), or 200 duplicate if it ran after all;
6. every delivery answered 202 (or duplicate) has a `done` line in a
   replica's processed log; no delivery whose every answer was 4xx/5xx
   started; no `dead` line; the re-runs (a run whose acknowledgement could
   not reach Redis) are counted;
7. SIGTERM stops both replicas with exit 0.

One `ok` / `FAIL` line per check, then `N passed, N failed`; exit 1 on any
failure. About 25 s (SMOKE=1: about 20 s).
"""

import random
import signal
import threading
import time

import requests

from bbkit import expect, record
from dkit import SMOKE, run
from fkit import (ProcessedLogs, Redis, answer_shape_problems, examples, history, low_free_port, make_delivery,
                  retry_after_ok, send, start_fleet)

LEASE = 5
WORKERS = 2
THREADS = 4
PER_THREAD_PER_SEC = 12
BEFORE = 2.5 if SMOKE else 4.0
OUTAGE = 3.0
AFTER = 3.0 if SMOKE else 5.0
RESUME_LIMIT = 10.0
DRAIN_TIMEOUT = 60.0
QUIET_SECS = LEASE + 2.0
STORE_REASONS = ("dedupe_store_unavailable", "queue_unavailable")
ROUTES = ["stripe", "github", "standard"]

lock = threading.Lock()
deliveries = []
stop = threading.Event()
marks = {}          # killed, restarted (monotonic times)


def sender(fleet, n):
    rng = random.Random()
    sessions = {}
    i = n
    while not stop.is_set():
        route = ROUTES[i % 3]
        d = make_delivery(route, slow=route == "stripe" and rng.random() < 0.06)
        rx = fleet[i % 2]
        i += 1
        with lock:
            deliveries.append(d)
        a = send(sessions.setdefault(rx.name, requests.Session()), rx, d, lock=lock, timeout=(3, 15))
        if a.status is None:
            sessions.pop(rx.name).close()
        time.sleep(max(0.0, 1.0 / PER_THREAD_PER_SEC - (a.answered_at - a.sent_at)))


def answer_problems(d, a, deny_name):
    if a.status is None:
        return [f"no answer from {a.replica} ({a.error})"]
    if a.status in (202, 200):
        return answer_shape_problems(d, a)
    problems = answer_shape_problems(d, a)
    if a.status == 503:
        if a.reason() not in STORE_REASONS:
            problems.append(f"{a.replica} 503 reason {a.reason()!r}")
        if not retry_after_ok(a):
            problems.append(f"{a.replica} 503 without a whole-seconds Retry-After ({a.retry_after!r})")
    elif a.status == 429 and a.replica == deny_name:
        if a.reason() != "rate_limited":
            problems.append(f"{a.replica} 429 reason {a.reason()!r}")
        if not retry_after_ok(a):
            problems.append(f"{a.replica} 429 without a whole-seconds Retry-After ({a.retry_after!r})")
    else:
        problems.append(f"{a.replica}: {a.status} {a.text[:120]!r}")
    return problems


def probe(rx):
    """One fresh signed delivery to `rx` (kept with the others)."""
    d = make_delivery("github")
    with lock:
        deliveries.append(d)
    return d, send(requests.Session(), rx, d, "probe", lock=lock, timeout=(3, 15))


def outage_probes(local, deny):
    for rx, want in ((deny, 429), (local, 503)):
        d, a = probe(rx)
        problems = answer_problems(d, a, deny.name)
        if a.status != want:
            problems.insert(0, f"status {a.status} != {want}")
        if rx is local and a.status == 503 and a.reason() not in STORE_REASONS:
            problems.append(f"reason {a.reason()!r}")
        label = ("2 during the outage, `deny` answers a signed delivery 429 rate_limited with Retry-After"
                 if rx is deny else
                 "2 during the outage, `local` answers a signed delivery 503 (dedupe_store_unavailable or "
                 "queue_unavailable) with Retry-After, not 429")
        record(label, problems, a.text)


def retry_refused(fleet, local):
    """Every delivery refused so far, retried to `local` until it is not 409 / 503 (10 s at most)."""
    with lock:
        refused = [d for d in deliveries if d.refused()]
    session = requests.Session()
    bad = []
    n_202 = n_dup = 0
    for d in refused:
        deadline = time.monotonic() + 10
        while True:
            a = send(session, local, d, "retry", lock=lock)
            if a.status not in (None, 409, 503) or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        if a.status == 202 and not answer_shape_problems(d, a):
            n_202 += 1
        elif a.is_duplicate() and not answer_shape_problems(d, a):
            n_dup += 1
        else:
            bad.append(a.short())
    record(f"5 {len(refused)} deliveries refused during the outage, retried afterwards: {n_202} 202, "
           f"{n_dup} 200 duplicate (only if it ran), none refused again",
           [f"{len(bad)}: {examples(bad)}"] if bad else [])


def restart(workdir):
    redis = Redis(workdir, port=low_free_port())
    if not expect("redis-server starts (appendonly yes, appendfsync always)", redis.start(), redis.log_tail()):
        return
    fleet, failed = start_fleet(workdir, 2, redis.url(), {
        "WEBHOOK_ACK": "queue", "WEBHOOK_QUEUE_LEASE_SECS": str(LEASE), "WEBHOOK_QUEUE_WORKERS": str(WORKERS),
        "WEBHOOK_QUEUE_MAX_ATTEMPTS": "100",
        "WEBHOOK_RATE_PER_SEC": "1000000", "WEBHOOK_RATE_BURST": "1000000"},
        each=[{}, {"WEBHOOK_RATE_REDIS_FALLBACK": "deny"}], names=["local", "deny"])
    local, deny = fleet
    try:
        if not record("two receivers start on one Redis in queue mode (fallback local and deny)", failed):
            return
        logs = ProcessedLogs(fleet)
        t0 = time.monotonic()
        threads = [threading.Thread(target=sender, args=(fleet, n), daemon=True) for n in range(THREADS)]
        for t in threads:
            t.start()
        time.sleep(BEFORE)
        with lock:
            before = [d for d in deliveries if any(a.status == 202 for a in d.answers)]
        marks["killed"] = time.monotonic()
        code = redis.kill()
        print(f"     SIGKILL redis-server at {marks['killed'] - t0:.1f} s (exit {code}); "
              f"{len(before)} deliveries accepted before", flush=True)
        time.sleep(OUTAGE / 2)
        outage_probes(local, deny)
        time.sleep(max(0.0, marks["killed"] + OUTAGE - time.monotonic()))
        marks["restarting"] = time.monotonic()
        up = redis.restart()
        marks["restarted"] = time.monotonic()
        print(f"     redis-server back on port {redis.port} at {marks['restarted'] - t0:.1f} s "
              f"(down {marks['restarted'] - marks['killed']:.1f} s)", flush=True)
        if not expect("redis-server restarts on the same port and dir", up, redis.log_tail()):
            return
        time.sleep(AFTER)
        stop.set()
        for t in threads:
            t.join()

        with lock:
            snapshot = list(deliveries)
        counts = {}
        for d in snapshot:
            for a in d.answers:
                k = f"{a.replica} {a.status if a.status is not None else 'no answer'}"
                counts[k] = counts.get(k, 0) + 1
        print(f"     answers: {', '.join(f'{k}: {v}' for k, v in sorted(counts.items()))}", flush=True)

        # 1. Shapes.
        bad = [p for d in snapshot for a in d.answers for p in answer_problems(d, a, deny.name)]
        record("1 every answer is 202 accepted, 503 dedupe_store_unavailable / queue_unavailable with Retry-After, "
               "or (deny only) 429 rate_limited with Retry-After", [f"{len(bad)}: {examples(bad)}"] if bad else [])

        # 2. The outage in the background traffic.
        window = [(d, a) for d in snapshot for a in d.answers
                  if a.sent_at >= marks["killed"] + 0.3 and a.answered_at is not None
                  and a.answered_at <= marks["restarting"] and a.kind == "fresh"]
        l503 = sum(1 for d, a in window if a.replica == "local" and a.status == 503)
        l429 = sum(1 for d in snapshot for a in d.answers if a.replica == "local" and a.status == 429)
        d429 = sum(1 for d, a in window if a.replica == "deny" and a.status == 429)
        expect(f"2 background traffic while Redis was down: `local` {l503} 503s and no 429 at all, "
               f"`deny` {d429} 429s", l503 > 0 and l429 == 0 and d429 > 0,
               f"local 503: {l503}, local 429 (whole run): {l429}, deny 429: {d429}")

        # 3. Resumption.
        for rx in fleet:
            first = min((a.answered_at for d in snapshot for a in d.answers
                         if a.replica == rx.name and a.status == 202 and a.sent_at >= marks["restarted"]),
                        default=None)
            took = first - marks["restarted"] if first else None
            expect(f"3 `{rx.name}` answers 202 again {took and round(took, 1)} s after Redis is back "
                   f"(within {RESUME_LIMIT:.0f} s)", took is not None and took <= RESUME_LIMIT,
                   f"no 202 after the restart; last answers: "
                   f"{examples(a.short() for d in snapshot[-6:] for a in d.answers)}")

        # 4. Dedupe keys survived the SIGKILL.
        sample = random.sample(before, min(15, len(before)))
        wrong = []
        for rx in fleet:
            s = requests.Session()
            for d in sample:
                a = send(s, rx, d, "repeat", lock=lock)
                if not a.is_duplicate() or answer_shape_problems(d, a):
                    wrong.append(a.short())
        record(f"4 {len(sample)} deliveries accepted before the SIGKILL, repeated to both replicas: 200 duplicate",
               ([f"{len(wrong)} not: {examples(wrong)}"] if wrong else [])
               + ([] if sample else ["no delivery was accepted before the SIGKILL"]))

        # 5. Retries of what was refused.
        retry_refused(fleet, local)

        # 6. Drain.
        t_drain = time.monotonic()
        missing = []
        while time.monotonic() - t_drain < DRAIN_TIMEOUT:
            logs.read()
            done = logs.done_keys()
            with lock:
                missing = [d for d in deliveries if d.accepted() and d.key not in done]
            if not missing and time.monotonic() - logs.changed_at >= QUIET_SECS:
                break
            time.sleep(0.25)
        print(f"     drained in {time.monotonic() - t_drain:.1f} s", flush=True)
        logs.read()
        by_key = logs.by_key()
        with lock:
            snapshot = list(deliveries)
        acc = [d for d in snapshot if d.accepted()]
        lost = [d for d in acc if d.key not in logs.done_keys()]
        record(f"6 every delivery answered 202 (or duplicate) has a done line ({len(acc)} accepted)",
               [f"{len(lost)} without done: {examples(history(d, by_key) for d in lost)}"] if lost else [])
        refused = [d for d in snapshot if d.refused()]
        ran = [d for d in refused if any(l["phase"] == "start" for l in by_key.get(d.key, []))]
        record(f"6 no delivery whose every answer was 4xx/5xx started ({len(refused)} such deliveries)",
               [f"{len(ran)} started: {examples(history(d, by_key) for d in ran)}"] if ran else [])
        extra = sum(max(0, sum(1 for l in by_key.get(d.key, []) if l["phase"] == "done") - 1) for d in snapshot)
        dead = [l for l in logs.lines if l["phase"] == "dead"]
        record(f"6 no dead line, processed logs well formed ({extra} runs completed twice: a run finished while "
               "Redis was down may run again)",
               ([f"{len(dead)} dead lines"] if dead else []) + ([examples(logs.bad)] if logs.bad else []))

        for rx in fleet:
            code = rx.signal(signal.SIGTERM)
            expect(f"7 `{rx.name}`: SIGTERM exits 0", code == 0, f"exit code {code}: {rx.log_tail()}")
    finally:
        stop.set()
        for rx in fleet:
            rx.stop()
        redis.stop()


if __name__ == "__main__":
    print(f"redis_restart_check: 2 replicas, {THREADS} clients, Redis down {OUTAGE:.0f} s"
          f"{' (SMOKE)' if SMOKE else ''}", flush=True)
    run("wg-fleet-redis-restart-", restart)

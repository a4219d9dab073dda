"""Crash check of the demo receiver's durable acknowledgement queue: nothing
held, nothing lost.

Run by scripts/durability.sh (which builds the receiver and exports the
secrets bbkit reads); standalone:

    RECEIVER_BIN=target/release/examples/receiver PYTHONPATH=tests/blackbox \
      <venv>/bin/python tests/durability/crash_check.py

The receiver runs with WEBHOOK_ACK=queue, WEBHOOK_QUEUE_WORKERS=4 and a
state dir. Several client threads send signed deliveries to every route
(about 15% of the requests repeat an earlier delivery, some while the
original is still queued, some from two clients at once; about 3% are
`test.slow_handler`, which the demo handler takes 2 s over), while the
receiver is killed with SIGKILL at least five times and restarted on the
same state dir: at random moments, right after a burst of 202s (during
commits), and while a slow handler is running. Every request's outcome is
recorded (status and body, or no answer). After the last restart the queue
is left to drain, then the processed log (`WEBHOOK_PROCESSED_LOG`) is
compared with the answers, each delivery identified by its route and the
SHA-256 of its body:

1. every delivery answered 202 (or 200 duplicate) has a `done` line;
2. a delivery whose every answer was 4xx/5xx never started;
3. a delivery that got no answer may or may not have run (counted);
4. runs completed more than once: at most workers x kills extra `done`
   lines in all, each with a higher `attempt` than the first;
5. no delivery is answered 202 twice; a repeat sent after a 202 gets 200
   duplicate (or 409 / 503 / no answer around a restart);
6. no `dead` line.

Plus: every answer has the contract's shape, the processed log is well
formed, the run covered what it claims (kills, an interrupted handler,
repeats answered duplicate), and a final SIGTERM exits 0.

One `ok` / `FAIL` line per check, then `N passed, N failed`; exit 1 on any
failure. About a minute (SMOKE=1: a little less). `CRASH_SEED` replays a
run's random choices (the seed is printed).
"""

import hashlib
import json
import os
import random
import signal
import threading
import time
import uuid

import requests

import bbkit
from bbkit import (github_body, github_headers, meta_headers, record, shopify_headers, slack_headers,
                   standard_delivery, stripe_event, stripe_header, x_headers)
from dkit import SMOKE, Receiver, run

WORKERS = 4
KILLS = 5 if SMOKE else 6
FRESH = 1760 if SMOKE else 2000          # fresh deliveries; with repeats, over 2000 requests either way
REPEAT_SHARE = 0.15                      # of all requests
SLOW_SHARE = 0.03                        # of fresh deliveries
TWIN_SHARE = 0.02                        # fresh deliveries sent by two clients at once
THREADS = 8
SEND_SECONDS = 25 if SMOKE else 35       # the requests are paced over about this long
DRAIN_TIMEOUT = float(os.environ.get("DRAIN_TIMEOUT_SECS", "150"))
QUIET_SECS = 5.0                         # the processed log must stay unchanged this long to count as drained
SLOW = "test.slow_handler"
ROUTES = ["stripe", "github", "standard", "slack", "shopify", "meta", "x"]
SEED = int(os.environ.get("CRASH_SEED") or random.SystemRandom().randrange(1 << 30))
rng = random.Random(SEED)
rng_lock = threading.Lock()


def chance(p):
    with rng_lock:
        return rng.random() < p


# --- Deliveries ---------------------------------------------------------------------------------
class Delivery:
    """One delivery: a body on a route, re-signed for every send as its
    provider would. `key` (route, body SHA-256) identifies it in the log."""

    def __init__(self, route, body, sign, id_of, type_):
        self.route = route
        self.body = body.encode()
        self.sign = sign            # () -> headers
        self.id_of = id_of          # headers -> the id the answer must carry
        self.type = type_
        self.key = (route, hashlib.sha256(self.body).hexdigest())
        self.answers = []           # list of Outcome, appended under `state_lock`


def make_delivery(route, slow):
    t = SLOW if slow else None
    n = uuid.uuid4().hex
    if route == "stripe":
        eid, body = stripe_event(t or "payment_intent.succeeded")
        return Delivery(route, body, lambda: {"Stripe-Signature": stripe_header(body),
                                              "Content-Type": "application/json"},
                        lambda h: eid, t or "payment_intent.succeeded")
    if route == "github":
        body = github_body()
        return Delivery(route, body, lambda: github_headers(body, event=t or "issues"),
                        lambda h: h["X-GitHub-Delivery"], t or "issues")
    if route == "standard":
        msg_id, body, headers = standard_delivery(event_type=t or "invoice.paid")
        return Delivery(route, body, lambda: headers, lambda h: msg_id, t or "invoice.paid")
    if route == "slack":
        ev = "Ev" + n[:12]
        body = json.dumps({"type": t or "event_callback", "event_id": ev,
                           "event": {"type": "app_mention", "n": n}})
        return Delivery(route, body, lambda: {**slack_headers(body), "Content-Type": "application/json"},
                        lambda h: ev, t or "event_callback")
    if route == "shopify":
        body = json.dumps({"id": rng.randrange(1 << 40), "note": n})
        return Delivery(route, body, lambda: shopify_headers(body, topic=t or "orders/create"),
                        lambda h: h["X-Shopify-Webhook-Id"], t or "orders/create")
    if route == "meta":
        body = json.dumps({"object": t or "page", "entry": [{"id": "1", "time": bbkit.now(), "n": n}]})
        return Delivery(route, body, lambda: meta_headers(body), lambda h: None, t or "page")
    # X: the event type is the first top-level key ending in `_events`, so never the slow type.
    body = json.dumps({"for_user_id": "2244994945", "tweet_create_events": [{"id_str": n}]})
    return Delivery("x", body, lambda: x_headers(body), lambda h: None, "tweet_create_events")


class Outcome:
    def __init__(self, kind, sent_at):
        self.kind = kind            # fresh / repeat / twin
        self.sent_at = sent_at
        self.answered_at = None
        self.status = None          # None: no answer
        self.body = None
        self.error = None
        self.expected_id = None

    def doc(self):
        try:
            return json.loads(self.body)
        except (TypeError, ValueError):
            return None

    def short(self):
        if self.status is None:
            return f"{self.kind}: no answer ({self.error})"
        return f"{self.kind}: {self.status} {self.body[:120]!r}"


# --- Shared run state ---------------------------------------------------------------------------
state_lock = threading.Lock()
fresh = []                 # the fresh deliveries, in sending order
fresh_next = 0
sent = []                  # deliveries sent at least once, in order
retry_pool = []            # deliveries whose last answer was none / 503 / 409: retried like a provider would
repeats_sent = 0
repeat_target = 0
count_202 = 0
up = threading.Event()     # set while the receiver is serving
burst_until = 0.0          # pacing is off until then (the killer asks for a burst)
senders_done = threading.Event()


class Pacer:
    """Spreads the requests over SEND_SECONDS, except during a burst."""

    def __init__(self, total):
        self.interval = SEND_SECONDS / total
        self.next = time.monotonic()
        self.lock = threading.Lock()

    def wait(self):
        now = time.monotonic()
        if now < burst_until:
            return
        with self.lock:
            self.next = max(self.next, now - 0.2) + self.interval
            at = self.next
        time.sleep(max(0.0, at - now))


def next_job():
    """(delivery, kind) for the next request, or None when all are sent."""
    global fresh_next, repeats_sent
    with state_lock:
        fresh_left = fresh_next < len(fresh)
        want_repeat = repeats_sent < repeat_target and len(sent) > 20 and (not fresh_left or chance(REPEAT_SHARE))
        if want_repeat:
            repeats_sent += 1
            with rng_lock:
                pick = rng.random()
                if retry_pool and pick < 0.35:
                    d = retry_pool.pop(rng.randrange(len(retry_pool)))
                elif pick < 0.7:        # a recent one: its original may still be queued
                    d = sent[-1 - rng.randrange(min(30, len(sent)))]
                else:
                    d = sent[rng.randrange(len(sent))]
            return d, "repeat"
        if fresh_left:
            d = fresh[fresh_next]
            fresh_next += 1
            sent.append(d)
            return d, "twin" if chance(TWIN_SHARE) else "fresh"
        return None


def send(session, base, d, kind):
    global count_202
    headers = d.sign()
    o = Outcome(kind, time.monotonic())
    o.expected_id = d.id_of(headers)
    try:
        r = session.post(f"{base}/webhooks/{d.route}", data=d.body, headers=headers, timeout=(3, 20))
        o.status, o.body = r.status_code, r.text
        o.content_type = r.headers.get("content-type", "")
    except requests.RequestException as e:
        o.error = type(e).__name__
    o.answered_at = time.monotonic()
    with state_lock:
        d.answers.append(o)
        if o.status == 202:
            count_202 += 1
        if o.status in (None, 409, 503) and chance(0.5):
            retry_pool.append(d)
    return o


def sender(base, pacer):
    session = requests.Session()
    while not restart_failures:
        job = next_job()
        if job is None:
            return
        d, kind = job
        pacer.wait()
        if not up.is_set():
            up.wait(0.3)    # a few requests still land while it is down or restarting
        if kind == "twin":
            twin = threading.Thread(target=lambda: send(requests.Session(), base, d, "twin"))
            twin.start()
            o = send(session, base, d, "twin")
            twin.join()
        else:
            o = send(session, base, d, kind)
        if o.status is None:
            session.close()
            session = requests.Session()
            time.sleep(0.05)


# --- The processed log --------------------------------------------------------------------------
class ProcessedLog:
    def __init__(self, path):
        self.path = path
        self.offset = 0
        self.lines = []       # parsed lines, in file order
        self.bad = []         # lines that are not what the contract says
        self.size = 0

    def read(self):
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read()
        except FileNotFoundError:
            return
        end = data.rfind(b"\n") + 1
        for raw in data[:end].splitlines():
            try:
                line = json.loads(raw)
                assert isinstance(line, dict) and line.get("phase") in ("start", "done", "dead")
                assert isinstance(line.get("route"), str) and isinstance(line.get("body_sha256"), str)
                assert isinstance(line.get("attempt"), int)
                line["_key"] = (line["route"].rsplit("/", 1)[-1], line["body_sha256"].lower())
                self.lines.append(line)
            except (ValueError, AssertionError):
                self.bad.append(raw[:200])
        self.offset += end
        self.size = self.offset

    def running_slow(self, since=0):
        """Keys of slow deliveries with a `start` (at index `since` or later)
        and no `done` yet for that attempt."""
        started = {}
        for line in self.lines[since:]:
            if line.get("type") != SLOW:
                continue
            k = (line["_key"], line["attempt"])
            if line["phase"] == "start":
                started[k] = True
            else:
                started.pop(k, None)
        return started


# --- The killer ---------------------------------------------------------------------------------
kills = []      # (mode, seconds into the run, detail)
restart_failures = []


def killer(rx, log, t0):
    global burst_until
    modes = ["burst", "handler", "random"] + [rng.choice(["burst", "handler", "random"]) for _ in range(KILLS - 3)]
    rng.shuffle(modes)
    span = (SEND_SECONDS - 4.0) / KILLS
    times = [2.0 + i * span + rng.uniform(0, max(0.1, span - 2.5)) for i in range(KILLS)]
    last_up = time.monotonic()
    since = 0   # the processed log's lines from the current process start here
    for mode, at in zip(modes, times):
        time.sleep(max(0.0, t0 + at - time.monotonic(), last_up + 1.5 - time.monotonic()))
        detail = ""
        if mode == "burst":
            with state_lock:
                c0 = count_202
            burst_until = time.monotonic() + 2.0
            deadline = time.monotonic() + 2.0
            while time.monotonic() < deadline:
                with state_lock:
                    if count_202 >= c0 + 20:
                        break
                time.sleep(0.002)
            with state_lock:
                detail = f"{count_202 - c0} 202s into a burst"
        elif mode == "handler":
            deadline = time.monotonic() + 8.0
            detail = "no slow handler seen running"
            while time.monotonic() < deadline:
                log.read()
                if log.running_slow(since):
                    detail = "a slow handler was running"
                    break
                time.sleep(0.02)
        rx.signal(signal.SIGKILL)
        up.clear()
        burst_until = 0.0
        kills.append((mode, round(time.monotonic() - t0, 1), detail))
        print(f"     kill {len(kills)} ({mode}, {detail or 'random moment'}) at {kills[-1][1]} s", flush=True)
        time.sleep(rng.uniform(0.0, 0.4))
        for _ in range(3):
            if rx.start():
                break
            rx.stop(final=False)
        else:
            restart_failures.append(f"restart after kill {len(kills)}: {rx.log_tail()}")
            return
        up.set()
        last_up = time.monotonic()
        log.read()
        since = len(log.lines)


# --- Checks -------------------------------------------------------------------------------------
def examples(items, n=5):
    items = list(items)
    more = f" (+{len(items) - n} more)" if len(items) > n else ""
    return "; ".join(items[:n]) + more


def history(d, by_key):
    lines = [f"{l['phase']}#{l['attempt']}" for l in by_key.get(d.key, [])]
    return f"{d.route} {d.key[1][:12]}: answers [{', '.join(o.short() for o in d.answers)}] log [{' '.join(lines)}]"


def run_checks(deliveries, log, rx_exit):
    by_key = {}
    for line in log.lines:
        by_key.setdefault(line["_key"], []).append(line)
    known = {d.key for d in deliveries}

    def has(d, phase):
        return any(l["phase"] == phase for l in by_key.get(d.key, []))

    def accepted(d):
        return any(o.status == 202 or (o.status == 200 and (o.doc() or {}).get("status") == "duplicate")
                   for o in d.answers)

    # 0. Shapes.
    bad = []
    for d in deliveries:
        for o in d.answers:
            doc = o.doc()
            if o.status == 202:
                if doc != {"status": "accepted", "id": o.expected_id, "type": d.type}:
                    bad.append(f"{d.route} 202 body {o.body[:150]!r}")
            elif o.status == 200:
                if doc != {"status": "duplicate", "id": o.expected_id, "type": d.type}:
                    bad.append(f"{d.route} 200 body {o.body[:150]!r}")
            elif o.status in (409, 503):
                if not (isinstance(doc, dict) and doc.get("status") == o.status and "reason" in doc):
                    bad.append(f"{d.route} {o.status} not a problem document: {o.body[:150]!r}")
            elif o.status is not None:
                bad.append(f"{d.route} unexpected {o.status}: {o.body[:150]!r}")
    record("0 every answer is 202 accepted, 200 duplicate, 409 or 503 problem+json, with the delivery's id and type",
           [f"{len(bad)} answers: {examples(bad)}"] if bad else [])
    unknown = [f"{l['phase']} {l['_key'][0]} {l['_key'][1][:12]}" for l in log.lines if l["_key"] not in known]
    record("0 processed log: every line is a contract JSON line about a delivery this run sent",
           ([f"{len(log.bad)} malformed: {examples(repr(b) for b in log.bad)}"] if log.bad else [])
           + ([f"{len(unknown)} lines about unknown deliveries: {examples(unknown)}"] if unknown else []))

    # 1. Nothing lost.
    acc = [d for d in deliveries if accepted(d)]
    lost = [d for d in acc if not has(d, "done")]
    record(f"1 every delivery answered 202 (or 200 duplicate) has a done line ({len(acc)} accepted)",
           [f"{len(lost)} without done: {examples(history(d, by_key) for d in lost)}"] if lost else [])

    # 2. Nothing held: refused deliveries never ran.
    refused = [d for d in deliveries if d.answers and all(o.status is not None and o.status >= 400 for o in d.answers)]
    ran = [d for d in refused if has(d, "start")]
    record(f"2 no delivery whose every answer was 4xx/5xx started ({len(refused)} such deliveries)",
           [f"{len(ran)} started: {examples(history(d, by_key) for d in ran)}"] if ran else [])

    # 3. No answer: either way (informational).
    unanswered = [d for d in deliveries if any(o.status is None for o in d.answers) and not accepted(d)]
    n_ran = sum(1 for d in unanswered if has(d, "start"))
    record(f"3 deliveries that only got no answer / refusals: {n_ran} ran, {len(unanswered) - n_ran} did not "
           "(either is allowed)", [])

    # 4. Extra completed runs.
    extra, not_higher = 0, []
    for d in deliveries:
        done = [l for l in by_key.get(d.key, []) if l["phase"] == "done"]
        extra += max(0, len(done) - 1)
        if any(l["attempt"] <= done[0]["attempt"] for l in done[1:]):
            not_higher.append(history(d, by_key))
    bound = WORKERS * len(kills)
    problems = []
    if extra > bound:
        problems.append(f"{extra} extra done lines > {WORKERS} workers x {len(kills)} kills = {bound}")
    if not_higher:
        problems.append(f"{len(not_higher)} re-runs without a higher attempt: {examples(not_higher)}")
    record(f"4 runs completed twice: {extra} extra done lines (at most {bound}), each with a higher attempt", problems)

    # 5. No second 202; repeats of accepted deliveries are duplicates.
    twice = [d for d in deliveries if sum(1 for o in d.answers if o.status == 202) > 1]
    wrong, n_after, n_dup = [], 0, 0
    for d in deliveries:
        first_202 = min((o.answered_at for o in d.answers if o.status == 202), default=None)
        if first_202 is None:
            continue
        for o in d.answers:
            if o.sent_at > first_202:
                n_after += 1
                if o.status == 200 and (o.doc() or {}).get("status") == "duplicate":
                    n_dup += 1
                elif o.status not in (None, 409, 503):
                    wrong.append(f"{d.route} {d.key[1][:12]} got {o.status} {(o.body or '')[:100]!r}")
    problems = []
    if twice:
        problems.append(f"{len(twice)} deliveries answered 202 twice: {examples(history(d, by_key) for d in twice)}")
    if wrong:
        problems.append(f"{len(wrong)} repeats after a 202 not answered duplicate: {examples(wrong)}")
    record(f"5 no second 202; {n_after} repeats sent after a 202: {n_dup} answered 200 duplicate, "
           "the rest 409 / 503 / no answer", problems)

    # 6. No dead letters.
    dead = [l for l in log.lines if l["phase"] == "dead"]
    record("6 no dead line", [f"{len(dead)} dead lines: {examples(json.dumps({k: v for k, v in l.items() if k != '_key'}) for l in dead)}"] if dead else [])

    # Coverage: the run did what it claims.
    problems = []
    if len(kills) < KILLS:
        problems.append(f"only {len(kills)} of {KILLS} kills")
    problems += restart_failures
    interrupted = 0
    for k, lines in by_key.items():
        done_attempts = {l["attempt"] for l in lines if l["phase"] == "done"}
        starts = [l["attempt"] for l in lines if l["phase"] == "start"]
        if any(a not in done_attempts for a in starts) and len(starts) > 1:
            interrupted += 1
    if interrupted == 0:
        problems.append("no handler run was interrupted by a kill and run again")
    n_fresh = sum(1 for d in deliveries if d.answers)
    if len(acc) < 0.6 * n_fresh:
        problems.append(f"only {len(acc)} of {n_fresh} deliveries accepted")
    if n_dup == 0:
        problems.append("no repeat was answered 200 duplicate")
    requests_sent = sum(len(d.answers) for d in deliveries)
    if requests_sent < 2000:
        problems.append(f"only {requests_sent} requests")
    record(f"coverage: {requests_sent} requests, {len(kills)} SIGKILLs "
           f"({', '.join(m for m, _, _ in kills)}), {interrupted} interrupted runs re-run, {len(acc)} accepted",
           problems)
    record("a SIGTERM after the drain exits 0", [] if rx_exit == 0 else [f"exit code {rx_exit}"])


def exercise(rx, log_path):
    """Sends while killing, drains, checks."""
    up.set()
    log = ProcessedLog(log_path)
    pacer = Pacer(FRESH + repeat_target)
    t0 = time.monotonic()
    threads = [threading.Thread(target=sender, args=(rx.base, pacer), daemon=True) for _ in range(THREADS)]
    kt = threading.Thread(target=killer, args=(rx, ProcessedLog(log_path), t0), daemon=True)
    for t in threads + [kt]:
        t.start()
    for t in threads:
        t.join()
    kt.join()
    counts = {}
    for d in fresh:
        for o in d.answers:
            k = str(o.status) if o.status is not None else "no answer"
            counts[k] = counts.get(k, 0) + 1
    print(f"     sent in {time.monotonic() - t0:.1f} s ({', '.join(f'{k}: {v}' for k, v in sorted(counts.items()))}); "
          "draining", flush=True)

    # Drain: every accepted delivery done, and the log quiet for QUIET_SECS.
    t_drain = time.monotonic()
    last_size, last_change = -1, time.monotonic()
    while time.monotonic() - t_drain < DRAIN_TIMEOUT:
        log.read()
        if log.size != last_size:
            last_size, last_change = log.size, time.monotonic()
        done = {l["_key"] for l in log.lines if l["phase"] in ("done", "dead")}
        missing = [d for d in fresh if d.key not in done and any(
            o.status == 202 or (o.status == 200 and (o.doc() or {}).get("status") == "duplicate")
            for o in d.answers)]
        if not missing and time.monotonic() - last_change >= QUIET_SECS:
            break
        if rx.proc.poll() is not None:
            restart_failures.append(f"the receiver exited during the drain ({rx.proc.returncode}): {rx.log_tail()}")
            break
        time.sleep(0.25)
    print(f"     drained in {time.monotonic() - t_drain:.1f} s", flush=True)
    code = rx.signal(signal.SIGTERM, timeout=30)
    log.read()
    run_checks(fresh, log, code)


def crash_run(workdir):
    global repeat_target
    state = os.path.join(workdir, "state")
    log_path = os.path.join(workdir, "processed.jsonl")
    rx = Receiver(workdir, {
        "WEBHOOK_ACK": "queue", "WEBHOOK_STATE_DIR": state, "WEBHOOK_PROCESSED_LOG": log_path,
        "WEBHOOK_QUEUE_WORKERS": str(WORKERS),
        # Interrupted runs may count as attempts; no delivery here should become a dead letter for it.
        "WEBHOOK_QUEUE_MAX_ATTEMPTS": "100",
        "WEBHOOK_RATE_PER_SEC": "1000000", "WEBHOOK_RATE_BURST": "1000000",
    })
    try:
        for i in range(FRESH):
            route = ROUTES[i % len(ROUTES)]
            fresh.append(make_delivery(route, route != "x" and chance(SLOW_SHARE)))
        rng.shuffle(fresh)
        repeat_target = int(FRESH * REPEAT_SHARE / (1 - REPEAT_SHARE)) + 1
        if not rx.start():
            record("receiver starts", [f"not healthy: {rx.log_tail()}"])
        else:
            exercise(rx, log_path)
    finally:
        rx.stop()


if __name__ == "__main__":
    print(f"crash_check: seed {SEED}, {FRESH} fresh deliveries, {KILLS} kills, {THREADS} clients"
          f"{' (SMOKE)' if SMOKE else ''}", flush=True)
    run("wg-crash-", crash_run, kept_note=f" (seed {SEED})")

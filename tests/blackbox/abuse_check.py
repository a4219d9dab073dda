"""Black-box checks of the receiver's abuse protections: per-client rate
limiting, trusted proxies, the failed-authentication quota, and the Redis
dedupe store shared by two receivers (down, then back).

Run by scripts/blackbox.sh, which starts the receivers (and redis-server)
with the configuration each mode expects:

    abuse_check.py ratelimit ADDR          # WEBHOOK_RATE_PER_SEC=1 WEBHOOK_RATE_BURST=3
    abuse_check.py proxies ADDR            # ... BURST=2, WEBHOOK_TRUSTED_PROXIES=127.0.0.1/32
    abuse_check.py failedauth ADDR         # defaults (20 failed authentications a minute;
                                           # the 20th locks the client out)
    abuse_check.py redis-shared A B LOG_A LOG_B
    abuse_check.py redis-down A B STATE LOG_A LOG_B      # after redis-server was killed
    abuse_check.py redis-recover A B STATE LOG_A LOG_B   # after it was restarted, same port

Every case prints one `ok` / `FAIL` line; the last line is the count. The
rate cases race a refill of one token a second; a case whose outcome can
only be spoiled by that refill is tried up to three times, each time with
fresh forwarding values so that a real bug cannot pass on a later try.
"""

import concurrent.futures
import json
import re
import sys
import threading
import time
import uuid

import bbkit
from bbkit import (check, duplicate, expect, github_body, github_headers, processed, raw_request, record,
                   response_problems, standard_delivery, summary)

XFF = "X-Forwarded-For"


def valid(base, source, extra=None):
    """A fresh, correctly signed GitHub delivery from `source`."""
    body = github_body()
    return bbkit.post(base, "github", body, {**github_headers(body), **(extra or {})}, source=source)


def exhaust(base, source, headers=lambda i: {}, limit=12):
    """Sends valid deliveries until one is refused. Returns (how many passed, the refusal or None)."""
    passed = 0
    for i in range(limit):
        r = valid(base, source, headers(i))
        if r.status_code != 200:
            return passed, r
        passed += 1
    return passed, None


def retried(name, attempt_fn, attempts=3):
    """Runs attempt_fn(attempt) -> (problems, text) until it passes, at most `attempts` times."""
    problems, text = [], ""
    for attempt in range(attempts):
        problems, text = attempt_fn(attempt)
        if not problems:
            if attempt:
                name += f" (on try {attempt + 1}: earlier tries raced a token refill)"
            break
    return record(name, problems, text)


def refusal_problems(r, status, reason, retry_after=True):
    if r is None:
        return ["never refused"]
    return response_problems(r, status, reason, retry_after=retry_after)


# --- Rate limiting, no trusted proxies: 1 a second, burst 3 -----------------------------------
def ratelimit(addr):
    base = "http://" + addr
    statuses = [valid(base, "127.0.0.1").status_code for _ in range(3)]
    expect("rate: the first 3 requests (the burst) are processed", statuses == [200] * 3, f"statuses {statuses}")
    r = valid(base, "127.0.0.1")
    check("rate: the 4th is 429 rate_limited, problem+json, integer Retry-After >= 1", r, 429, "rate_limited",
          retry_after=True)

    def no_body(attempt):
        exhaust(base, "127.0.0.1")
        head = (f"POST /webhooks/github HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n"
                f"X-GitHub-Event: issues\r\nX-GitHub-Delivery: {uuid.uuid4()}\r\n"
                f"X-Hub-Signature-256: sha256={'0' * 64}\r\nContent-Length: 100\r\n\r\n")
        resp, secs = raw_request(addr, head, source="127.0.0.1", timeout=3.0)
        if resp is None:
            return [f"no answer within {secs:.1f} s: the limiter waited for the body"], ""
        problems = response_problems(resp, 429, "rate_limited", retry_after=True)
        if secs > 1.0:
            problems.append(f"the 429 took {secs:.2f} s")
        return problems, resp.text

    retried("rate: Content-Length 100 and no body bytes sent: 429 comes back at once (body not read)", no_body)

    def rotating(attempt):
        exhaust(base, "127.0.0.1")
        forged = [{XFF: f"198.51.{100 + attempt}.{i}"} for i in range(1, 4)]
        forged += [{"Forwarded": f"for=198.51.{110 + attempt}.{i}"} for i in range(1, 3)]
        forged += [{"X-Real-IP": f"198.51.{120 + attempt}.1", XFF: f"198.51.{120 + attempt}.2"}]
        statuses = [valid(base, "127.0.0.1", h).status_code for h in forged]
        return ([] if statuses == [429] * len(forged) else [f"statuses {statuses}, all should be 429"]), ""

    retried("rate: rotating X-Forwarded-For / Forwarded values (no trusted proxy) do not escape the quota", rotating)

    def other_source(attempt):
        exhaust(base, "127.0.0.1")
        r2 = valid(base, "127.0.0.2")
        r1 = valid(base, "127.0.0.1")
        problems = response_problems(r2, 200)
        if r1.status_code != 429:
            problems.append(f"127.0.0.1 got {r1.status_code} right after, not 429")
        return problems, r2.text

    retried("rate: 127.0.0.2 has its own quota while 127.0.0.1 is limited", other_source)

    _, r = exhaust(base, "127.0.0.1")
    wait = int(r.headers.get("retry-after", "1")) if r is not None and r.headers.get("retry-after", "").isdigit() else 1
    time.sleep(wait)
    r = valid(base, "127.0.0.1")
    check(f"rate: after waiting Retry-After ({wait} s) the client is served again", r, 200)


# --- Trusted proxy 127.0.0.1/32: 1 a second, burst 2 ------------------------------------------
def proxies(addr):
    base = "http://" + addr
    n, r = exhaust(base, "127.0.0.1", lambda i: {XFF: "203.0.113.7"})
    expect("proxy: client 203.0.113.7 (X-Forwarded-For from trusted 127.0.0.1) gets its burst of 2",
           n == 2, f"{n} passed before the refusal")
    record("proxy: ... then 429 rate_limited", refusal_problems(r, 429, "rate_limited"), r.text if r else "")

    def spoofed(attempt):
        exhaust(base, "127.0.0.1", lambda i: {XFF: "203.0.113.7"})
        r = valid(base, "127.0.0.1", {XFF: f"198.51.100.{attempt + 1}, 203.0.113.7"})
        return response_problems(r, 429, "rate_limited"), r.text

    retried("proxy: 'X-Forwarded-For: 198.51.100.x, 203.0.113.7' is still 429 (spoofed leftmost ignored)", spoofed)

    def trusted_hop(attempt):
        exhaust(base, "127.0.0.1", lambda i: {XFF: "203.0.113.7"})
        r = valid(base, "127.0.0.1", {XFF: f"198.51.100.{50 + attempt}, 203.0.113.7, 127.0.0.1"})
        return response_problems(r, 429, "rate_limited"), r.text

    retried("proxy: '…, 203.0.113.7, 127.0.0.1' is 203.0.113.7 (rightmost untrusted hop), still 429", trusted_hop)

    r = valid(base, "127.0.0.1", {XFF: "203.0.113.8"})
    check("proxy: X-Forwarded-For: 203.0.113.8 passes (its own bucket)", r, 200)
    r = valid(base, "127.0.0.1", {"Forwarded": "for=203.0.113.9"})
    check("proxy: Forwarded: for=203.0.113.9 (no X-Forwarded-For) passes", r, 200)
    n, r = exhaust(base, "127.0.0.1", lambda i: {"Forwarded": "for=203.0.113.9"})
    expect("proxy: Forwarded 203.0.113.9 has its own bucket of 2 (1 more passes, then refused)",
           n == 1 and r is not None and r.status_code == 429, f"{n} more passed, then {r.status_code if r else None}")

    def same_client(attempt):
        exhaust(base, "127.0.0.1", lambda i: {"Forwarded": "for=203.0.113.9"})
        r = valid(base, "127.0.0.1", {XFF: "203.0.113.9"})
        return response_problems(r, 429, "rate_limited"), r.text

    retried("proxy: X-Forwarded-For 203.0.113.9 is the same client as Forwarded for=203.0.113.9 (429)", same_client)
    r = valid(base, "127.0.0.1", {XFF: "203.0.113.8"})
    check("proxy: 203.0.113.8 still has its second token (buckets are separate)", r, 200)
    r = valid(base, "127.0.0.1")
    check("proxy: 127.0.0.1 itself, no forwarding header, is its own client and passes", r, 200)

    n, r = exhaust(base, "127.0.0.2", lambda i: {XFF: f"192.0.2.{i + 1}"})
    expect("proxy: from untrusted 127.0.0.2, rotating X-Forwarded-For gets only 127.0.0.2's burst of 2",
           n == 2, f"{n} passed before the refusal")

    def untrusted(attempt):
        exhaust(base, "127.0.0.2", lambda i: {XFF: f"192.0.2.{20 * attempt + i + 20}"})
        problems = []
        for h in ({XFF: f"192.0.2.{200 + attempt}"}, {XFF: "203.0.113.8"}, {"Forwarded": f"for=192.0.2.{210 + attempt}"}):
            r = valid(base, "127.0.0.2", h)
            if r.status_code != 429:
                problems.append(f"{h} from 127.0.0.2 got {r.status_code}, not 429")
        return problems, ""

    retried("proxy: from untrusted 127.0.0.2 X-Forwarded-For / Forwarded are ignored (still 429)", untrusted)


# --- Failed-authentication quota: 20 a minute per client IP -----------------------------------
def failedauth(addr):
    """The quota is 20 failed authentications a minute per client IP; the 20th failure locks the
    client out at once, so its 21st request is refused whatever it carries."""
    base = "http://" + addr

    def forged(source):
        body = github_body()
        h = github_headers(body)
        h["X-Hub-Signature-256"] = bbkit.gh(body, "not-the-secret")
        return bbkit.post(base, "github", body, h, source=source)

    statuses = [forged("127.0.0.3").status_code for _ in range(20)]
    expect("failed-auth: 20 bad signatures from 127.0.0.3 are each 401 (the quota is 20)",
           statuses == [401] * 20, f"statuses {statuses}")
    refusal = forged("127.0.0.3")
    record("failed-auth: the 21st (bad) request is 429 too_many_failed_authentications with Retry-After",
           refusal_problems(refusal, 429, "too_many_failed_authentications"), refusal.text)

    locked = valid(base, "127.0.0.3")
    check("failed-auth: a VALID delivery from 127.0.0.3 is 429 too", locked, 429, "too_many_failed_authentications",
          retry_after=True)
    statuses = [forged("127.0.0.8").status_code for _ in range(20)]
    expect("failed-auth: 20 bad signatures from 127.0.0.8 are each 401", statuses == [401] * 20,
           f"statuses {statuses}")
    r = valid(base, "127.0.0.8")
    check("failed-auth: the 21st request from 127.0.0.8, a VALID delivery, is 429 (locked out by the 20th failure)",
          r, 429, "too_many_failed_authentications", retry_after=True)

    r = valid(base, "127.0.0.4")
    check("failed-auth: a valid delivery from 127.0.0.4 is processed", r, 200)
    ra = locked.headers.get("retry-after", "")
    wait = int(ra) if ra.isdigit() else 3
    time.sleep(wait)
    r = valid(base, "127.0.0.3")
    check(f"failed-auth: after Retry-After ({wait} s) a valid delivery from 127.0.0.3 is processed", r, 200)


# --- Redis dedupe store shared by two receivers -----------------------------------------------
def processed_lines(logs, id_):
    """How many times the demo handler logged `processed` for `id_`, over the receivers' logs."""
    pattern = re.compile(r"\bINFO processed\b.*\bid=\"" + re.escape(id_) + "\"")
    count = 0
    for path in logs:
        with open(path, encoding="utf-8", errors="replace") as f:
            count += sum(1 for line in f if pattern.search(line))
    return count


def at_once(requests_):
    """Sends every (base, route, body, headers) at the same moment; returns [(response, seconds)]."""
    barrier = threading.Barrier(len(requests_))

    def one(req):
        base, route, body, headers = req
        barrier.wait()
        start = time.monotonic()
        r = bbkit.post(base, route, body, headers, timeout=20)
        return r, time.monotonic() - start

    with concurrent.futures.ThreadPoolExecutor(len(requests_)) as pool:
        return list(pool.map(one, requests_))


def redis_shared(a, b, logs):
    A, B = "http://" + a, "http://" + b
    body = github_body()
    h = github_headers(body)
    did = h["X-GitHub-Delivery"]
    check("redis: github delivery processed at receiver A", bbkit.post(A, "github", body, h), 200,
          body=processed(did, "issues"))
    check("redis: ... the same delivery at receiver B is a duplicate", bbkit.post(B, "github", body, h), 200,
          body=duplicate(did, "issues"))
    msg_id, body, h = standard_delivery()
    check("redis: standard delivery processed at receiver B", bbkit.post(B, "standard", body, h), 200,
          body=processed(msg_id, "invoice.paid"))
    check("redis: ... the same delivery at receiver A is a duplicate", bbkit.post(A, "standard", body, h), 200,
          body=duplicate(msg_id, "invoice.paid"))

    msg_id, body, h = standard_delivery()
    bases = [A if i % 2 else B for i in range(50)]
    results = at_once([(base, "standard", body, h) for base in bases])
    kinds = {"processed": 0, "duplicate": 0, "409": 0, "other": []}
    conflicts = []
    for base, (r, _) in zip(bases, results):
        doc = r.json() if r.headers.get("content-type", "").startswith("application/json") else None
        if r.status_code == 200 and doc == processed(msg_id, "invoice.paid"):
            kinds["processed"] += 1
        elif r.status_code == 200 and doc == duplicate(msg_id, "invoice.paid"):
            kinds["duplicate"] += 1
        elif r.status_code == 409 and not response_problems(r, 409, "in_progress", retry_after=True):
            kinds["409"] += 1
            conflicts.append(base)
        else:
            kinds["other"].append(f"{r.status_code} {r.text[:120]}")
    summary_ = f"{kinds['processed']} processed, {kinds['duplicate']} duplicate, {kinds['409']} × 409 in_progress"
    expect(f"redis: 50 concurrent identical deliveries over A and B: exactly one processed ({summary_})",
           kinds["processed"] == 1, summary_)
    expect("redis: ... every other answer is duplicate or 409 in_progress with Retry-After",
           not kinds["other"], f"other answers: {kinds['other'][:3]}")
    if conflicts:
        time.sleep(3)
        retries = [bbkit.post(base, "standard", body, h) for base in conflicts]
        bad = [f"{r.status_code} {r.text[:100]}" for r in retries
               if r.status_code != 200 or r.json() != duplicate(msg_id, "invoice.paid")]
        expect(f"redis: ... the {len(conflicts)} × 409 retried after 3 s are duplicates", not bad, f"{bad[:3]}")
    n = processed_lines(logs, msg_id)
    expect("redis: ... the handler ran once over both receivers (their logs)", n == 1, f"{n} `processed` log lines")

    msg_id, body, h = standard_delivery("test.slow_handler")
    results = sorted(at_once([(A, "standard", body, h), (B, "standard", body, h)]), key=lambda x: x[0].status_code)
    (first, _), (second, t_second) = results
    check("redis: slow delivery at A and B at once: one processed", first, 200,
          body=processed(msg_id, "test.slow_handler"))
    check("redis: ... the other receiver answers 409 in_progress with Retry-After", second, 409, "in_progress",
          retry_after=True)
    expect("redis: ... the 409 comes back while the other receiver is still handling it", t_second < 1.5,
           f"409 took {t_second:.2f} s")
    check("redis: ... then a duplicate at either receiver", bbkit.post(B, "standard", body, h), 200,
          body=duplicate(msg_id, "test.slow_handler"))


def redis_down(a, b, state, logs):
    A, B = "http://" + a, "http://" + b
    msg_id, body, h = standard_delivery()
    with open(state, "w", encoding="utf-8") as f:
        json.dump({"id": msg_id, "body": body, "headers": h}, f)
    for name, base in (("A", A), ("B", B)):
        start = time.monotonic()
        r = bbkit.post(base, "standard", body, h, timeout=15)
        secs = time.monotonic() - start
        check(f"redis down: fresh delivery at receiver {name} is 503 dedupe_store_unavailable with Retry-After "
              f"({secs:.2f} s)", r, 503, "dedupe_store_unavailable", retry_after=True)
    body = github_body()
    r = bbkit.post(A, "github", body, github_headers(body), timeout=15)
    check("redis down: a github delivery is 503 too", r, 503, "dedupe_store_unavailable", retry_after=True)
    n = processed_lines(logs, msg_id)
    expect("redis down: ... and the handler did not run (no `processed` log line)", n == 0, f"{n} lines")


def redis_recover(a, b, state, logs):
    """Redis was restarted on the same port (scripts/blackbox.sh waited until it accepts connections)."""
    A, B = "http://" + a, "http://" + b
    restarted = time.monotonic()
    with open(state, encoding="utf-8") as f:
        saved = json.load(f)
    msg_id, body, h = saved["id"], saved["body"], saved["headers"]

    # Redis has been reachable for 2 s: a receiver must not answer 503 any more.
    time.sleep(2)
    fresh_id, fresh, fh = standard_delivery()
    r = bbkit.post(B, "standard", fresh, fh, timeout=15)
    check("redis back: Redis up again for 2 s, the first delivery at receiver B is processed (not 503)", r, 200,
          body=processed(fresh_id, "invoice.paid"))

    statuses = []
    while True:
        r = bbkit.post(A, "standard", body, h, timeout=15)
        statuses.append(r.status_code)
        if r.status_code != 503 or time.monotonic() - restarted > 20:
            break
        time.sleep(0.5)
    secs = time.monotonic() - restarted
    expect(f"redis back: the same receiver A serves again without a restart, {secs:.1f} s after Redis came back "
           f"(<= 10 s; answers {statuses})",
           r.status_code != 503 and secs <= 10, f"still {r.status_code} after {secs:.1f} s ({statuses})")
    check("redis back: the delivery refused with 503 while Redis was down is now processed", r, 200,
          body=processed(msg_id, "invoice.paid"))
    check("redis back: ... then a duplicate at A", bbkit.post(A, "standard", body, h), 200,
          body=duplicate(msg_id, "invoice.paid"))
    r = bbkit.post(B, "standard", body, h)
    if r.status_code == 503:  # B's own recovery is checked above; here only the shared key matters.
        time.sleep(0.5)
        r = bbkit.post(B, "standard", body, h)
    check("redis back: ... and a duplicate at B", r, 200, body=duplicate(msg_id, "invoice.paid"))
    n = processed_lines(logs, msg_id)
    expect("redis back: ... the handler ran exactly once for it (logs)", n == 1, f"{n} `processed` log lines")
    fresh_id, fresh, fh = standard_delivery()
    check("redis back: a fresh delivery at B is processed", bbkit.post(B, "standard", fresh, fh), 200,
          body=processed(fresh_id, "invoice.paid"))


def main(argv):
    mode, args = argv[1], argv[2:]
    if mode == "ratelimit":
        ratelimit(*args)
    elif mode == "proxies":
        proxies(*args)
    elif mode == "failedauth":
        failedauth(*args)
    elif mode == "redis-shared":
        redis_shared(args[0], args[1], args[2:])
    elif mode == "redis-down":
        redis_down(args[0], args[1], args[2], args[3:])
    elif mode == "redis-recover":
        redis_recover(args[0], args[1], args[2], args[3:])
    else:
        raise SystemExit(f"unknown mode {mode!r}")
    return summary()


if __name__ == "__main__":
    sys.exit(main(sys.argv))

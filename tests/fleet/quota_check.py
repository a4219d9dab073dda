"""Quota check of a fleet: three demo receivers on one Redis share each
client's rate limit and its failed-authentication lockout.

Run by scripts/fleet.sh (which builds the receiver with `--features redis`
and exports the secrets bbkit reads); standalone:

    RECEIVER_BIN=target/release/examples/receiver \
      PYTHONPATH=tests/blackbox:tests/durability:tests/fleet \
      <venv>/bin/python tests/fleet/quota_check.py

Three receivers (sync acknowledgement) on one redis-server of our own, with
WEBHOOK_RATE_PER_SEC=1, WEBHOOK_RATE_BURST=30 and
WEBHOOK_FAILED_AUTH_PER_MIN=6:

1. Rate limit. One client (source address 127.0.2.1) sends signed GitHub
   deliveries, each with a fresh body, round-robin over the three replicas
   as fast as it can. Every answer before the first 429 is 200 processed;
   the first 429 (reason `rate_limited`, with Retry-After) comes at request
   28..34 (31 with a burst of 30: the quota is the fleet's, not 91 = 3 x 30
   + 1 as with one quota per replica); every replica then refuses it. A
   client from another address is still served by every replica.
2. Failed-authentication lockout. A guessing client (127.0.2.2) sends six
   badly signed deliveries round-robin over two of the replicas, each
   answered 401. Its next request, a correctly signed delivery, goes to
   the third replica, which it never used: 429
   `too_many_failed_authentications` with Retry-After; the first replica
   refuses it too. Another address (127.0.2.4) is served by the third
   replica. The lockout ends by itself (WEBHOOK_FAILED_AUTH_PER_MIN=6: a
   failure is forgotten after about 10 s): a signed delivery from the
   guessing client is served again within 25 s.

One `ok` / `FAIL` line per check, then `N passed, N failed`; exit 1 on any
failure. About 15 s (the same with SMOKE=1).
"""

import signal
import time

from bbkit import check, expect, github_body, github_headers, processed, record
from dkit import run
from fkit import Redis, examples, post, start_fleet

RATE, BURST, FAILED_AUTH = 1, 30, 6
CLIENT, GUESSER, BYSTANDER, BYSTANDER2 = "127.0.2.1", "127.0.2.2", "127.0.2.3", "127.0.2.4"


def doc(r):
    try:
        return r.json()
    except ValueError:
        return None


def signed(rx, source, bad=False):
    """A fresh GitHub delivery to `rx` from `source` (with a wrong secret if
    `bad`): (response, delivery id)."""
    body = github_body()
    headers = github_headers(body, secret="not-the-secret" if bad else None)
    return post(rx, "github", body, headers, source=source), headers["X-GitHub-Delivery"]


def rate_limit(fleet):
    answers = []        # (request number, replica, response)
    first_429 = None
    n = 0
    t0 = time.monotonic()
    while n < 3 * BURST + 10:
        n += 1
        rx = fleet[(n - 1) % 3]
        r, gid = signed(rx, CLIENT)
        answers.append((n, rx, r, gid))
        if r.status_code == 429 and first_429 is None:
            first_429 = n
        if first_429 is not None and n >= first_429 + 9:
            break
    took = time.monotonic() - t0
    print(f"     {n} requests in {took:.2f} s; first 429 at request {first_429}", flush=True)

    before = [(i, rx, r, gid) for i, rx, r, gid in answers if first_429 is None or i < first_429]
    bad = [f"#{i} {rx.name}: {r.status_code} {r.text[:80]!r}" for i, rx, r, gid in before
           if r.status_code != 200 or doc(r) != processed(gid, "issues")]
    record("every request before the first 429 is 200 processed", [examples(bad)] if bad else [])
    if not expect(f"the first 429 comes at request 28..34 (burst {BURST}, one quota for the fleet; "
                  f"one quota per replica would give ~{3 * BURST + 1})",
                  first_429 is not None and 28 <= first_429 <= 34,
                  f"first 429 at request {first_429} of {n}"):
        return
    _, rx, r, _ = answers[first_429 - 1]
    check(f"the first 429 ({rx.name}) is problem+json, reason rate_limited, with Retry-After",
          r, 429, reason="rate_limited", retry_after=True)
    after = answers[first_429:]
    refused_by = {rx.name for _, rx, r, _ in after if r.status_code == 429}
    others = [f"#{i} {rx.name}: {r.status_code}" for i, rx, r, _ in after if r.status_code != 429]
    expect("after it, every replica answers that client 429 (at most one request let through per second)",
           refused_by == {rx.name for rx in fleet} and len(others) <= max(1, int(took)),
           f"429 from {sorted(refused_by)}; not 429: {examples(others)}")
    for rx in fleet:
        r, gid = signed(rx, BYSTANDER)
        check(f"another client ({BYSTANDER}) is served by {rx.name}: 200 processed", r, 200,
              body=processed(gid, "issues"))


def lockout(fleet):
    used = fleet[:2]
    for i in range(FAILED_AUTH):
        rx = used[i % 2]
        r, _ = signed(rx, GUESSER, bad=True)
        check(f"guess {i + 1} of {FAILED_AUTH} (wrong secret) on {rx.name}: 401", r, 401)
    t_locked = time.monotonic()
    third = fleet[2]
    r, _ = signed(third, GUESSER)
    locked = check(f"after {FAILED_AUTH} 401s on {used[0].name} and {used[1].name}, a correctly signed delivery "
                   f"on {third.name} (never used by that client): 429 too_many_failed_authentications "
                   "with Retry-After", r, 429, reason="too_many_failed_authentications", retry_after=True)
    r, _ = signed(fleet[0], GUESSER)
    check(f"... and on {fleet[0].name} too", r, 429, reason="too_many_failed_authentications", retry_after=True)
    r, gid = signed(third, BYSTANDER2)
    check(f"another client ({BYSTANDER2}) is served by {third.name} meanwhile: 200 processed", r, 200,
          body=processed(gid, "issues"))
    if not locked:
        return
    # The lockout ends by itself: about 60 / WEBHOOK_FAILED_AUTH_PER_MIN s per failure.
    served_after = None
    last = None
    while time.monotonic() - t_locked < 25:
        time.sleep(1.0)
        r, gid = signed(third, GUESSER)
        last = f"{r.status_code} {r.text[:100]!r}"
        if r.status_code == 200:
            served_after = time.monotonic() - t_locked
            expect("the released client's delivery is 200 processed", doc(r) == processed(gid, "issues"), last)
            break
        if r.status_code != 429 or (doc(r) or {}).get("reason") != "too_many_failed_authentications":
            record("while locked out, the client gets 429 too_many_failed_authentications", [f"got {last}"])
            return
    expect(f"the lockout ends by itself within 25 s (served again after "
           f"{served_after and round(served_after, 1)} s)", served_after is not None, f"last answer {last}")


def quota(workdir):
    redis = Redis(workdir)
    if not expect("redis-server starts", redis.start(), redis.log_tail()):
        return
    fleet, failed = start_fleet(workdir, 3, redis.url(), {
        "WEBHOOK_RATE_PER_SEC": str(RATE), "WEBHOOK_RATE_BURST": str(BURST),
        "WEBHOOK_FAILED_AUTH_PER_MIN": str(FAILED_AUTH)})
    try:
        if not record("three receivers start on one Redis", failed):
            return
        rate_limit(fleet)
        lockout(fleet)
        for rx in fleet:
            code = rx.signal(signal.SIGTERM)
            expect(f"{rx.name}: SIGTERM exits 0", code == 0, f"exit code {code}: {rx.log_tail()}")
    finally:
        for rx in fleet:
            rx.stop()
        redis.stop()


if __name__ == "__main__":
    run("wg-fleet-quota-", quota)

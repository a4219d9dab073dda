"""Restart check of the demo receiver's state dir (sync acknowledgement):
dedupe keys survive a graceful stop and a SIGKILL.

Run by scripts/durability.sh (which builds the receiver and exports the
secrets bbkit reads); standalone:

    RECEIVER_BIN=target/release/examples/receiver PYTHONPATH=tests/blackbox \
      <venv>/bin/python tests/durability/restart_check.py

With WEBHOOK_STATE_DIR set:
- a GitHub and a Stripe delivery are answered 200 processed;
- SIGTERM: the receiver exits 0; restarted on the same state dir, the same
  deliveries (Stripe re-signed, GitHub under a fresh delivery id) are 200
  duplicate;
- a third delivery is processed, then SIGKILL right after its answer;
  restarted, all three are 200 duplicate;
- the processed log shows one run per delivery;
- a state dir that cannot be created (a path under a regular file, or a
  regular file itself) stops the receiver at start with one line naming
  WEBHOOK_STATE_DIR and a non-zero exit.

One `ok` / `FAIL` line per check, then `N passed, N failed`. About 10 s.
"""

import os
import signal
import subprocess

import bbkit
from bbkit import (check, duplicate, expect, github_body, github_headers, processed, record, stripe_event,
                   stripe_header)
from dkit import BIN, Receiver, free_port, processed_runs, receiver_env, run


def post(rx, route, body, headers):
    return bbkit.post(rx.base, route, body, headers)


def github(rx, body):
    """Sends `body` as a GitHub delivery with a fresh delivery id: (response, delivery id)."""
    h = github_headers(body)
    return post(rx, "github", body, h), h["X-GitHub-Delivery"]


def stripe(rx, eid, body):
    return post(rx, "stripe", body, {"Stripe-Signature": stripe_header(body), "Content-Type": "application/json"})


def restarts(workdir):
    log_path = os.path.join(workdir, "processed.jsonl")
    rx = Receiver(workdir, {"WEBHOOK_STATE_DIR": os.path.join(workdir, "state"), "WEBHOOK_PROCESSED_LOG": log_path})
    try:
        if not expect("receiver starts with WEBHOOK_STATE_DIR", rx.start(), rx.log_tail()):
            return
        gh_body = github_body()
        r, gid = github(rx, gh_body)
        check("github: first delivery is 200 processed", r, 200, body=processed(gid, "issues"))
        eid, st_body = stripe_event()
        r = stripe(rx, eid, st_body)
        check("stripe: first delivery is 200 processed", r, 200, body=processed(eid, "payment_intent.succeeded"))

        code = rx.signal(signal.SIGTERM)
        expect("SIGTERM: the receiver exits 0", code == 0, f"exit code {code}: {rx.log_tail()}")
        if not expect("restarts on the same state dir after SIGTERM", rx.start(), rx.log_tail()):
            return
        r, gid = github(rx, gh_body)
        check("after SIGTERM + restart: the GitHub delivery again (fresh delivery id) is 200 duplicate", r, 200,
              body=duplicate(gid, "issues"))
        r = stripe(rx, eid, st_body)
        check("after SIGTERM + restart: the Stripe delivery again (re-signed) is 200 duplicate", r, 200,
              body=duplicate(eid, "payment_intent.succeeded"))
        gh_body2 = github_body()
        r, gid = github(rx, gh_body2)
        check("after restart: a fresh GitHub delivery is 200 processed", r, 200, body=processed(gid, "issues"))

        code = rx.signal(signal.SIGKILL)
        expect("SIGKILL right after that answer: the receiver is gone", code == -signal.SIGKILL, f"exit code {code}")
        if not expect("restarts on the same state dir after SIGKILL", rx.start(), rx.log_tail()):
            return
        for name, body in (("first GitHub delivery", gh_body),
                           ("GitHub delivery processed just before the SIGKILL", gh_body2)):
            r, gid = github(rx, body)
            check(f"after SIGKILL + restart: the {name} is 200 duplicate", r, 200,
                  body=duplicate(gid, "issues"))
        r = stripe(rx, eid, st_body)
        check("after SIGKILL + restart: the Stripe delivery is 200 duplicate", r, 200,
              body=duplicate(eid, "payment_intent.succeeded"))

        for name, body in (("first GitHub", gh_body), ("Stripe", st_body), ("second GitHub", gh_body2)):
            starts, dones = processed_runs(log_path, body)
            expect(f"processed log: the {name} delivery ran once (1 start, 1 done)", (starts, dones) == (1, 1),
                   f"{starts} start and {dones} done lines")
        code = rx.signal(signal.SIGTERM)
        expect("final SIGTERM: exit 0", code == 0, f"exit code {code}: {rx.log_tail()}")
    finally:
        rx.stop()


def bad_state_dir(workdir):
    regular = os.path.join(workdir, "a-regular-file")
    with open(regular, "w") as f:
        f.write("not a directory\n")
    for what, path in (("a path under a regular file", os.path.join(regular, "state")),
                       ("a regular file", regular)):
        env = receiver_env({"WEBHOOK_ADDR": f"127.0.0.1:{free_port()}", "WEBHOOK_STATE_DIR": path})
        try:
            p = subprocess.run([BIN], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               stdin=subprocess.DEVNULL, timeout=15)
            code, err = p.returncode, p.stderr.decode("utf-8", "replace")
        except subprocess.TimeoutExpired:
            code, err = None, "(still running after 15 s)"
        lines = [l for l in err.splitlines() if l.strip() and not l.startswith("warning: ")]
        problems = []
        if code in (0, None):
            problems.append(f"exit code {code}")
        if len(lines) != 1:
            problems.append(f"{len(lines)} lines of error output")
        if not any("WEBHOOK_STATE_DIR" in l for l in lines):
            problems.append("no line names WEBHOOK_STATE_DIR")
        record(f"WEBHOOK_STATE_DIR = {what}: refused at start with one line naming it", problems,
               " | ".join(lines))


if __name__ == "__main__":
    run("wg-restart-", restarts, bad_state_dir)

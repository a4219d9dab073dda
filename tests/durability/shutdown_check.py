"""Graceful-shutdown check of the demo receiver: SIGTERM during a running
handler drains it, says so on /readyz, settles the dedupe claim, exits 0.

Run by scripts/durability.sh (which builds the receiver and exports the
secrets bbkit reads); standalone:

    RECEIVER_BIN=target/release/examples/receiver PYTHONPATH=tests/blackbox \
      <venv>/bin/python tests/durability/shutdown_check.py

1. With a state dir (sync acknowledgement), a `test.slow_handler` Stripe
   delivery is sent (the demo handler takes 2 s); once its `start` line is
   in the processed log, the receiver gets SIGTERM. While it drains:
   - GET /readyz answers 503 problem+json, reason `shutting_down`, and
     never 200 again after its first 503; GET /healthz answers 200.
     New connections may be refused once accept stops, so the requests are
     mostly made on connections opened before the SIGTERM whose request
     head is finished only after it (a connection in the middle of a head
     is not idle, so the drain does not drop it), completed one by one
     while the handler runs; new connections to the main and the admin
     listener are tried as well. Requests finished before the signal is
     handled may still see 200; none may see 200 after a 503.
   - the slow request completes 200 processed; the process exits 0.
   Restarted on the same state dir, the same delivery is 200 duplicate (its
   claim was completed), and the processed log shows one run.
2. A connection holding half a request head does not keep the receiver
   past WEBHOOK_SHUTDOWN_GRACE_SECS (3 here, with a 60 s head timeout):
   it exits 0 within the grace period + a margin.

One `ok` / `FAIL` line per check, then `N passed, N failed`. About 15 s
(the same with SMOKE=1).
"""

import json
import os
import signal
import socket
import threading
import time

import requests

import bbkit
from bbkit import check, duplicate, expect, processed, record, stripe_event, stripe_header
from dkit import Receiver, processed_runs, run

SLOW = "test.slow_handler"
GRACE = 10      # the default WEBHOOK_SHUTDOWN_GRACE_SECS
SHORT_GRACE = 3


def read_response(sock, timeout=3.0):
    """Reads one HTTP/1.1 response: (status, headers, body), or None on close / timeout."""
    sock.settimeout(timeout)
    data = b""
    try:
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                return None
            data += chunk
        head, rest = data.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
        length = int(headers.get("content-length", "0") or 0)
        while len(rest) < length:
            chunk = sock.recv(65536)
            if not chunk:
                break
            rest += chunk
        return int(lines[0].split()[1]), headers, rest[:length]
    except (OSError, ValueError, IndexError):
        return None


class Observations:
    """Answers to /readyz and /healthz, with the time they were asked."""

    def __init__(self):
        self.lock = threading.Lock()
        self.items = []     # (asked_at, channel, path, status or None, content_type, body text)

    def add(self, asked_at, channel, path, answer):
        with self.lock:
            if answer is None:
                self.items.append((asked_at, channel, path, None, "", ""))
            else:
                status, headers, body = answer
                self.items.append((asked_at, channel, path, status, headers.get("content-type", ""),
                                   body.decode("utf-8", "replace")))


def half_open(port, path):
    """A connection with a request head for `path` sent but for its final CRLF."""
    s = socket.create_connection(("127.0.0.1", port), timeout=3)
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: shutdown-check\r\n".encode())
    return s


def poll_new_connections(rx, obs, stop):
    """Asks /readyz and /healthz on fresh connections to both listeners until `stop`."""
    targets = [("main", rx.port)] + ([("admin", rx.admin_port)] if rx.admin_port else [])
    while not stop.is_set():
        for channel, port in targets:
            for path in ("/readyz", "/healthz"):
                t = time.monotonic()
                try:
                    s = socket.create_connection(("127.0.0.1", port), timeout=0.5)
                except OSError:
                    continue    # refused once accept stops: no observation
                try:
                    s.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
                    answer = read_response(s, 1.0)
                except OSError:
                    answer = None
                finally:
                    s.close()
                if answer is not None:
                    obs.add(t, f"new {channel}", path, answer)
        stop.wait(0.05)


def drain(workdir):
    log_path = os.path.join(workdir, "processed.jsonl")
    env = {"WEBHOOK_STATE_DIR": os.path.join(workdir, "state"), "WEBHOOK_PROCESSED_LOG": log_path}
    rx = Receiver(workdir, env, admin=True)
    try:
        if not expect("receiver starts with a state dir", rx.start(), rx.log_tail()):
            return
        r = requests.get(rx.base + "/readyz", timeout=5)
        check("before shutdown: GET /readyz is 200", r, 200)

        # Connections for after the SIGTERM, opened now: 8 /readyz, 4 /healthz, heads unfinished.
        pending = []
        for i in range(12):
            path = "/healthz" if i % 3 == 2 else "/readyz"
            pending.append((path, half_open(rx.port, path)))

        eid, body = stripe_event(SLOW)
        slow = {}

        def send_slow():
            try:
                slow["response"] = bbkit.post(rx.base, "stripe", body, {
                    "Stripe-Signature": stripe_header(body), "Content-Type": "application/json"}, timeout=30)
            except requests.RequestException as e:
                slow["error"] = type(e).__name__
            slow["at"] = time.monotonic()

        sender = threading.Thread(target=send_slow)
        sender.start()
        deadline = time.monotonic() + 10
        while processed_runs(log_path, body)[0] == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        if not expect("the slow handler started (a start line in the processed log)",
                      processed_runs(log_path, body)[0] == 1):
            return

        obs = Observations()
        stop = threading.Event()
        poller = threading.Thread(target=poll_new_connections, args=(rx, obs, stop))
        t_term = time.monotonic()
        rx.proc.send_signal(signal.SIGTERM)
        poller.start()
        # Finish the pending heads one by one over the handler's remaining ~2 s.
        for i, (path, s) in enumerate(pending):
            time.sleep(max(0.0, t_term + 0.1 + 0.12 * i - time.monotonic()))
            t = time.monotonic()
            try:
                s.sendall(b"\r\n")
                obs.add(t, "held", path, read_response(s, 3.0))
            except OSError:
                obs.add(t, "held", path, None)
            finally:
                s.close()
        sender.join(40)
        code = rx.wait(GRACE + 10)
        t_exit = time.monotonic()
        stop.set()
        poller.join()

        r = slow.get("response")
        if r is None:
            record("the slow request completes 200 processed", [f"no answer: {slow.get('error')}"])
        else:
            check("the slow request completes 200 processed", r, 200, body=processed(eid, SLOW))
        expect(f"the receiver exits 0 within the grace period ({GRACE} s) + 10 s", code == 0,
               f"exit code {code} after {time.monotonic() - t_term:.1f} s: {rx.log_tail()}")

        with obs.lock:
            items = sorted(obs.items)
        shown = "; ".join(f"+{t - t_term:.2f}s {ch} {p} -> {st if st is not None else 'closed'}"
                          for t, ch, p, st, _, _ in items if p == "/readyz")[:1500]
        seen = {}
        for t, ch, p, st, _, _ in items:
            if t >= t_term:
                k = f"{ch} {p} {st if st is not None else 'closed'}"
                seen[k] = seen.get(k, 0) + 1
        print(f"     answers after SIGTERM: {', '.join(f'{k}: {v}' for k, v in sorted(seen.items()))}", flush=True)
        readyz = [i for i in items if i[2] == "/readyz" and i[3] is not None and i[0] >= t_term and i[0] < t_exit]
        good_503 = []
        for t, ch, p, st, ctype, text in readyz:
            try:
                doc = json.loads(text)
            except ValueError:
                doc = None
            if st == 503 and ctype.startswith("application/problem+json") and isinstance(doc, dict) \
                    and doc.get("reason") == "shutting_down" and doc.get("status") == 503:
                good_503.append(t)
        record("during the drain GET /readyz answers 503 problem+json, reason shutting_down",
               [] if good_503 else [f"no such answer seen ({len(readyz)} /readyz answers)"], shown)
        first = min(good_503) if good_503 else None
        after = [i for i in readyz if first is not None and i[0] > first and i[3] != 503]
        record("after its first 503, /readyz never answers otherwise", [f"{len(after)} answers: "
               + "; ".join(f"+{t - t_term:.2f}s {ch} {st}" for t, ch, _, st, _, _ in after[:5])] if after else [],
               shown)
        if first is not None and slow.get("at"):
            expect("a 503 shutting_down was seen while the slow request was still running", first < slow["at"],
                   f"first 503 at +{first - t_term:.2f} s, slow answer at +{slow['at'] - t_term:.2f} s")
        healthz = [i for i in items if i[2] == "/healthz" and i[3] is not None and i[0] >= t_term]
        bad = [i for i in healthz if i[3] != 200]
        record(f"during the drain GET /healthz answers 200 ({len(healthz)} answers)",
               ([f"{len(bad)} answers: " + "; ".join(f"+{t - t_term:.2f}s {ch} {st}" for t, ch, _, st, _, _ in bad[:5])]
                if bad else []) + ([] if healthz else ["no /healthz answer seen"]))

        if not expect("restarts on the same state dir", rx.start(), rx.log_tail()):
            return
        r = bbkit.post(rx.base, "stripe", body, {"Stripe-Signature": stripe_header(body),
                                                 "Content-Type": "application/json"}, timeout=30)
        check("after the restart the same delivery is 200 duplicate (its claim was completed)", r, 200,
              body=duplicate(eid, SLOW))
        starts, dones = processed_runs(log_path, body)
        expect("processed log: it ran once (1 start, 1 done)", (starts, dones) == (1, 1),
               f"{starts} start and {dones} done lines")
        rx.proc.send_signal(signal.SIGTERM)
        code = rx.wait(GRACE + 10)
        expect("SIGTERM when idle: exit 0", code == 0, f"exit code {code}: {rx.log_tail()}")
    finally:
        rx.stop()


def half_head_holds_nothing(workdir):
    rx = Receiver(workdir, {"WEBHOOK_SHUTDOWN_GRACE_SECS": str(SHORT_GRACE), "WEBHOOK_HEADER_TIMEOUT_SECS": "60"})
    try:
        if not expect("receiver starts (grace 3 s, head timeout 60 s)", rx.start(), rx.log_tail()):
            return
        s = socket.create_connection(("127.0.0.1", rx.port), timeout=3)
        s.sendall(b"POST /webhooks/github HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Ty")
        idle = socket.create_connection(("127.0.0.1", rx.port), timeout=3)
        idle.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        read_response(idle)
        time.sleep(0.2)
        t = time.monotonic()
        rx.proc.send_signal(signal.SIGTERM)
        limit = SHORT_GRACE + 5
        code = rx.wait(limit)
        took = time.monotonic() - t
        expect(f"with half a request head held open, SIGTERM exits 0 within the grace period + 5 s ({limit} s)",
               code == 0, f"exit code {code} after {took:.1f} s: {rx.log_tail()}")
        s.close()
        idle.close()
    finally:
        rx.stop()


if __name__ == "__main__":
    run("wg-shutdown-", drain, half_head_holds_nothing)

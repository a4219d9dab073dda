"""Slow-client check of the demo receiver: stalled bodies and half-sent
heads neither hold memory nor connections past their deadlines, and do not
keep a genuine delivery out.

Run by scripts/durability.sh (which builds the receiver and exports the
secrets bbkit reads); standalone:

    RECEIVER_BIN=target/release/examples/receiver PYTHONPATH=tests/blackbox \
      <venv>/bin/python tests/durability/slow_clients.py

The receiver runs with its defaults (WEBHOOK_BODY_TIMEOUT_SECS 30,
WEBHOOK_HEADER_TIMEOUT_SECS 10, WEBHOOK_MAX_INFLIGHT_BODY_BYTES 64 MiB)
except a high rate limit; SMOKE=1 sets the two timeouts to 6 s and 3 s.

1. 300 connections, each from its own loopback address (127.1.x.y), send
   a signed-looking GitHub POST head with Content-Length 1000000 and 900 KiB
   of the body, then stall. Meanwhile a fresh signed delivery from 127.0.0.1
   must be 200 processed; the receiver's RSS (VmRSS) may grow by at most
   WEBHOOK_MAX_INFLIGHT_BODY_BYTES + 32 MiB over its warmed-up value; every
   stalled connection must be closed, or answered 408 / 503, within the
   body deadline + a margin.
2. Then 5 connections (127.4.0.x) send the same head and 900 KiB and
   trickle the rest a byte a second, never tripping a gap timeout: the
   whole-body deadline must close them (or answer 408) in time too.
3. 20 connections send half a request head, 10 send nothing: each must be
   closed (or answered 408) within the head timeout + a margin.
4. The receiver still answers a fresh delivery 200 processed.

One `ok` / `FAIL` line per check, then `N passed, N failed`. Full mode
about 75 s (stalled bodies are held to the 30 s body deadline), SMOKE about 20 s.
"""

import errno
import os
import selectors
import socket
import threading
import time

import requests

import bbkit
from bbkit import check, expect, gh, github_body, github_headers, processed, record
from dkit import SMOKE, Receiver, rss_bytes, run

BODY_SECS = 6 if SMOKE else 30
HEAD_SECS = 3 if SMOKE else 10
MAX_INFLIGHT = 64 * 1024 * 1024       # the contract's default WEBHOOK_MAX_INFLIGHT_BODY_BYTES
STALLED = 300
CONTENT_LENGTH = 1_000_000
SENT_BODY = 900 * 1024
HALF_HEADS = 20
TRICKLING = 5
TRICKLE_GAP = 1.0
SILENT = 10


def margin(secs):
    """Slack on a deadline for a loaded 2-core machine."""
    return 5.0 + 0.25 * secs


class Conn:
    """A raw client connection from `source` that sends `data` and stalls."""

    def __init__(self, source, data):
        self.source = source
        self.data = memoryview(data)
        self.sent = 0
        self.connected = False
        self.error = None
        self.opened = time.monotonic()
        self.status = None          # the status of an answer, if any
        self.answered_at = None
        self.closed_at = None
        self.rx = b""
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setblocking(False)
        self.trickle = None         # (bytes, seconds between them): sent after `data`, one at a time
        self.next_trickle = 0.0

    def finished_at(self):
        """When the server let go of this connection: an answer or a close."""
        times = [t for t in (self.answered_at, self.closed_at) if t is not None]
        return min(times) if times else None


class Clients:
    """Drives many Conns with one selector, sampling the receiver's RSS."""

    def __init__(self, port, pid):
        self.port = port
        self.pid = pid
        self.sel = selectors.DefaultSelector()
        self.conns = []
        self.rss_max = 0

    def open(self, source, data, trickle=None):
        c = Conn(source, data)
        c.trickle = trickle
        try:
            c.sock.bind((source, 0))
            rc = c.sock.connect_ex(("127.0.0.1", self.port))
            if rc not in (0, errno.EINPROGRESS):
                raise OSError(rc, os.strerror(rc))
            self.sel.register(c.sock, selectors.EVENT_READ | selectors.EVENT_WRITE, c)
        except OSError as e:
            c.error = f"connect: {e}"
            c.closed_at = time.monotonic()
            c.sock.close()
        self.conns.append(c)
        return c

    def _close(self, c, why=None):
        if c.closed_at is None:
            c.closed_at = time.monotonic()
        if why and not c.error:
            c.error = why
        try:
            self.sel.unregister(c.sock)
        except (KeyError, ValueError):
            pass
        c.sock.close()

    def step(self, timeout=0.05):
        try:
            self.rss_max = max(self.rss_max, rss_bytes(self.pid))
        except OSError:
            pass
        now = time.monotonic()
        for c in self.conns:
            if c.trickle and c.closed_at is None and c.sent >= len(c.data) and now >= c.next_trickle \
                    and len(c.trickle[0]) > 0:
                try:
                    c.sock.send(c.trickle[0][:1])
                    c.trickle = (c.trickle[0][1:], c.trickle[1])
                    c.next_trickle = now + c.trickle[1]
                except BlockingIOError:
                    pass
                except OSError as e:
                    self._close(c, f"send: {e.strerror}")
        for key, events in self.sel.select(timeout):
            c = key.data
            if events & selectors.EVENT_WRITE:
                if not c.connected:
                    err = c.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    if err:
                        self._close(c, f"connect: {os.strerror(err)}")
                        continue
                    c.connected = True
                try:
                    if c.sent < len(c.data):
                        c.sent += c.sock.send(c.data[c.sent:c.sent + 262144])
                except BlockingIOError:
                    pass
                except OSError as e:
                    self._close(c, f"send: {e.strerror}")
                    continue
                if c.sent >= len(c.data):
                    self.sel.modify(c.sock, selectors.EVENT_READ, c)   # all sent: stall
            if events & selectors.EVENT_READ:
                try:
                    chunk = c.sock.recv(65536)
                except BlockingIOError:
                    continue
                except OSError as e:
                    self._close(c, f"recv: {e.strerror}")
                    continue
                if not chunk:
                    self._close(c)
                    continue
                c.rx += chunk
                if c.status is None and b"\r\n" in c.rx:
                    try:
                        c.status = int(c.rx.split(b"\r\n", 1)[0].split()[1])
                    except (IndexError, ValueError):
                        c.status = -1
                    c.answered_at = time.monotonic()

    def run_until(self, done, deadline):
        while time.monotonic() < deadline and not done():
            self.step()

    def close_all(self):
        for c in self.conns:
            if c.closed_at is None:
                self._close(c, "closed by the test")


def fresh_delivery(rx, name):
    body = github_body()
    h = github_headers(body)
    try:
        r = bbkit.post(rx.base, "github", body, h, timeout=15)
    except requests.RequestException as e:
        return record(name, [f"no answer: {type(e).__name__}"])
    return check(name, r, 200, body=processed(h["X-GitHub-Delivery"], "issues"))


def source(block, i):
    """The i-th distinct loopback source address in 127.<block>.x.y."""
    return f"127.{block}.{i // 250}.{i % 250 + 1}"


def stalled_request():
    """A GitHub POST head announcing 1,000,000 bytes, signed over that full
    body, and the first 900 KiB of it."""
    prefix = b'{"action":"opened","pad":"'
    body = prefix + b"x" * (CONTENT_LENGTH - len(prefix) - 2) + b'"}'
    head = ("POST /webhooks/github HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            "X-GitHub-Event: issues\r\nX-GitHub-Delivery: 72d3162e-cc78-11e3-81ab-4c9367dc0958\r\n"
            f"X-Hub-Signature-256: {gh(body)}\r\nContent-Length: {CONTENT_LENGTH}\r\n\r\n").encode()
    return head + body[:SENT_BODY]


def describe(conns, n=5):
    out = []
    for c in conns[:n]:
        took = c.finished_at()
        took = f"{took - c.opened:.1f} s" if took else "still open"
        out.append(f"{c.source}: status {c.status}, {took}, sent {c.sent}, {c.error or ''}".rstrip(", "))
    more = f" (+{len(conns) - n} more)" if len(conns) > n else ""
    return "; ".join(out) + more


def held_problems(conns, limit, allowed):
    """Problems: connections the server had not let go `limit` seconds after
    they opened, and answers other than the `allowed` statuses."""
    late = [c for c in conns if c.finished_at() is None or c.finished_at() - c.opened > limit]
    wrong = [c for c in conns if c.status is not None and c.status not in allowed]
    return (([f"{len(late)} still held: {describe(late)}"] if late else [])
            + ([f"{len(wrong)} answered otherwise: {describe(wrong)}"] if wrong else []))


def stalled_bodies(rx):
    pid = rx.proc.pid
    # Warm up, so that the first deliveries' allocations do not count as growth.
    fresh_delivery(rx, "warm-up: a fresh delivery is 200 processed")
    for _ in range(19):
        body = github_body()
        bbkit.post(rx.base, "github", body, github_headers(body))
    time.sleep(0.5)
    baseline = max(rss_bytes(pid) for _ in range(3))
    print(f"     RSS after warm-up: {baseline / 2**20:.1f} MiB", flush=True)

    clients = Clients(rx.port, pid)
    data = stalled_request()
    for i in range(STALLED):
        clients.open(source(1, i), data)
        if i % 25 == 24:
            clients.step(0)
    all_open = time.monotonic()
    failed_open = [c for c in clients.conns if c.error and c.error.startswith("connect")]
    expect(f"{STALLED} stalled connections opened from distinct 127.1.x.y addresses", not failed_open,
           describe(failed_open))

    # A genuine delivery while they stall.
    result = {}
    t = threading.Thread(target=lambda: result.setdefault("ok", fresh_delivery(
        rx, f"a fresh signed delivery while {STALLED} bodies stall is 200 processed")))
    clients.run_until(lambda: False, all_open + 1.5)
    t.start()
    while t.is_alive():
        clients.step()
    limit = BODY_SECS + margin(BODY_SECS)
    clients.run_until(lambda: all(c.finished_at() is not None for c in clients.conns), all_open + limit)
    growth = clients.rss_max - baseline
    expect(f"RSS growth {growth / 2**20:.1f} MiB (peak {clients.rss_max / 2**20:.1f} MiB) "
           f"<= WEBHOOK_MAX_INFLIGHT_BODY_BYTES + 32 MiB", growth <= MAX_INFLIGHT + 32 * 2**20)

    stalled = clients.conns
    counts = {}
    for c in stalled:
        k = str(c.status) if c.status is not None else "closed" if c.closed_at is not None else "open"
        counts[k] = counts.get(k, 0) + 1
    record(f"every stalled connection closed or answered 408 / 503 within {BODY_SECS} s + {margin(BODY_SECS):.1f} s "
           f"({', '.join(f'{k}: {v}' for k, v in sorted(counts.items()))})",
           held_problems(stalled, limit, (408, 503)))
    clients.close_all()


def trickled_bodies(rx):
    """Bodies sent a byte a second after the first 900 KiB: no gap timeout
    trips, only the whole-body deadline can stop them."""
    clients = Clients(rx.port, rx.proc.pid)
    data = stalled_request()
    trickling = [clients.open(source(4, i), data, trickle=(b"x" * 200, TRICKLE_GAP)) for i in range(TRICKLING)]
    limit = BODY_SECS + margin(BODY_SECS)
    clients.run_until(lambda: all(c.finished_at() is not None for c in trickling), time.monotonic() + limit + 1)
    took = max((c.finished_at() - c.opened for c in trickling if c.finished_at()), default=0)
    record(f"{TRICKLING} connections trickling the body a byte every {TRICKLE_GAP:.0f} s are closed or answered 408 "
           f"within {BODY_SECS} s + {margin(BODY_SECS):.1f} s (last after {took:.1f} s)",
           held_problems(trickling, limit, (408,)))
    clients.close_all()


def slow_heads(rx):
    clients = Clients(rx.port, rx.proc.pid)
    half = b"POST /webhooks/github HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: applic"
    halves = [clients.open(source(2, i), half) for i in range(HALF_HEADS)]
    silent = [clients.open(source(3, i), b"") for i in range(SILENT)]
    limit = HEAD_SECS + margin(HEAD_SECS)
    start = time.monotonic()
    clients.run_until(lambda: all(c.finished_at() is not None for c in clients.conns), start + limit)
    for name, conns in (("half a request head", halves), ("nothing", silent)):
        record(f"{len(conns)} connections sending {name} are closed (or answered 408) within "
               f"{HEAD_SECS} s + {margin(HEAD_SECS):.1f} s", held_problems(conns, limit, (408,)))
    clients.close_all()


def slow_clients(workdir):
    env = {"WEBHOOK_RATE_PER_SEC": "1000000", "WEBHOOK_RATE_BURST": "1000000"}
    if SMOKE:
        env.update(WEBHOOK_BODY_TIMEOUT_SECS=str(BODY_SECS), WEBHOOK_HEADER_TIMEOUT_SECS=str(HEAD_SECS))
    rx = Receiver(workdir, env)
    try:
        if expect("receiver starts", rx.start(), rx.log_tail()):
            stalled_bodies(rx)
            trickled_bodies(rx)
            slow_heads(rx)
            fresh_delivery(rx, "afterwards a fresh delivery is 200 processed")
            expect("the receiver is still running", rx.proc.poll() is None, rx.log_tail())
    finally:
        rx.stop()


if __name__ == "__main__":
    print(f"slow_clients: body timeout {BODY_SECS} s, head timeout {HEAD_SECS} s{' (SMOKE)' if SMOKE else ''}",
          flush=True)
    run("wg-slow-", slow_clients)

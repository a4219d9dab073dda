"""Pieces shared by the fleet checks (quota_check.py, takeover_check.py,
redis_restart_check.py, tls_check.py): several demo receivers on one
redis-server, as real processes.

- `Redis`: a redis-server of our own on a loopback port (below 32768, out
  of the ephemeral range, unless the caller fixes one) and a work dir of
  its own; append-only with `appendfsync always` and no RDB snapshots
  unless the check says otherwise; optionally TLS only (`tls=`), with
  extra raw arguments (`--user ...`). Stoppable (SIGTERM or SIGKILL) and
  restartable on the same port and dir.
- `start_fleet`: N receivers (tests/durability/dkit.py's `Receiver`) on one
  Redis URL, each with its own work dir (its receiver.log / receiver.out)
  and its own processed log.
- `Delivery` / `make_delivery` / `send`: signed deliveries (Stripe, GitHub,
  Standard Webhooks) that remember every answer they got.
- `ProcessedLogs`: the replicas' processed logs read together.
- `stop_all`: stops every process started through this module; also run at
  exit, so a failing or SIGTERMed check leaves nothing behind.

Signing, HTTP and the `ok` / `FAIL` lines come from tests/blackbox/bbkit.py,
the receiver process and `run` from tests/durability/dkit.py (both on
PYTHONPATH, as scripts/fleet.sh sets it).
"""

import atexit
import ctypes
import hashlib
import json
import os
import random
import signal
import socket
import ssl
import subprocess
import threading
import time

import requests

import bbkit
from bbkit import github_body, github_headers, standard_delivery, stripe_event, stripe_header
from dkit import Receiver

SLOW = "test.slow_handler"      # the demo handler takes 2 s over this event type
_started = []                   # every Redis and Receiver started here, for stop_all
_started_lock = threading.Lock()


def _die_with_parent():
    """preexec_fn: the child gets SIGKILL if this Python process dies first."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)     # PR_SET_PDEATHSIG
    except OSError:
        pass


def low_free_port():
    """A loopback TCP port below 32768 (so no outgoing connection can hold
    it as its ephemeral port) that was free a moment ago."""
    for _ in range(200):
        port = random.randrange(20000, 32768)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free loopback port below 32768")


# --- redis-server -------------------------------------------------------------------------------
class Redis:
    """A redis-server on 127.0.0.1 with a dir of its own.

    `options` override the defaults (`{"appendonly": "no"}`,
    `{"maxmemory-policy": "allkeys-lru"}`, `{"requirepass": "pw"}`);
    `extra` is appended as is (`["--user", "fleet", "on", ">pw", ...]`);
    `tls` = {"cert": path, "key": path, "ca": path} serves TLS only on the
    port (`--port 0 --tls-port P`, no client certificates asked).
    A `port` given by the caller is kept; otherwise one is picked and, if
    redis-server cannot bind it, another one."""

    def __init__(self, workdir, name="redis", port=None, options=None, extra=(), tls=None):
        self.dir = os.path.join(workdir, name)
        os.makedirs(self.dir, exist_ok=True)
        self.fixed_port = port is not None
        self.port = port or low_free_port()
        self.tls = tls
        self.options = {"save": "", "appendonly": "yes", "appendfsync": "always"}
        self.options.update(options or {})
        self.extra = list(extra)
        self.proc = None
        with _started_lock:
            _started.append(self)

    @property
    def logfile(self):
        return os.path.join(self.dir, "redis.log")

    def url(self, user=None, password=None, db=0):
        """`redis://` (or `rediss://` with TLS) URL of this server."""
        scheme = "rediss" if self.tls else "redis"
        auth = ""
        if password is not None:
            auth = f"{user or ''}:{password}@"
        return f"{scheme}://{auth}127.0.0.1:{self.port}/{db}"

    def _argv(self):
        argv = ["redis-server", "--bind", "127.0.0.1", "--dir", self.dir, "--logfile", self.logfile,
                "--daemonize", "no", "--protected-mode", "no"]
        if self.tls:
            argv += ["--port", "0", "--tls-port", str(self.port), "--tls-cert-file", self.tls["cert"],
                     "--tls-key-file", self.tls["key"], "--tls-ca-cert-file", self.tls["ca"],
                     "--tls-auth-clients", "no"]
        else:
            argv += ["--port", str(self.port)]
        for key, value in self.options.items():
            argv += [f"--{key}", value]
        return argv + self.extra

    def start(self, timeout=15.0):
        """Starts it and waits until it answers PING (or asks for AUTH);
        False if it does not. Retries on another port unless the port is fixed."""
        for _ in range(1 if self.fixed_port else 8):
            self.proc = subprocess.Popen(self._argv(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                         stderr=subprocess.DEVNULL, preexec_fn=_die_with_parent)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and self.proc.poll() is None:
                if self.ping():
                    return True
                time.sleep(0.05)
            self.kill()
            if not self.fixed_port:
                self.port = low_free_port()
        return False

    def ping(self):
        """True if the server answers a PING with PONG or an AUTH demand (not LOADING)."""
        try:
            raw = socket.create_connection(("127.0.0.1", self.port), timeout=1)
        except OSError:
            return False
        try:
            sock = raw
            if self.tls:
                ctx = ssl.create_default_context()
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
                sock = ctx.wrap_socket(raw)
            sock.settimeout(1)
            sock.sendall(b"PING\r\n")
            answer = sock.recv(200)
            return answer.startswith(b"+PONG") or answer.startswith(b"-NOAUTH")
        except OSError:
            return False
        finally:
            raw.close()

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, sig=signal.SIGTERM, timeout=15.0):
        """Sends `sig` and waits for the exit (SIGKILL after `timeout`); the exit code."""
        if not self.running():
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()

    def kill(self):
        return self.stop(signal.SIGKILL)

    def restart(self, timeout=15.0):
        """Starts it again on the same port and dir (after stop / kill)."""
        self.stop()
        fixed, self.fixed_port = self.fixed_port, True
        try:
            return self.start(timeout)
        finally:
            self.fixed_port = fixed

    def cli(self, *args, user=None, password=None, ca=None):
        """redis-cli against this server: (exit code, output)."""
        argv = ["redis-cli", "-h", "127.0.0.1", "-p", str(self.port)]
        if self.tls:
            argv += ["--tls", "--cacert", ca or self.tls["ca"]]
        if user:
            argv += ["--user", user]
        if password:
            argv += ["--pass", password, "--no-auth-warning"]
        p = subprocess.run(argv + list(args), stdin=subprocess.DEVNULL, capture_output=True, timeout=10)
        return p.returncode, (p.stdout + p.stderr).decode("utf-8", "replace").strip()

    def log_tail(self, n=5):
        try:
            with open(self.logfile, "rb") as f:
                return " | ".join(f.read().decode("utf-8", "replace").splitlines()[-n:])
        except OSError:
            return ""


# --- receivers ----------------------------------------------------------------------------------
def new_receiver(workdir, name, env):
    """A dkit.Receiver in <workdir>/<name> (not started), stopped by stop_all."""
    rdir = os.path.join(workdir, name)
    os.makedirs(rdir, exist_ok=True)
    rx = Receiver(rdir, env)
    rx.name = name
    with _started_lock:
        _started.append(rx)
    return rx


def start_fleet(workdir, n, redis_url, env, each=None, names=None):
    """N receivers on `redis_url`, started at once: each in <workdir>/<name>
    with WEBHOOK_PROCESSED_LOG = <that dir>/processed.jsonl, `env` for all,
    `each[i]` for the i-th. Returns (receivers, names of those that did not
    come up, with their stderr tails)."""
    names = names or [f"rx{i}" for i in range(n)]
    fleet = []
    for i, name in enumerate(names):
        e = {"WEBHOOK_REDIS_URL": redis_url,
             "WEBHOOK_PROCESSED_LOG": os.path.join(workdir, name, "processed.jsonl"), **env}
        if each:
            e.update(each[i])
        rx = new_receiver(workdir, name, e)
        rx.processed_log = e["WEBHOOK_PROCESSED_LOG"]
        fleet.append(rx)
    ok = [False] * n
    threads = [threading.Thread(target=lambda i=i: ok.__setitem__(i, fleet[i].start())) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    failed = [f"{rx.name}: {rx.log_tail()}" for rx, up in zip(fleet, ok) if not up]
    return fleet, failed


def read_text(path):
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


def output_of(rx):
    """Everything a receiver wrote: stderr, then stdout."""
    return read_text(os.path.join(rx.workdir, "receiver.log")) + read_text(os.path.join(rx.workdir, "receiver.out"))


def stop_all():
    """SIGKILL for every receiver and redis-server started through this module."""
    with _started_lock:
        items = list(_started)
    for item in items:
        try:
            if isinstance(item, Redis):
                item.kill()
            else:
                item.stop()
        except Exception:       # noqa: BLE001 - best effort at exit
            pass


atexit.register(stop_all)


# --- deliveries ---------------------------------------------------------------------------------
class Answer:
    """One request's outcome."""

    def __init__(self, replica, kind, sent_at):
        self.replica = replica      # the receiver's name
        self.kind = kind            # fresh / repeat / retry
        self.sent_at = sent_at
        self.answered_at = None
        self.status = None          # None: no answer
        self.text = ""
        self.retry_after = None
        self.content_type = ""
        self.error = None
        self.expected_id = None

    def doc(self):
        try:
            return json.loads(self.text)
        except (TypeError, ValueError):
            return None

    def reason(self):
        doc = self.doc()
        return doc.get("reason") if isinstance(doc, dict) else None

    def is_duplicate(self):
        return self.status == 200 and (self.doc() or {}).get("status") == "duplicate"

    def short(self):
        if self.status is None:
            return f"{self.replica} {self.kind}: no answer ({self.error})"
        return f"{self.replica} {self.kind}: {self.status} {self.text[:100]!r}"


class Delivery:
    """A body on a route, re-signed for every send as its provider would.
    `key` (route, body SHA-256) names it in the processed logs."""

    def __init__(self, route, body, sign, id_of, type_):
        self.route = route
        self.body = body.encode()
        self.sign = sign            # () -> headers
        self.id_of = id_of          # headers -> the id the answer must carry
        self.type = type_
        self.key = (route, hashlib.sha256(self.body).hexdigest())
        self.answers = []

    def accepted(self):
        return any(a.status == 202 or a.is_duplicate() for a in self.answers)

    def refused(self):
        """Every answer was 4xx/5xx (and there was at least one)."""
        return bool(self.answers) and all(a.status is not None and a.status >= 400 for a in self.answers)


def make_delivery(route, slow=False):
    """A fresh Stripe, GitHub or Standard Webhooks delivery."""
    if route == "stripe":
        t = SLOW if slow else "payment_intent.succeeded"
        eid, body = stripe_event(t)
        return Delivery(route, body, lambda: {"Stripe-Signature": stripe_header(body),
                                              "Content-Type": "application/json"}, lambda h: eid, t)
    if route == "github":
        t = SLOW if slow else "issues"
        body = github_body()
        return Delivery(route, body, lambda: github_headers(body, event=t), lambda h: h["X-GitHub-Delivery"], t)
    t = SLOW if slow else "invoice.paid"
    msg_id, body, headers = standard_delivery(event_type=t)
    return Delivery("standard", body, lambda: headers, lambda h: msg_id, t)


def send(session, rx, d, kind="fresh", timeout=(3, 20), lock=None):
    """Sends `d` to receiver `rx` on `session`; appends and returns the Answer."""
    headers = d.sign()
    a = Answer(rx.name, kind, time.monotonic())
    a.expected_id = d.id_of(headers)
    try:
        r = session.post(f"{rx.base}/webhooks/{d.route}", data=d.body, headers=headers, timeout=timeout)
        a.status, a.text = r.status_code, r.text
        a.retry_after = r.headers.get("retry-after")
        a.content_type = r.headers.get("content-type", "")
    except requests.RequestException as e:
        a.error = type(e).__name__
    a.answered_at = time.monotonic()
    if lock:
        with lock:
            d.answers.append(a)
    else:
        d.answers.append(a)
    return a


def answer_shape_problems(d, a):
    """What is wrong with a 202 / 200 duplicate / problem answer's body."""
    doc = a.doc()
    if a.status == 202:
        want = {"status": "accepted", "id": a.expected_id, "type": d.type}
        return [] if doc == want else [f"{d.route} 202 body {a.text[:150]!r}"]
    if a.status == 200:
        want = {"status": "duplicate", "id": a.expected_id, "type": d.type}
        return [] if doc == want else [f"{d.route} 200 body {a.text[:150]!r}"]
    if a.status is not None and a.status >= 400:
        problems = []
        if not a.content_type.startswith("application/problem+json"):
            problems.append(f"{d.route} {a.status} not problem+json")
        if not (isinstance(doc, dict) and doc.get("status") == a.status and "reason" in doc):
            problems.append(f"{d.route} {a.status} not a problem document with a reason: {a.text[:150]!r}")
        for secret in bbkit.SECRETS:
            if secret in a.text:
                problems.append(f"{d.route} {a.status}: a secret is in the answer")
        return problems
    return []


def post(rx, route, body, headers, source=None, timeout=10):
    """bbkit.post to receiver `rx`, but a refused or cut connection is a
    response with status 0 (its text says why), so a check records it."""
    try:
        return bbkit.post(rx.base, route, body, headers, source=source, timeout=timeout)
    except requests.RequestException as e:
        return bbkit.RawResponse(0, {}, f"no answer from {rx.name}: {type(e).__name__}".encode())


def retry_after_ok(a):
    v = (a.retry_after or "").strip()
    return v.isdigit() and int(v) >= 1


def examples(items, n=5):
    items = list(items)
    more = f" (+{len(items) - n} more)" if len(items) > n else ""
    return "; ".join(items[:n]) + more


# --- processed logs -----------------------------------------------------------------------------
class ProcessedLogs:
    """The processed logs of several replicas, read incrementally; each
    parsed line gets `_key` (route, body sha) and `_replica`."""

    def __init__(self, receivers):
        self.files = {rx.name: rx.processed_log for rx in receivers}
        self.offsets = {name: 0 for name in self.files}
        self.lines = []
        self.bad = []
        self.changed_at = time.monotonic()

    def read(self):
        for name, path in self.files.items():
            try:
                with open(path, "rb") as f:
                    f.seek(self.offsets[name])
                    data = f.read()
            except FileNotFoundError:
                continue
            end = data.rfind(b"\n") + 1
            if end:
                self.changed_at = time.monotonic()
            for raw in data[:end].splitlines():
                try:
                    line = json.loads(raw)
                    assert isinstance(line, dict) and line.get("phase") in ("start", "done", "dead")
                    assert isinstance(line.get("route"), str) and isinstance(line.get("body_sha256"), str)
                    assert isinstance(line.get("attempt"), int)
                    line["_key"] = (line["route"].rsplit("/", 1)[-1], line["body_sha256"].lower())
                    line["_replica"] = name
                    self.lines.append(line)
                except (ValueError, AssertionError):
                    self.bad.append(f"{name}: {raw[:200]!r}")
            self.offsets[name] += end
        return self

    def by_key(self):
        out = {}
        for line in self.lines:
            out.setdefault(line["_key"], []).append(line)
        return out

    def done_keys(self):
        return {l["_key"] for l in self.lines if l["phase"] == "done"}

    def running(self, replica, type_=None):
        """Keys (with attempt) that `replica` started and has not finished."""
        open_runs = {}
        for line in self.lines:
            if line["_replica"] != replica or (type_ and line.get("type") != type_):
                continue
            k = (line["_key"], line["attempt"])
            if line["phase"] == "start":
                open_runs[k] = line
            else:
                open_runs.pop(k, None)
        return open_runs


def history(d, by_key):
    lines = [f"{l['phase']}#{l['attempt']}@{l['_replica']}" for l in by_key.get(d.key, [])]
    return f"{d.route} {d.key[1][:12]}: answers [{', '.join(a.short() for a in d.answers)}] log [{' '.join(lines)}]"

"""Helpers shared by the durability checks (crash_check.py, restart_check.py,
shutdown_check.py, slow_clients.py): the demo receiver as a real process.

- `Receiver`: the binary at $RECEIVER_BIN on a free loopback port (and,
  optionally, an admin port), restartable on the same port and work dir;
  started with the caller's environment minus every `WEBHOOK_*` variable,
  plus a high rate limit, plus the check's own settings. Its stderr goes to
  `<workdir>/receiver.log`, its stdout to `<workdir>/receiver.out`.
- `free_port`, `receiver_env`, `rss_bytes`, `processed_runs`: small pieces
  the checks use on their own.
- `run`: a check's `main`: a temp work dir (removed after a clean run, kept
  and named after a failure), SIGTERM turned into exit 143 (so the
  receivers are stopped), the `N passed, N failed` summary as exit status.

Signing, HTTP and the `ok` / `FAIL` lines come from tests/blackbox/bbkit.py
(on PYTHONPATH, as scripts/durability.sh sets it).
"""

import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

import requests

import bbkit

BIN = os.environ["RECEIVER_BIN"]
SMOKE = os.environ.get("SMOKE") == "1"
RATE = "100000"     # default WEBHOOK_RATE_PER_SEC and _BURST: no check here is about rate limits


def free_port():
    """A loopback TCP port that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def receiver_env(extra):
    """The environment for a receiver: ours without any `WEBHOOK_*`, a high
    rate limit, the admin listener off, then `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WEBHOOK_")}
    env.update(WEBHOOK_ADMIN_ADDR="off", WEBHOOK_RATE_PER_SEC=RATE, WEBHOOK_RATE_BURST=RATE)
    env.update(extra)
    return env


def rss_bytes(pid):
    """The resident set size (VmRSS) of process `pid`, in bytes."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def processed_runs(log_path, body):
    """(start lines, done lines) in the processed log for this body."""
    sha = hashlib.sha256(body.encode()).hexdigest()
    starts = dones = 0
    try:
        with open(log_path) as f:
            for raw in f:
                try:
                    line = json.loads(raw)
                except ValueError:
                    continue
                if str(line.get("body_sha256", "")).lower() == sha:
                    starts += line.get("phase") == "start"
                    dones += line.get("phase") == "done"
    except FileNotFoundError:
        pass
    return starts, dones


class Receiver:
    """The receiver binary on fixed ports, restartable on the same work dir."""

    def __init__(self, workdir, env, admin=False):
        self.port = free_port()
        self.admin_port = free_port() if admin else None
        self.base = f"http://127.0.0.1:{self.port}"
        self.workdir = workdir
        self.env = receiver_env({**env, "WEBHOOK_ADDR": f"127.0.0.1:{self.port}",
                                 "WEBHOOK_ADMIN_ADDR": f"127.0.0.1:{self.admin_port}" if admin else "off"})
        self.proc = None
        self.lock = threading.Lock()
        self.stopped = False    # set for good by stop(): no restart after it

    def start(self, timeout=30.0):
        """Starts it and waits for GET /healthz 200; False if it exits or
        does not come up within `timeout` seconds."""
        with self.lock:
            if self.stopped:
                return False
            with open(os.path.join(self.workdir, "receiver.out"), "ab") as out, \
                    open(os.path.join(self.workdir, "receiver.log"), "ab") as err:
                self.proc = subprocess.Popen([BIN], env=self.env, stdout=out, stderr=err,
                                             stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.proc.poll() is None:
            try:
                if requests.get(self.base + "/healthz", timeout=1).status_code == 200:
                    return True
            except requests.RequestException:
                pass
            time.sleep(0.05)
        return False

    def wait(self, timeout):
        """Waits for the exit; the exit code, or None if still running."""
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def signal(self, sig, timeout=30.0):
        """Sends `sig` and waits for the exit; returns the exit code (None: still running)."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(sig)
        return self.wait(timeout)

    def stop(self, final=True):
        """SIGKILL if still running; with `final`, no start() after this."""
        with self.lock:
            self.stopped = self.stopped or final
            if self.proc is not None and self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()

    def log_tail(self, n=5):
        """The last `n` lines of its stderr, on one line."""
        try:
            with open(os.path.join(self.workdir, "receiver.log"), "rb") as f:
                return " | ".join(f.read().decode("utf-8", "replace").splitlines()[-n:])
        except OSError:
            return ""


def run(prefix, *steps, kept_note=""):
    """A check's main: runs each step(workdir) in a fresh temp dir, removes
    it after a clean run (else names it), exits with the summary's status."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    workdir = tempfile.mkdtemp(prefix=prefix)
    finished = False
    try:
        for step in steps:
            step(workdir)
        finished = True
    finally:
        if finished and bbkit.failed == 0:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"     kept for inspection: {workdir}{kept_note}", flush=True)
    sys.exit(bbkit.summary())

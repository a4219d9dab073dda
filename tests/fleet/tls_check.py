"""TLS, credentials and start-up warnings of a receiver on Redis.

Run by scripts/fleet.sh (which builds the receiver with `--features redis`
and exports the secrets bbkit reads); standalone:

    RECEIVER_BIN=target/release/examples/receiver \
      PYTHONPATH=tests/blackbox:tests/durability:tests/fleet \
      <venv>/bin/python tests/fleet/tls_check.py

1. TLS. `openssl` makes a CA, a server certificate it signs (subjectAltName
   IP:127.0.0.1 and DNS:localhost) and a second, unrelated CA. A
   redis-server of our own serves TLS only (`--port 0 --tls-port P`, no
   client certificates), with `--requirepass` and an ACL user `fleet`.
   - Redis not up yet: a receiver with `rediss://:<password>@127.0.0.1:P/0`
     and WEBHOOK_REDIS_CA_FILE = the CA starts, and so does one with the
     other CA; both answer a signed GitHub delivery 503 with Retry-After.
   - Redis up: the first one processes a delivery within 10 s (200
     processed); the one with the other CA still answers 503.
   - Redis reachable at start: a receiver with the CA starts, processes a
     delivery and answers its repeat 200 duplicate (so does the first
     receiver: the store is shared); with the ACL user's URL
     `rediss://fleet:<password>@...` too.
   - A receiver with the other CA, or with no CA file (the platform's
     roots), exits non-zero within 15 s with one line of error on stderr,
     its last line, starting `error:` and naming WEBHOOK_REDIS_URL.
   - Neither password ever appears in any receiver's stdout or stderr.
2. Start-up warnings. Receivers on plain redis-servers started with
   `--appendonly no`, `--maxmemory-policy allkeys-lru` and `volatile-lru`
   print a `warning:` line about append-only persistence (the first) or
   naming `maxmemory-policy` (the others); on `appendonly yes` with
   `noeviction`, neither.
3. Configuration mistakes, each refused at start with one error line
   naming the variable: WEBHOOK_STATE_DIR beside WEBHOOK_REDIS_URL, an
   unknown WEBHOOK_RATE_REDIS_FALLBACK, WEBHOOK_REDIS_CA_FILE without
   WEBHOOK_REDIS_URL, an unreadable CA file, a zero
   WEBHOOK_QUEUE_LEASE_SECS.

One `ok` / `FAIL` line per check, then `N passed, N failed`; exit 1 on any
failure. About 10 s (the same with SMOKE=1).
"""

import os
import signal
import subprocess
import time

import bbkit
from bbkit import check, duplicate, expect, github_body, github_headers, processed, record
from dkit import BIN, free_port, receiver_env, run
from fkit import Redis, low_free_port, new_receiver, output_of, post

PASSWORD = "s3cret-pw"
ACL_USER, ACL_PASSWORD = "fleet", "fleet-pw"
PASSWORDS = (PASSWORD, ACL_PASSWORD)
everything_printed = []     # (who, text) of receivers run with subprocess.run


# --- Certificates -------------------------------------------------------------------------------
def openssl(*args, cwd):
    p = subprocess.run(["openssl", *args], cwd=cwd, stdin=subprocess.DEVNULL, capture_output=True, timeout=60)
    if p.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args[:2])}: {p.stderr.decode('utf-8', 'replace')[-300:]}")


def make_ca(d, name, cn):
    with open(os.path.join(d, f"{name}.cnf"), "w") as f:
        f.write("[req]\ndistinguished_name = dn\nprompt = no\nx509_extensions = v3_ca\n"
                f"[dn]\nCN = {cn}\n"
                "[v3_ca]\nbasicConstraints = critical,CA:TRUE\nkeyUsage = critical,keyCertSign,cRLSign\n"
                "subjectKeyIdentifier = hash\n")
    openssl("req", "-x509", "-new", "-config", f"{name}.cnf", "-newkey", "ec", "-pkeyopt",
            "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.pem",
            "-days", "2", cwd=d)
    return os.path.join(d, f"{name}.pem")


def make_pki(workdir):
    d = os.path.join(workdir, "pki")
    os.makedirs(d)
    ca = make_ca(d, "ca", "webhook-guard fleet check CA")
    other = make_ca(d, "other-ca", "an unrelated CA")
    openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost", cwd=d)
    with open(os.path.join(d, "server.ext"), "w") as f:
        f.write("basicConstraints = critical,CA:FALSE\nkeyUsage = critical,digitalSignature\n"
                "extendedKeyUsage = serverAuth\nsubjectAltName = IP:127.0.0.1,DNS:localhost\n"
                "subjectKeyIdentifier = hash\nauthorityKeyIdentifier = keyid\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-set_serial",
            str(int.from_bytes(os.urandom(8), "big")), "-days", "2", "-extfile", "server.ext",
            "-out", "server.pem", cwd=d)
    return {"ca": ca, "other": other, "cert": os.path.join(d, "server.pem"), "key": os.path.join(d, "server.key")}


# --- Requests -----------------------------------------------------------------------------------
def reason_of(r):
    try:
        doc = r.json()
    except ValueError:
        return None
    return doc.get("reason") if isinstance(doc, dict) else None


def github(rx, body=None):
    """A GitHub delivery (a fresh body unless given) to `rx`: (response, delivery id, body)."""
    body = body or github_body()
    h = github_headers(body)
    return post(rx, "github", body, h), h["X-GitHub-Delivery"], body


def refused_at_start(label, env, names=("WEBHOOK_REDIS_URL",)):
    """Runs the receiver with `env`; records that it exits non-zero within
    15 s with one error line, its last, naming each of `names`."""
    full = receiver_env({"WEBHOOK_ADDR": f"127.0.0.1:{free_port()}", **env})
    t0 = time.monotonic()
    try:
        p = subprocess.run([BIN], env=full, stdin=subprocess.DEVNULL, capture_output=True, timeout=15)
        code, out, err = p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")
    except subprocess.TimeoutExpired as e:
        code, out = None, (e.stdout or b"").decode("utf-8", "replace")
        err = (e.stderr or b"").decode("utf-8", "replace") + "\n(still running after 15 s)"
    took = time.monotonic() - t0
    everything_printed.append((label, out + err))
    lines = [l for l in err.splitlines() if l.strip()]
    errors = [l for l in lines if not l.startswith("warning:")]
    problems = []
    if code in (0, None):
        problems.append(f"exit code {code}")
    if len(errors) != 1:
        problems.append(f"{len(errors)} lines of error output")
    if not lines or not lines[-1].startswith("error:"):
        problems.append("the last stderr line does not start with 'error:'")
    for name in names:
        if not lines or name not in lines[-1]:
            problems.append(f"the last stderr line does not name {name}")
    record(f"{label}: refused at start (exit {code} after {took:.1f} s) with one error line naming "
           f"{' and '.join(names)}", problems, " | ".join(lines[-3:]))


# --- 1. TLS -------------------------------------------------------------------------------------
def tls(workdir):
    try:
        pki = make_pki(workdir)
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as e:
        record("openssl makes a CA, a server certificate and another CA", [str(e)])
        return
    port = low_free_port()
    redis = Redis(workdir, "redis-tls", port=port, tls=pki, options={"requirepass": PASSWORD},
                  extra=["--user", ACL_USER, "on", f">{ACL_PASSWORD}", "~*", "&*", "+@all"])
    url = f"rediss://:{PASSWORD}@127.0.0.1:{port}/0"
    acl_url = f"rediss://{ACL_USER}:{ACL_PASSWORD}@127.0.0.1:{port}/0"
    receivers = []

    def receiver(name, env):
        rx = new_receiver(workdir, name, env)
        receivers.append(rx)
        return rx

    try:
        # Redis not up yet.
        early = receiver("early-ca", {"WEBHOOK_REDIS_URL": url, "WEBHOOK_REDIS_CA_FILE": pki["ca"]})
        early_other = receiver("early-other-ca", {"WEBHOOK_REDIS_URL": url, "WEBHOOK_REDIS_CA_FILE": pki["other"]})
        for rx, what in ((early, "the CA"), (early_other, "the other CA")):
            if expect(f"Redis unreachable at start: a receiver with {what} starts", rx.start(), rx.log_tail()):
                r, _, _ = github(rx)
                check(f"... and answers a signed delivery 503 with Retry-After (reason {reason_of(r)!r})",
                      r, 503, retry_after=True)

        if not expect("redis-server serves TLS only, with the server certificate", redis.start(), redis.log_tail()):
            return
        code, out = redis.cli("PING", user=ACL_USER, password=ACL_PASSWORD)
        expect("redis-cli --tls with the CA and the ACL user: PONG", code == 0 and out == "PONG", out)
        code, out = redis.cli("PING", ca=pki["other"], password=PASSWORD)
        expect("redis-cli --tls with the other CA is refused", out != "PONG", out)

        # The early receivers once Redis is up.
        served, last = None, None
        t_up = time.monotonic()
        while early.proc.poll() is None and time.monotonic() - t_up < 10:
            r, gid, body = github(early)
            last = f"{r.status_code} {r.text[:150]!r}"
            if r.status_code != 503:
                served = (r, gid, body)
                break
            time.sleep(0.3)
        early_body = None
        if served:
            r, gid, early_body = served
            check(f"Redis up: the receiver started with the CA processes a delivery "
                  f"({time.monotonic() - t_up:.1f} s after)", r, 200, body=processed(gid, "issues"))
        else:
            record("Redis up: the receiver started with the CA processes a delivery within 10 s",
                   [f"last answer {last}; {early.log_tail()}"])
        answers = []
        for _ in range(3):
            r, _, _ = github(early_other)
            answers.append(r)
            time.sleep(0.3)
        record("Redis up: the receiver started with the other CA still answers 503 with Retry-After",
               [p for r in answers for p in bbkit.response_problems(r, 503, retry_after=True)][:3],
               answers[-1].text)

        # Reachable at start.
        good = receiver("ca", {"WEBHOOK_REDIS_URL": url, "WEBHOOK_REDIS_CA_FILE": pki["ca"]})
        if expect("Redis reachable: a receiver with rediss://:<password>@ and the CA starts", good.start(),
                  good.log_tail()):
            r, gid, body = github(good)
            check("... processes a GitHub delivery: 200 processed", r, 200, body=processed(gid, "issues"))
            r, gid, _ = github(good, body)
            check("... and answers its repeat 200 duplicate", r, 200, body=duplicate(gid, "issues"))
            if early.proc.poll() is None:
                r, gid, _ = github(early, body)
                check("the receiver started before Redis answers that repeat 200 duplicate too", r, 200,
                      body=duplicate(gid, "issues"))
            if early_body:
                r, gid, _ = github(good, early_body)
                check("... and this one the early receiver's delivery", r, 200, body=duplicate(gid, "issues"))
            acl = receiver("acl-user", {"WEBHOOK_REDIS_URL": acl_url, "WEBHOOK_REDIS_CA_FILE": pki["ca"]})
            if expect(f"a receiver with the ACL user's URL (rediss://{ACL_USER}:<password>@) starts", acl.start(),
                      acl.log_tail()):
                r, gid, acl_body = github(acl)
                check("... processes a GitHub delivery: 200 processed", r, 200, body=processed(gid, "issues"))
                r, gid, _ = github(acl, acl_body)
                check("... answers its repeat 200 duplicate", r, 200, body=duplicate(gid, "issues"))
                r, gid, _ = github(acl, body)
                check("... and the other receiver's delivery 200 duplicate", r, 200, body=duplicate(gid, "issues"))

        refused_at_start("Redis reachable, WEBHOOK_REDIS_CA_FILE = the other CA",
                         {"WEBHOOK_REDIS_URL": url, "WEBHOOK_REDIS_CA_FILE": pki["other"]})
        refused_at_start("Redis reachable, no WEBHOOK_REDIS_CA_FILE (the platform's roots)",
                         {"WEBHOOK_REDIS_URL": url})

        for rx in receivers:
            if rx.proc is not None and rx.proc.poll() is None:
                code = rx.signal(signal.SIGTERM)
                expect(f"{rx.name}: SIGTERM exits 0", code == 0, f"exit code {code}: {rx.log_tail()}")
        leaks = [f"{who} prints {pw!r}" for who, text in
                 [(rx.name, output_of(rx)) for rx in receivers] + everything_printed
                 for pw in PASSWORDS if pw in text]
        record(f"no password appears in the stdout or stderr of any of the {len(receivers) + len(everything_printed)} "
               "receivers", leaks)
    finally:
        for rx in receivers:
            rx.stop()
        redis.stop()


# --- 2. Start-up warnings -----------------------------------------------------------------------
WARNING_CASES = [
    # label, redis-server options, warns about append-only, warns about maxmemory-policy
    ("appendonly yes, maxmemory-policy noeviction", {"maxmemory-policy": "noeviction"}, False, False),
    ("appendonly no", {"appendonly": "no"}, True, False),
    ("maxmemory-policy allkeys-lru", {"maxmemory-policy": "allkeys-lru"}, False, True),
    ("maxmemory-policy volatile-lru", {"maxmemory-policy": "volatile-lru"}, False, True),
]


def scan_warnings(rx):
    """The receiver's `warning:` lines: (about append-only, naming maxmemory-policy, all)."""
    lines = [l for l in output_of(rx).splitlines() if l.startswith("warning:")]
    return [l for l in lines if "append" in l.lower()], [l for l in lines if "maxmemory-policy" in l], lines


def warnings(workdir):
    for i, (label, options, want_aof, want_policy) in enumerate(WARNING_CASES):
        redis = Redis(workdir, f"redis-w{i}", options=options)
        rx = None
        try:
            if not expect(f"redis-server starts ({label})", redis.start(), redis.log_tail()):
                continue
            rx = new_receiver(workdir, f"warn{i}", {"WEBHOOK_REDIS_URL": redis.url()})
            if not expect(f"a receiver starts on Redis with {label}", rx.start(), rx.log_tail()):
                continue
            deadline = time.monotonic() + 3
            while time.monotonic() < deadline:
                aof, policy, lines = scan_warnings(rx)
                if (aof or not want_aof) and (policy or not want_policy):
                    break
                time.sleep(0.1)
            time.sleep(0.5)     # a warning that should not come gets a moment to show up
            aof, policy, lines = scan_warnings(rx)
            want = []
            if want_aof:
                want.append("a warning about append-only persistence")
            if want_policy:
                want.append("a warning naming maxmemory-policy")
            problems = []
            if bool(aof) != want_aof:
                problems.append("no warning about append-only persistence" if want_aof
                                else f"warns about append-only: {aof[0][:160]!r}")
            if bool(policy) != want_policy:
                problems.append("no warning naming maxmemory-policy" if want_policy
                                else f"warns about maxmemory-policy: {policy[0][:160]!r}")
            record(f"Redis with {label}: {' and '.join(want) or 'no warning about persistence or eviction'}",
                   problems, " | ".join(lines))
            code = rx.signal(signal.SIGTERM)
            expect("... SIGTERM exits 0", code == 0, f"exit code {code}: {rx.log_tail()}")
        finally:
            if rx:
                rx.stop()
            redis.stop()


# --- 3. Configuration mistakes ----------------------------------------------------------------
def config_errors(workdir):
    """Fleet variables that cannot work are refused at start, naming the variable."""
    url = "redis://127.0.0.1:1/"     # never reached: each is refused before connecting
    refused_at_start("WEBHOOK_STATE_DIR with WEBHOOK_REDIS_URL",
                     {"WEBHOOK_REDIS_URL": url, "WEBHOOK_STATE_DIR": os.path.join(workdir, "state")},
                     names=("WEBHOOK_STATE_DIR", "WEBHOOK_REDIS_URL"))
    refused_at_start("WEBHOOK_RATE_REDIS_FALLBACK=sometimes",
                     {"WEBHOOK_REDIS_URL": url, "WEBHOOK_RATE_REDIS_FALLBACK": "sometimes"},
                     names=("WEBHOOK_RATE_REDIS_FALLBACK",))
    refused_at_start("WEBHOOK_REDIS_CA_FILE without WEBHOOK_REDIS_URL",
                     {"WEBHOOK_REDIS_CA_FILE": os.path.join(workdir, "ca.pem")},
                     names=("WEBHOOK_REDIS_CA_FILE", "WEBHOOK_REDIS_URL"))
    refused_at_start("an unreadable WEBHOOK_REDIS_CA_FILE",
                     {"WEBHOOK_REDIS_URL": "rediss://127.0.0.1:1/",
                      "WEBHOOK_REDIS_CA_FILE": os.path.join(workdir, "missing.pem")},
                     names=("WEBHOOK_REDIS_CA_FILE",))
    refused_at_start("WEBHOOK_QUEUE_LEASE_SECS=0",
                     {"WEBHOOK_REDIS_URL": url, "WEBHOOK_QUEUE_LEASE_SECS": "0"},
                     names=("WEBHOOK_QUEUE_LEASE_SECS",))


if __name__ == "__main__":
    run("wg-fleet-tls-", tls, warnings, config_errors)

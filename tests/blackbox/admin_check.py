"""Black-box checks of the receiver's admin listener (WEBHOOK_ADMIN_ADDR).

Run by scripts/blackbox.sh:

    admin_check.py serve MAIN ADMIN   # a receiver started with WEBHOOK_ADMIN_ADDR=ADMIN,
                                      # WEBHOOK_RATE_PER_SEC=1 and WEBHOOK_RATE_BURST=2
    admin_check.py startup BINARY     # starts receivers itself: `off`, the default port
                                      # busy, an explicit port busy

`serve`: GET /metrics answers the Prometheus text exposition, with every
route's last-verified gauge at 0 right after start; after one signed and one
tampered GitHub delivery (and one signed Stripe delivery) the request,
rejection, event and secret-match counters have exactly those counts and the
histograms have the receiver's buckets; /healthz and /readyz answer as on the
main listener; any other path is 404; /metrics is not served on the main
listener; the admin listener is not rate limited while the main one is.

`startup`: with `off` nothing listens on the default port; with the default
port busy the receiver logs one WARN line and still serves webhooks; an
explicit port that is busy stops it with one line naming the variable.
(Non-loopback addresses are refused by blackbox.sh's start-up checks.)

Every case prints one `ok` / `FAIL` line; the last line is the count.
"""

import os
import re
import signal
import socket
import subprocess
import sys
import time

import bbkit
from bbkit import check, expect, github_body, github_headers, processed, record, stripe_event, stripe_header, summary

ROUTES = ["stripe", "github", "standard", "slack", "shopify", "meta", "x"]
DEFAULT_ADMIN = ("127.0.0.1", 9464)
CONTENT_TYPE = "text/plain; version=0.0.4"

SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)$")
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse(text):
    """The samples of a text exposition: [(name, labels, value)], and the
    lines that are neither a sample, a comment nor blank."""
    samples, bad = [], []
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        m = SAMPLE.match(line)
        if not m:
            bad.append(line)
            continue
        labels = dict(LABEL.findall(m.group(2) or ""))
        try:
            samples.append((m.group(1), labels, float(m.group(3))))
        except ValueError:
            bad.append(line)
    return samples, bad


def values(samples, name, **labels):
    """The values of the samples of `name` whose labels include `labels`."""
    return [v for n, ls, v in samples if n == name and all(ls.get(k) == w for k, w in labels.items())]


def one(samples, name, **labels):
    """The single value of a series, or None when there is not exactly one."""
    found = values(samples, name, **labels)
    return found[0] if len(found) == 1 else None


def scrape(admin, source=None):
    r = bbkit.get(f"http://{admin}", "/metrics", source=source)
    return r, parse(r.text)[0]


def serve(main, admin):
    base = f"http://{main}"
    started = time.time()

    r, samples = scrape(admin)
    _, bad = parse(r.text)
    record("GET /metrics on the admin listener: 200, text exposition 0.0.4, every line a sample or a comment",
           ([] if r.status_code == 200 else [f"status {r.status_code}"])
           + ([] if r.headers.get("content-type", "").startswith(CONTENT_TYPE)
              else [f"content type {r.headers.get('content-type')!r}"])
           + [f"not a sample: {line!r}" for line in bad[:3]], r.text)
    gauge = "webhook_guard_last_verified_delivery_timestamp_seconds"
    record("right after start, every route's last-verified gauge is 0",
           [f"{route}: {one(samples, gauge, route=route)!r}" for route in ROUTES
            if one(samples, gauge, route=route) != 0.0], r.text)

    for path in ("/healthz", "/readyz"):
        r = bbkit.get(f"http://{admin}", path)
        m = bbkit.get(base, path, source="127.0.0.7")
        record(f"GET {path} on the admin listener answers as on the main listener (200 ok)",
               [p for p in (f"admin {r.status_code} {r.text!r}" if (r.status_code, r.text) != (200, "ok") else None,
                            f"main {m.status_code} {m.text!r}" if (m.status_code, m.text) != (200, "ok") else None)
                if p])
    for method, path in (("GET", "/nope"), ("GET", "/"), ("GET", "/metrics/x"), ("POST", "/webhooks/github")):
        r = bbkit.request(method, f"http://{admin}{path}")
        expect(f"{method} {path} on the admin listener: 404", r.status_code == 404, f"status {r.status_code}")
    r = bbkit.get(base, "/metrics", source="127.0.0.8")
    expect("GET /metrics on the main listener is not served (404 or 405)", r.status_code in (404, 405),
           f"status {r.status_code}: {r.text[:200]}")

    # One signed GitHub delivery, one tampered one, one signed Stripe delivery; one request per
    # source address (the main listener allows a burst of 2 per client).
    body = github_body()
    check("a signed GitHub delivery: 200 processed",
          bbkit.post(base, "github", body, github_headers(body), source="127.0.0.2"), 200)
    tampered = github_headers(body)
    check("a tampered GitHub delivery: 401 signature_mismatch",
          bbkit.post(base, "github", body.replace("opened", "closed"), tampered, source="127.0.0.3"), 401,
          reason="signature_mismatch")
    eid, sbody = stripe_event()
    check("a signed Stripe delivery: 200 processed",
          bbkit.post(base, "stripe", sbody, {"Stripe-Signature": stripe_header(sbody),
                                             "Content-Type": "application/json"}, source="127.0.0.4"),
          200, body=processed(eid, "payment_intent.succeeded"))

    r, samples = scrape(admin)
    gh = {"route": "github", "provider": "github"}
    counts = [
        ("webhook_guard_requests_total", dict(gh, outcome="processed"), 1),
        ("webhook_guard_requests_total", dict(gh, outcome="rejected"), 1),
        ("webhook_guard_rejections_total", dict(gh, reason="signature_mismatch"), 1),
        ("webhook_guard_events_total", dict(gh, event_type="issues", result="processed"), 1),
        ("webhook_guard_secret_matches_total", {"route": "github", "secret": "0"}, 1),
        ("webhook_guard_requests_total", {"route": "stripe", "provider": "stripe", "outcome": "processed"}, 1),
    ]
    for name, labels, want in counts:
        got = one(samples, name, **labels)
        expect(f"{name}{{{', '.join(f'{k}={v!r}' for k, v in labels.items())}}} == {want}", got == want,
               f"got {got!r}")
    expect("no rejection other than the tampered delivery",
           sum(values(samples, "webhook_guard_rejections_total")) == 1,
           f"{[(ls, v) for n, ls, v in samples if n == 'webhook_guard_rejections_total']}")
    now = time.time()
    for route in ("github", "stripe"):
        at = one(samples, gauge, route=route)
        expect(f"{route}'s last-verified gauge is the time of its delivery",
               at is not None and started - 5 <= at <= now + 5, f"got {at!r}, started {started:.0f}")
    expect("slack's last-verified gauge is still 0", one(samples, gauge, route="slack") == 0.0,
           f"got {one(samples, gauge, route='slack')!r}")

    # Histograms with the receiver's buckets (not summaries).
    buckets = [
        ("webhook_guard_request_duration_seconds_bucket", dict(gh, outcome="processed"), ["0.0005", "2.5", "3", "5", "10", "+Inf"]),
        ("webhook_guard_body_size_bytes_bucket", gh, ["256", "4096", "1048576", "+Inf"]),
        ("webhook_guard_timestamp_skew_seconds_bucket", {"route": "stripe", "direction": "past"}, ["1", "300", "600", "+Inf"]),
    ]
    for name, labels, les in buckets:
        problems = []
        for le in les:
            got = one(samples, name, le=le, **labels)
            if got is None:
                problems.append(f"no le={le}")
        total = one(samples, name, le="+Inf", **labels)
        if total is not None and total < 1:
            problems.append(f"+Inf count {total}")
        record(f"{name} has the buckets {les}", problems)
    skew = one(samples, "webhook_guard_timestamp_skew_seconds_bucket", route="stripe", direction="past", le="300")
    expect("the Stripe delivery's skew is within the 300 s bucket", skew == 1.0, f"got {skew!r}")

    # The admin listener is not rate limited; the main one is (burst 2 per client).
    admin_codes = [bbkit.get(f"http://{admin}", "/metrics", source="127.0.0.5").status_code for _ in range(10)]
    main_codes = [bbkit.get(base, "/healthz", source="127.0.0.6").status_code for _ in range(5)]
    expect("10 scrapes in a row from one client: all 200 (no rate limit on the admin listener)",
           admin_codes == [200] * 10, f"{admin_codes}")
    expect("the main listener limits the same pace (a 429 within 5 requests)", 429 in main_codes, f"{main_codes}")


# --- start-up cases: receivers started here ------------------------------------------------------
def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(host, port):
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def env_with(extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("WEBHOOK_")}
    env.update(extra)
    return env


class Started:
    """A receiver process on a free main port, its stdout and stderr kept."""

    def __init__(self, binary, extra):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen([binary], env=env_with({"WEBHOOK_ADDR": f"127.0.0.1:{self.port}", **extra}),
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
        self.out = self.err = ""

    def healthy(self, timeout=30.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.proc.poll() is None:
            try:
                if bbkit.get(self.base, "/healthz", timeout=1).status_code == 200:
                    return True
            except Exception:
                pass
            time.sleep(0.05)
        return False

    def stop(self, timeout=30.0):
        """SIGTERM, then the exit code and the output."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            out, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate()
        self.out, self.err = out.decode("utf-8", "replace"), err.decode("utf-8", "replace")
        return self.proc.returncode

    def error_lines(self):
        return [l for l in self.err.splitlines() if l.strip() and not l.startswith("warning: ")]


def startup(binary):
    # `off`: nothing listens on the default port (checked when it was free before).
    default_was_free = not port_open(*DEFAULT_ADMIN)
    rx = Started(binary, {"WEBHOOK_ADMIN_ADDR": "off"})
    up = rx.healthy()
    still_free = not port_open(*DEFAULT_ADMIN)
    code = rx.stop()
    problems = [] if up else ["did not start"]
    if default_was_free and not still_free:
        problems.append("something listened on 127.0.0.1:9464")
    if "admin listener: off" not in rx.out:
        problems.append("stdout does not say `admin listener: off`")
    if code != 0:
        problems.append(f"exit code {code} after SIGTERM")
    note = "" if default_was_free else " (the default port was busy before: only the output is checked)"
    record(f"WEBHOOK_ADMIN_ADDR=off: serves webhooks, nothing on 127.0.0.1:9464{note}", problems, rx.err[-300:])

    # The default port busy (held here, or by someone else already): one WARN line, webhooks served.
    holder = socket.socket()
    try:
        try:
            holder.bind(DEFAULT_ADMIN)
            holder.listen()
        except OSError:
            pass    # busy already: the case holds all the same
        rx = Started(binary, {})
        up = rx.healthy()
        body = github_body()
        answer = bbkit.post(rx.base, "github", body, github_headers(body)) if up else None
        code = rx.stop()
    finally:
        holder.close()
    warns = [l for l in rx.error_lines() if " WARN " in f" {l} "]
    problems = [] if up else ["did not start"]
    if answer is None or answer.status_code != 200:
        problems.append(f"signed delivery: {answer.status_code if answer is not None else 'not sent'}")
    if len(warns) != 1 or "admin listener off" not in warns[0] or "busy" not in warns[0]:
        problems.append(f"WARN lines: {warns}")
    if code != 0:
        problems.append(f"exit code {code} after SIGTERM")
    record("default admin port busy: one WARN line (admin listener off), webhooks still served", problems,
           rx.err[-300:])

    # An explicit admin port that is busy: refused at start, one line naming the variable.
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        rx = Started(binary, {"WEBHOOK_ADMIN_ADDR": f"127.0.0.1:{port}"})
        try:
            code = rx.proc.wait(15)
        except subprocess.TimeoutExpired:
            code = None
        rx.stop()
    lines = rx.error_lines()
    problems = []
    if code in (0, None):
        problems.append(f"exit code {code}")
    if len(lines) != 1 or "WEBHOOK_ADMIN_ADDR" not in lines[0]:
        problems.append(f"error output: {lines}")
    record("an explicit WEBHOOK_ADMIN_ADDR that is busy: refused at start with one line naming it", problems)


def main(argv):
    if len(argv) == 4 and argv[1] == "serve":
        serve(argv[2], argv[3])
    elif len(argv) == 3 and argv[1] == "startup":
        startup(argv[2])
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return summary()


if __name__ == "__main__":
    sys.exit(main(sys.argv))

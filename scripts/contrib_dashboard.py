#!/usr/bin/env python3
"""Checks contrib/grafana/webhook-guard.json and writes a promtool test file
that runs every dashboard query against recorded series.

Usage: contrib_dashboard.py DASHBOARD METRICS_RS OUT_TEST_FILE

Structure: no `__inputs`, a `datasource` template variable of type
prometheus, every panel and target on `${datasource}`, unique panel ids, a
title, description and unit on every panel, and every `webhook_guard_*` name
in a query one the crate emits (the constants in src/metrics.rs).

Queries: each target's expression, with the template variables replaced by
concrete values, becomes two `promql_expr_test` entries: `(EXPR) * 0`, which
must return exactly the expected label sets (so a typo in a metric or label
name, which returns nothing or other labels, fails), and, where the value
can be computed from the input, `round(1e6 * (EXPR))` with that value.

Input series: derived from the metric table in src/metrics.rs's module docs
(names and label sets exactly as MetricsObserver emits them; histograms as
cumulative `_bucket{le=...}` series plus `_sum` and `_count`, with the
bucket bounds an application would configure on its exporter), plus the
`job` and `instance` labels Prometheus adds. The traffic is one receiver with
a Stripe route (synchronous handler, dedupe, a secret rotation under way,
some failed signatures and one sender with its clock ahead), a GitHub route
behind the fast-acknowledgement queue, and a Shopify route built but not yet
called (its last-verified gauge is 0). Counters grow by a fixed amount a
minute, so every rate is that amount / 60, and each histogram puts all of a
series' observations in one bucket, so every quantile is
lower + q * (upper - lower).
"""
import json
import math
import re
import sys

DASHBOARD, METRICS_RS, OUT = sys.argv[1:4]
SUBST = {
    "${route}": "stripe-payments|github-repos|shopify-orders",
    "$route": "stripe-payments|github-repos|shopify-orders",
    "$__rate_interval": "5m",
}
EVAL = "30m"
MINUTES = 30
JOB = {"job": "webhook-receiver", "instance": "receiver-0:9464"}
LABELS = {"route", "provider", "outcome", "reason", "secret", "event_type", "result", "op",
          "event", "class", "direction", "hint", "job", "instance", "le"}

failures = []


def fail(msg):
    failures.append(msg)
    print(f"  FAIL {msg}")


# ---------------------------------------------------------------- structure
raw = open(DASHBOARD).read()
dash = json.loads(raw)
print(f"dashboard: {DASHBOARD}")
if "__inputs" in raw or "${DS_" in raw:
    fail("dashboard uses __inputs / ${DS_...} (resolved only by the UI import, not by provisioning)")
variables = {v.get("name"): v for v in dash.get("templating", {}).get("list", [])}
ds = variables.get("datasource")
if not ds or ds.get("type") != "datasource" or ds.get("query") != "prometheus":
    fail("no `datasource` template variable of type datasource/prometheus")
if "route" not in variables:
    fail("no `route` template variable")
if dash.get("id") is not None or not dash.get("uid"):
    fail("the dashboard needs a stable uid and id null")
ids = [p.get("id") for p in dash["panels"]]
if len(ids) != len(set(ids)):
    fail(f"panel ids are not unique: {ids}")


def on_variable(obj):
    return isinstance(obj, dict) and obj.get("uid") in ("${datasource}", "$datasource")


metric_names = set(re.findall(r'const [A-Z_]+: &str = "(webhook_guard_[a-z_]+)";', open(METRICS_RS).read()))
if len(metric_names) < 15:
    fail(f"found only {len(metric_names)} metric names in {METRICS_RS}")

targets = []
for panel in dash["panels"]:
    title = panel.get("title", "")
    if not title or not panel.get("description"):
        fail(f"panel {panel.get('id')} lacks a title or description")
    if not panel.get("fieldConfig", {}).get("defaults", {}).get("unit"):
        fail(f"panel {title!r} has no unit")
    if not on_variable(panel.get("datasource")):
        fail(f"panel {title!r}: datasource does not reference the variable")
    for t in panel.get("targets", []):
        if not on_variable(t.get("datasource")):
            fail(f"panel {title!r} target {t.get('refId')}: datasource does not reference the variable")
        expr = t["expr"]
        for name in re.findall(r"webhook_guard_[a-z_]+", expr):
            base = re.sub(r"_(bucket|sum|count)$", "", name)
            if base not in metric_names:
                fail(f"panel {title!r}: {name} is not a metric the crate emits")
        for by in re.findall(r"by \(([^)]*)\)", expr):
            for label in (x.strip() for x in by.split(",")):
                if label not in LABELS:
                    fail(f"panel {title!r}: label {label!r} is not one the crate emits")
        # Matcher names too: a typo in a negative matcher (`outcom!="x"`) matches
        # every series, so only this check catches it.
        for selector in re.findall(r"\{([^}]*)\}", expr):
            for label in re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)\s*"', selector):
                if label not in LABELS:
                    fail(f"panel {title!r}: label {label!r} is not one the crate emits")
        for k, v in SUBST.items():
            expr = expr.replace(k, v)
        if "$" in expr:
            fail(f"panel {title!r}: unsubstituted variable in {expr}")
        targets.append((title, t["refId"], expr))
print(f"  {len(dash['panels'])} panels, {len(targets)} queries, {len(metric_names)} crate metric names")

# ---------------------------------------------------------------- input series
series = []
used = set()


def lab(d):
    return ",".join(f'{k}="{v}"' for k, v in {**JOB, **d}.items())


def counter(name, per_min, **labels):
    used.add(name)
    series.append((f"{name}{{{lab(labels)}}}", f"0+{per_min}x{MINUTES}"))


def gauge(name, values, **labels):
    used.add(name)
    series.append((f"{name}{{{lab(labels)}}}", values))


DURATION = [0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10]
STORE = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1]
SIZE = [256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 33554432]
SKEW = [1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600]


def histogram(name, bounds, upper, per_min, **labels):
    """per_min observations a minute, all in the bucket whose bound is `upper`."""
    used.add(name)
    for b in bounds + [math.inf]:
        n = per_min if b >= upper else 0
        le = "+Inf" if b == math.inf else repr(b).rstrip("0").rstrip(".") if isinstance(b, float) else str(b)
        series.append((f"{name}_bucket{{{lab({**labels, 'le': le})}}}", f"0+{n}x{MINUTES}"))
    lower = max([0] + [b for b in bounds if b < upper])
    series.append((f"{name}_sum{{{lab(labels)}}}", f"0+{per_min * (lower + upper) / 2}x{MINUTES}"))
    series.append((f"{name}_count{{{lab(labels)}}}", f"0+{per_min}x{MINUTES}"))


def quantile(q, bounds, upper):
    lower = max([0] + [b for b in bounds if b < upper])
    return lower + q * (upper - lower)


S = dict(route="stripe-payments", provider="stripe")
G = dict(route="github-repos", provider="github")
for outcome, n in [("processed", 30), ("duplicate", 1), ("rejected", 3)]:
    counter("webhook_guard_requests_total", n, outcome=outcome, **S)
    histogram("webhook_guard_request_duration_seconds", DURATION, 0.05, n, outcome=outcome, **S)
for outcome, n in [("accepted", 12), ("ignored", 2), ("rejected", 2)]:
    counter("webhook_guard_requests_total", n, outcome=outcome, **G)
    histogram("webhook_guard_request_duration_seconds", DURATION, 0.01, n, outcome=outcome, **G)
counter("webhook_guard_rejections_total", 2, reason="signature_mismatch", **S)
counter("webhook_guard_rejections_total", 1, reason="timestamp_out_of_tolerance", **S)
counter("webhook_guard_rejections_total", 1, reason="signature_mismatch", **G)
counter("webhook_guard_rejections_total", 1, reason="rate_limited", **G)
counter("webhook_guard_secret_matches_total", 25, route="stripe-payments", secret="2026-03")
counter("webhook_guard_secret_matches_total", 6, route="stripe-payments", secret="2026-01")
counter("webhook_guard_secret_matches_total", 14, route="github-repos", secret="0")
histogram("webhook_guard_handler_duration_seconds", DURATION, 0.025, 30, **S)
histogram("webhook_guard_handler_duration_seconds", DURATION, 0.01, 12, **G)
histogram("webhook_guard_body_size_bytes", SIZE, 4096, 34, **S)
histogram("webhook_guard_body_size_bytes", SIZE, 16384, 16, **G)
histogram("webhook_guard_timestamp_skew_seconds", SKEW, 5, 31, direction="past", **S)
histogram("webhook_guard_timestamp_skew_seconds", SKEW, 1800, 1, direction="future", **S)
counter("webhook_guard_events_total", 20, event_type="invoice.paid", result="processed", **S)
counter("webhook_guard_events_total", 10, event_type="_other", result="processed", **S)
counter("webhook_guard_events_total", 12, event_type="push", result="accepted", **G)
counter("webhook_guard_events_total", 2, event_type="_other", result="ignored", **G)
LAST = "webhook_guard_last_verified_delivery_timestamp_seconds"
gauge(LAST, f"0+60x{MINUTES}", route="stripe-payments")           # a delivery every minute
gauge(LAST, f"0x5 0+60x{MINUTES - 6}", route="github-repos")       # last one 6 minutes ago
gauge(LAST, f"0x{MINUTES}", route="shopify-orders")                # none since the build
for route, claims, dups, done in [("stripe-payments", 30, 1, 30), ("github-repos", 14, 0, 12)]:
    counter("webhook_guard_dedupe_operations_total", claims, route=route, op="claim", result="acquired")
    if dups:
        counter("webhook_guard_dedupe_operations_total", dups, route=route, op="claim", result="duplicate")
    counter("webhook_guard_dedupe_operations_total", done, route=route, op="complete", result="done")
    histogram("webhook_guard_dedupe_store_duration_seconds", STORE, 0.001, claims + dups, route=route, op="claim")
    histogram("webhook_guard_dedupe_store_duration_seconds", STORE, 0.001, done, route=route, op="complete")
for event, cls, n in [("allowed", "sender", 50), ("allowed", "other", 4), ("limited", "other", 1),
                      ("failed_authentication", "other", 4), ("refunded", "sender", 45)]:
    counter("webhook_guard_rate_limit_events_total", n, event=event, **{"class": cls})
gauge("webhook_guard_rate_limit_tracked_clients", f"37x{MINUTES}")
gauge("webhook_guard_rate_limit_shared_fallback", f"0x{MINUTES}")
gauge("webhook_guard_queue_depth", f"3x{MINUTES}")
gauge("webhook_guard_queue_capacity", f"1024x{MINUTES}")
for event, n in [("enqueued", 12), ("done", 11), ("retried", 1)]:
    counter("webhook_guard_queue_events_total", n, provider="github", event=event)
histogram("webhook_guard_queue_store_duration_seconds", STORE, 0.0025, 12, provider="github")
histogram("webhook_guard_queue_wait_seconds", DURATION, 2.5, 12, provider="github")
histogram("webhook_guard_queue_run_duration_seconds", DURATION, 0.25, 12, provider="github")
counter("webhook_guard_verification_hints_total", 1, route="stripe-payments", hint="secret_quoted")
counter("webhook_guard_verification_hints_total", 3, route="github-repos", hint="body_line_endings_changed")

missing = metric_names - used
if missing:
    fail(f"input series miss crate metrics: {sorted(missing)}")

# ---------------------------------------------------------------- expectations
r = lambda n: n / 60  # noqa: E731  a counter growing n a minute
sp, gh = "stripe-payments", "github-repos"
E = {
    ("Requests by outcome", "A"): [({"route": sp, "outcome": "processed"}, r(30)), ({"route": sp, "outcome": "duplicate"}, r(1)),
                                   ({"route": sp, "outcome": "rejected"}, r(3)), ({"route": gh, "outcome": "accepted"}, r(12)),
                                   ({"route": gh, "outcome": "ignored"}, r(2)), ({"route": gh, "outcome": "rejected"}, r(2))],
    ("Rejections by reason", "A"): [({"route": sp, "reason": "signature_mismatch"}, r(2)),
                                    ({"route": sp, "reason": "timestamp_out_of_tolerance"}, r(1)),
                                    ({"route": gh, "reason": "signature_mismatch"}, r(1)), ({"route": gh, "reason": "rate_limited"}, r(1))],
    ("Verification success ratio", "A"): [({"route": sp}, 31 / 34), ({"route": gh}, 14 / 16)],
    ("Secret matches by label (rotation)", "A"): [({"route": sp, "secret": "2026-03"}, r(25)), ({"route": sp, "secret": "2026-01"}, r(6)),
                                                  ({"route": gh, "secret": "0"}, r(14))],
    ("Time since last verified delivery", "A"): [({"route": sp}, 0), ({"route": gh}, 360)],
    ("Routes without a verified delivery since start", "A"): [({"route": "shopify-orders"}, 1)],
    ("Dedupe operations", "A"): [({"route": sp, "op": "claim", "result": "acquired"}, r(30)),
                                 ({"route": sp, "op": "claim", "result": "duplicate"}, r(1)),
                                 ({"route": sp, "op": "complete", "result": "done"}, r(30)),
                                 ({"route": gh, "op": "claim", "result": "acquired"}, r(14)),
                                 ({"route": gh, "op": "complete", "result": "done"}, r(12))],
    ("Rate limiter decisions", "A"): [({"event": "allowed", "class": "sender"}, r(50)), ({"event": "allowed", "class": "other"}, r(4)),
                                      ({"event": "limited", "class": "other"}, r(1)),
                                      ({"event": "failed_authentication", "class": "other"}, r(4)),
                                      ({"event": "refunded", "class": "sender"}, r(45))],
    ("Rate limiter tracked clients", "A"): [({"instance": JOB["instance"]}, 37)],
    ("Queue depth and capacity", "A"): [({"instance": JOB["instance"]}, 3)],
    ("Queue depth and capacity", "B"): [({"instance": JOB["instance"]}, 1024)],
    ("Queue events", "A"): [({"provider": "github", "event": "enqueued"}, r(12)), ({"provider": "github", "event": "done"}, r(11)),
                            ({"provider": "github", "event": "retried"}, r(1))],
    ("Verification hints by code", "A"): [({"route": sp, "hint": "secret_quoted"}, r(1)),
                                          ({"route": gh, "hint": "body_line_endings_changed"}, r(3))],
    ("Events by type", "A"): [({"route": sp, "event_type": "invoice.paid", "result": "processed"}, r(20)),
                              ({"route": sp, "event_type": "_other", "result": "processed"}, r(10)),
                              ({"route": gh, "event_type": "push", "result": "accepted"}, r(12)),
                              ({"route": gh, "event_type": "_other", "result": "ignored"}, r(2))],
}
for ref, qq in (("A", 0.5), ("B", 0.99)):
    E[("Request duration p50 / p99", ref)] = [({"route": sp}, quantile(qq, DURATION, 0.05)), ({"route": gh}, quantile(qq, DURATION, 0.01))]
    E[("Handler duration p50 / p99", ref)] = [({"route": sp}, quantile(qq, DURATION, 0.025)), ({"route": gh}, quantile(qq, DURATION, 0.01))]
    E[("Body size p50 / p99", ref)] = [({"route": sp}, quantile(qq, SIZE, 4096)), ({"route": gh}, quantile(qq, SIZE, 16384))]
    E[("Timestamp skew p50 / p99", ref)] = [({"route": sp, "direction": "past"}, quantile(qq, SKEW, 5)),
                                            ({"route": sp, "direction": "future"}, quantile(qq, SKEW, 1800))]
    E[("Dedupe store latency p50 / p99", ref)] = [({"op": "claim"}, quantile(qq, STORE, 0.001)), ({"op": "complete"}, quantile(qq, STORE, 0.001))]
    E[("Queue wait p50 / p99", ref)] = [({"provider": "github"}, quantile(qq, DURATION, 2.5))]
    E[("Queue run and store time p50 / p99", ref)] = [({"provider": "github"}, quantile(qq, DURATION, 0.25))]
E[("Queue run and store time p50 / p99", "C")] = [({"provider": "github"}, quantile(0.99, STORE, 0.0025))]

tests = []
for title, ref, expr in targets:
    exp = E.get((title, ref))
    if exp is None:
        fail(f"no expectation for panel {title!r} target {ref}")
        continue
    labels = lambda d: "{" + ",".join(f'{k}="{v}"' for k, v in d.items()) + "}"  # noqa: E731
    tests.append({"expr": f"({expr}) * 0", "eval_time": EVAL,
                  "exp_samples": [{"labels": labels(d), "value": 0} for d, _ in exp]})
    tests.append({"expr": f"round(1000000 * ({expr}))", "eval_time": EVAL,
                  "exp_samples": [{"labels": labels(d), "value": math.floor(1e6 * v + 0.5)} for d, v in exp]})
    print(f"  query {title} / {ref}: {len(exp)} series expected")
unused = set(E) - {(t, r_) for t, r_, _ in targets}
if unused:
    fail(f"expectations for queries the dashboard no longer has: {sorted(unused)}")

doc = {"rule_files": [], "evaluation_interval": "1m", "tests": [{
    "name": "every dashboard query over the crate's series", "interval": "1m",
    "input_series": [{"series": s, "values": v} for s, v in series],
    "promql_expr_test": tests}]}
with open(OUT, "w") as f:
    json.dump(doc, f, indent=1)  # JSON is YAML
print(f"  {len(series)} input series, {len(tests)} promql_expr_test entries -> {OUT}")
if failures:
    print(f"dashboard structure: {len(failures)} problem(s)")
    sys.exit(1)

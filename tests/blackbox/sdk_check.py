"""Black-box check of the demo receiver, signing with the providers' own SDKs.

Run by scripts/blackbox.sh, which builds and starts the receiver with the
secrets below. Every case prints one line; the last line is the count.

Every route dedupes verified deliveries, so each case that expects
`processed` sends a fresh delivery (fresh id, fresh body); the dedupe
section at the end checks replays, retries and concurrent deliveries.
"""

import concurrent.futures
import datetime
import json
import os
import sys
import threading
import time
import uuid

import requests
import standardwebhooks
import svix.webhooks

from bbkit import (GITHUB, SHOPIFY, SLACK, STANDARD, STRIPE, check, duplicate, gh, github_body,
                   github_headers, now, processed, shop, shopify_headers, slack_headers,
                   standard_delivery, stripe_event, stripe_header, summary)
import bbkit

BASE = "http://" + os.environ["WEBHOOK_ADDR"]
MAX_BODY = int(os.environ["WEBHOOK_MAX_BODY_BYTES"])


def post(route, body, headers, source=None):
    return bbkit.post(BASE, route, body, headers, source=source)


# --- Stripe, signed by stripe-python -----------------------------------------------------------
eid, body = stripe_event()
r = post("stripe", body, {"Stripe-Signature": stripe_header(body)})
check("stripe: valid", r, 200, body=processed(eid, "payment_intent.succeeded"))
eid, body = stripe_event()
r = post("stripe", body, {"Stripe-Signature": stripe_header(body, secret=STRIPE[1])})
check("stripe: second secret (rotation)", r, 200, body=processed(eid, "payment_intent.succeeded"))
eid, body = stripe_event()
h = stripe_header(body, secret="whsec_wrong")
good = stripe_header(body).split(",v1=")[1]
r = post("stripe", body, {"Stripe-Signature": f"{h},v1={good}"})
check("stripe: two v1, one matching", r, 200, body=processed(eid, "payment_intent.succeeded"))
r = post("stripe", body, {"Stripe-Signature": stripe_header(body, ts=now() - 400)})
check("stripe: 400 s old", r, 401, "timestamp_out_of_tolerance")
r = post("stripe", body, {"Stripe-Signature": stripe_header(body, ts=now() + 400)})
check("stripe: 400 s ahead", r, 401, "timestamp_out_of_tolerance")
r = post("stripe", body + " ", {"Stripe-Signature": stripe_header(body)})
check("stripe: tampered body", r, 401, "signature_mismatch")
r = post("stripe", body, {"Stripe-Signature": stripe_header(body).replace("v1=", "v0=")})
check("stripe: v0 only", r, 401, "malformed_signature")
r = post("stripe", body, {})
check("stripe: no header", r, 401, "missing_signature")
r = post("stripe", "not json", {"Stripe-Signature": stripe_header("not json")})
check("stripe: verified, not JSON", r, 400, "invalid_json")
eid, body = stripe_event("test.handler_error")
r = post("stripe", body, {"Stripe-Signature": stripe_header(body)})
check("stripe: handler error", r, 500)
r = post("stripe", body, {"Stripe-Signature": stripe_header(body)})
check("stripe: handler error retried", r, 500)

# --- Standard Webhooks, signed by standardwebhooks and by svix ---------------------------------
for lib, prefix in ((standardwebhooks.Webhook, "webhook"), (svix.webhooks.Webhook, "svix")):
    name = lib.__module__.split(".")[0]

    def delivery(secrets=(STANDARD[0],)):
        """A fresh delivery signed under each of `secrets`: (id, body, ts, [sig…], headers)."""
        msg_id = "msg_" + uuid.uuid4().hex
        body = json.dumps({"type": "invoice.paid", "timestamp": "2026-11-23T10:00:00Z",
                           "data": {"n": 1, "nonce": uuid.uuid4().hex}})
        ts = datetime.datetime.now(tz=datetime.timezone.utc)
        sigs = [lib(secret).sign(msg_id, ts, body) for secret in secrets]
        headers = {f"{prefix}-id": msg_id, f"{prefix}-timestamp": str(int(ts.timestamp())),
                   f"{prefix}-signature": sigs[0]}
        return msg_id, body, ts, sigs, headers

    msg_id, body, ts, (sig,), headers = delivery()
    r = post("standard", body, headers)
    check(f"standard ({name}): valid", r, 200, body=processed(msg_id, "invoice.paid"))
    id2, body2, _, _, headers2 = delivery((STANDARD[1],))
    r = post("standard", body2, headers2)
    check(f"standard ({name}): second secret", r, 200, body=processed(id2, "invoice.paid"))
    id3, body3, _, (sig3a, sig3b), headers3 = delivery((STANDARD[0], STANDARD[1]))
    r = post("standard", body3, {**headers3, f"{prefix}-signature": f"v1a,{sig3a.split(',')[1]} {sig3b}"})
    check(f"standard ({name}): list with v1a", r, 200, body=processed(id3, "invoice.paid"))
    old = ts - datetime.timedelta(seconds=400)
    r = post("standard", body, {**headers, f"{prefix}-timestamp": str(int(old.timestamp())),
                                f"{prefix}-signature": lib(STANDARD[0]).sign(msg_id, old, body)})
    check(f"standard ({name}): 400 s old", r, 401, "timestamp_out_of_tolerance")
    r = post("standard", body, {k: v for k, v in headers.items() if not k.endswith("-id")})
    check(f"standard ({name}): no id", r, 401)
    r = post("standard", body, {**headers, f"{prefix}-id": msg_id + "x"})
    check(f"standard ({name}): other id", r, 401, "signature_mismatch")

# --- Slack, signed by slack_sdk ---------------------------------------------------------------
def slash_form():
    """A fresh slash-command form body (its dedupe key is the body's SHA-256)."""
    return ("token=x&team_id=T1&command=%2Fweather&text=94070&response_url=https%3A%2F%2Fhooks.slack.com%2Fx"
            f"&trigger_id={uuid.uuid4().hex}")


def interactive_form():
    """A fresh interactivity form body."""
    return f"payload=%7B%22type%22%3A%22block_actions%22%2C%22trigger_id%22%3A%22{uuid.uuid4().hex}%22%7D"


FORM = {"Content-Type": "application/x-www-form-urlencoded"}
ev = "Ev" + uuid.uuid4().hex[:10]
body = json.dumps({"type": "event_callback", "event_id": ev, "event": {"type": "app_mention"}})
r = post("slack", body, {**slack_headers(body), "Content-Type": "application/json"})
check("slack: event", r, 200, body=processed(ev, "event_callback"))
body = json.dumps({"type": "url_verification", "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P", "token": "t"})
r = post("slack", body, {**slack_headers(body), "Content-Type": "application/json"})
check("slack: url_verification", r, 200, body={"challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"})
form = slash_form()
r = post("slack", form, {**slack_headers(form), **FORM})
check("slack: slash command (form)", r, 200, body=processed(None, "/weather"))
form = interactive_form()
r = post("slack", form, {**slack_headers(form), **FORM})
check("slack: interactivity (form)", r, 200, body=processed(None, "interactive"))
form2 = interactive_form()
r = post("slack", form2, {**slack_headers(form2, secret=SLACK[1]), **FORM})
check("slack: second secret", r, 200, body=processed(None, "interactive"))
r = post("slack", form, {**slack_headers(form, ts=now() - 301), **FORM})
check("slack: 301 s old", r, 401, "timestamp_out_of_tolerance")
h = slack_headers(form)
h["X-Slack-Request-Timestamp"] = "+" + h["X-Slack-Request-Timestamp"]
r = post("slack", form, h)
check("slack: +timestamp", r, 401, "malformed_timestamp")

# --- GitHub, signed as GitHub's docs show (hmac over the body) ---------------------------------
delivery = str(uuid.uuid4())
body = github_body()
base = {"X-GitHub-Event": "issues", "X-GitHub-Delivery": delivery, "Content-Type": "application/json"}
r = post("github", body, {**base, "X-Hub-Signature-256": gh(body)})
check("github: valid", r, 200, body=processed(delivery, "issues"))
delivery2, body2 = str(uuid.uuid4()), github_body()
r = post("github", body2, {**base, "X-GitHub-Delivery": delivery2, "X-Hub-Signature-256": gh(body2, GITHUB[1])})
check("github: second secret", r, 200, body=processed(delivery2, "issues"))
sha1 = "sha1=" + bbkit.hmac.new(GITHUB[0].encode(), body.encode(), bbkit.hashlib.sha1).hexdigest()
r = post("github", body, {**base, "X-Hub-Signature": sha1})
check("github: SHA-1 only", r, 401, "missing_signature")
r = post("github", body, {**base, "X-Hub-Signature-256": "sha256="})
check("github: empty signature", r, 401, "malformed_signature")
r = post("github", body, {**base, "X-Hub-Signature-256": gh(body)[:40]})
check("github: truncated signature", r, 401, "malformed_signature")
r = requests.get(f"{BASE}/webhooks/github", timeout=10)
check("github: GET", r, 405)
r = post("github", body, {**base, "X-Hub-Signature-256": gh(body), "Content-Encoding": "gzip"})
check("github: gzip", r, 415)
big = "x" * (MAX_BODY + 1)
r = post("github", big, {**base, "X-Hub-Signature-256": gh(big)})
check("github: over the limit", r, 413)
r = requests.post(f"{BASE}/webhooks/github", data=(c for c in [big[:MAX_BODY // 2], big[MAX_BODY // 2:]]),
                  headers={**base, "X-Hub-Signature-256": gh(big)}, timeout=10)
check("github: over the limit, chunked", r, 413)
exact = "x" * MAX_BODY
r = post("github", exact, {**base, "X-Hub-Signature-256": gh(exact)})
check("github: at the limit, verified, not JSON", r, 400, "invalid_json")
binary = b"\xff\xfe\x00garbage"
r = post("github", binary, {**base, "X-Hub-Signature-256": gh(binary)})
check("github: non-UTF-8 body verifies, then is not JSON", r, 400, "invalid_json")

# --- Shopify, signed as Shopify's docs show (base64 hmac over the body) ------------------------
def shopify_body():
    return json.dumps({"id": 820982911946154508, "email": "jon@example.com", "note": uuid.uuid4().hex})


wid = str(uuid.uuid4())
body = shopify_body()
base = {"X-Shopify-Topic": "orders/create", "X-Shopify-Webhook-Id": wid, "Content-Type": "application/json"}
r = post("shopify", body, {**base, "X-Shopify-Hmac-Sha256": shop(body)})
check("shopify: valid", r, 200, body=processed(wid, "orders/create"))
wid2, body2 = str(uuid.uuid4()), shopify_body()
r = post("shopify", body2, {**base, "X-Shopify-Webhook-Id": wid2, "Shopify-Hmac-Sha256": shop(body2, SHOPIFY[1])})
check("shopify: new header name, second secret", r, 200, body=processed(wid2, "orders/create"))
r = post("shopify", body, {**base, "X-Shopify-Hmac-Sha256": shop(body).rstrip("=")})
check("shopify: unpadded base64", r, 401, "malformed_signature")

r = requests.get(f"{BASE}/healthz", timeout=10)
check("healthz", r, 200)

# --- Dedupe: replays, retries, concurrent deliveries ------------------------------------------
# From their own loopback address, so the cases above and below do not share
# a failed-authentication quota (20 a minute per client IP).
SRC = "127.0.0.5"


def send(route, body, headers):
    return post(route, body, headers, source=SRC)


def twice(name, route, body, headers, id_, type_):
    """The same delivery twice: processed, then duplicate (same id and type)."""
    r = send(route, body, headers)
    check(f"dedupe {name}: first delivery processed", r, 200, body=processed(id_, type_))
    r = send(route, body, headers)
    check(f"dedupe {name}: same delivery again is a duplicate", r, 200, body=duplicate(id_, type_))


# Each route: processed, then duplicate.
eid, body = stripe_event()
twice("stripe", "stripe", body, {"Stripe-Signature": stripe_header(body)}, eid, "payment_intent.succeeded")
# Stripe's retry is re-signed (new timestamp, here also the other secret): still the same event id.
r = send("stripe", body, {"Stripe-Signature": stripe_header(body, secret=STRIPE[1], ts=now() - 5)})
check("dedupe stripe: retry re-signed with another timestamp and secret is a duplicate", r, 200,
      body=duplicate(eid, "payment_intent.succeeded"))
msg_id, body, headers = standard_delivery()
twice("standard", "standard", body, headers, msg_id, "invoice.paid")
ev = "Ev" + uuid.uuid4().hex[:10]
body = json.dumps({"type": "event_callback", "event_id": ev, "event": {"type": "app_mention", "text": "hi"}})
twice("slack", "slack", body, {**slack_headers(body), "Content-Type": "application/json"}, ev, "event_callback")
gh_body = github_body()
gh_headers = github_headers(gh_body)
twice("github", "github", gh_body, gh_headers, gh_headers["X-GitHub-Delivery"], "issues")
shop_body = shopify_body()
shop_hdrs = shopify_headers(shop_body)
twice("shopify", "shopify", shop_body, shop_hdrs, shop_hdrs["X-Shopify-Webhook-Id"], "orders/create")
form = slash_form()
twice("slack form (body hash)", "slack", form, {**slack_headers(form), **FORM}, None, "/weather")

# GitHub and Shopify do not sign their id headers: the key is the body's hash.
fresh = str(uuid.uuid4())
r = send("github", gh_body, {**gh_headers, "X-GitHub-Delivery": fresh})
check("dedupe github: same body under a fresh X-GitHub-Delivery is a duplicate", r, 200,
      body=duplicate(fresh, "issues"))
fresh = str(uuid.uuid4())
r = send("shopify", shop_body, {**shop_hdrs, "X-Shopify-Webhook-Id": fresh})
check("dedupe shopify: same body under a fresh X-Shopify-Webhook-Id is a duplicate", r, 200,
      body=duplicate(fresh, "orders/create"))

# Keys are namespaced per route: the same bytes, each correctly signed, on three body-hash routes.
same = json.dumps({"type": "shared.bytes", "nonce": uuid.uuid4().hex})
h_gh = github_headers(same, event="push")
r = send("github", same, h_gh)
check("dedupe namespaced: body first seen on github is processed", r, 200,
      body=processed(h_gh["X-GitHub-Delivery"], "push"))
h_shop = shopify_headers(same, topic="orders/paid")
r = send("shopify", same, h_shop)
check("dedupe namespaced: same bytes on shopify are processed, not a duplicate", r, 200,
      body=processed(h_shop["X-Shopify-Webhook-Id"], "orders/paid"))
r = send("slack", same, {**slack_headers(same), "Content-Type": "application/json"})
check("dedupe namespaced: same bytes on slack are processed, not a duplicate", r, 200,
      body=processed(None, "shared.bytes"))
# Stripe event id and Standard webhook-id share a value: still two routes.
shared_id = "evt_" + uuid.uuid4().hex
eid, body = stripe_event(eid=shared_id)
r = send("stripe", body, {"Stripe-Signature": stripe_header(body)})
check("dedupe namespaced: id first seen on stripe is processed", r, 200,
      body=processed(shared_id, "payment_intent.succeeded"))
msg_id, body, headers = standard_delivery(msg_id=shared_id)
r = send("standard", body, headers)
check("dedupe namespaced: same id on standard is processed, not a duplicate", r, 200,
      body=processed(shared_id, "invoice.paid"))

# A forged request carrying a real id, sent before the real one, must not block it.
msg_id, body, headers = standard_delivery()
_, forged_body, forged = standard_delivery(msg_id=msg_id, secret="whsec_" + bbkit.base64.b64encode(b"not the secret, 32 bytes long!!!").decode())
r = send("standard", forged_body, forged)
check("dedupe standard: forged request with a real webhook-id is refused", r, 401, "signature_mismatch")
r = send("standard", body, headers)
check("dedupe standard: the real delivery after the forged one is processed", r, 200,
      body=processed(msg_id, "invoice.paid"))
gh_body = github_body()
gh_headers = github_headers(gh_body)
r = send("github", gh_body, {**gh_headers, "X-Hub-Signature-256": gh(gh_body, "not-the-secret")})
check("dedupe github: forged copy of a real body is refused", r, 401, "signature_mismatch")
r = send("github", gh_body, gh_headers)
check("dedupe github: the real delivery after the forged copy is processed", r, 200,
      body=processed(gh_headers["X-GitHub-Delivery"], "issues"))

# A failed handler releases the claim: the retry of the same id is processed.
msg_id, body, headers = standard_delivery("test.handler_error")
r = send("standard", body, headers)
check("dedupe standard: handler error is 500", r, 500, "handler_error")
r = send("standard", body, headers)
check("dedupe standard: failing delivery retried fails again (not a duplicate)", r, 500, "handler_error")
msg_id, body, headers = standard_delivery("invoice.paid", msg_id=msg_id)
r = send("standard", body, headers)
check("dedupe standard: same webhook-id after the 500 is processed", r, 200, body=processed(msg_id, "invoice.paid"))
r = send("standard", body, headers)
check("dedupe standard: ... and then a duplicate", r, 200, body=duplicate(msg_id, "invoice.paid"))


# Two identical slow deliveries at once: one is processed, the other is 409 in progress.
def at_once(route, body, headers, n=2, source=SRC):
    """Sends n identical requests at the same moment; returns [(response, seconds)]."""
    barrier = threading.Barrier(n)

    def one(_):
        barrier.wait()
        start = time.monotonic()
        r = post(route, body, headers, source=source)
        return r, time.monotonic() - start

    with concurrent.futures.ThreadPoolExecutor(n) as pool:
        return list(pool.map(one, range(n)))


for route, (key, body, headers) in (
        ("standard", standard_delivery("test.slow_handler")),
        ("stripe", (lambda e: (e[0], e[1], {"Stripe-Signature": stripe_header(e[1])}))(stripe_event("test.slow_handler")))):
    results = at_once(route, body, headers)
    ok = sorted(results, key=lambda rt: rt[0].status_code)
    (first, t_first), (second, t_second) = ok
    check(f"dedupe {route}: concurrent slow deliveries, one processed", first, 200,
          body=processed(key, "test.slow_handler"))
    check(f"dedupe {route}: concurrent slow deliveries, the other 409 in_progress with Retry-After",
          second, 409, "in_progress", retry_after=True)
    bbkit.expect(f"dedupe {route}: the 409 comes back while the first is still running",
                 t_second < 1.5, f"409 took {t_second:.2f} s (the handler takes 2 s)")
    r = send(route, body, headers)
    check(f"dedupe {route}: retry after the first finished is a duplicate", r, 200,
          body=duplicate(key, "test.slow_handler"))

# Slack: the key is event_id, so a different (correctly signed) body with the same event_id is a duplicate.
ev = "Ev" + uuid.uuid4().hex[:10]
b1 = json.dumps({"type": "event_callback", "event_id": ev, "event": {"type": "message", "text": "first"}})
b2 = json.dumps({"type": "event_callback", "event_id": ev, "event": {"type": "message", "text": "second"}})
r = send("slack", b1, {**slack_headers(b1), "Content-Type": "application/json"})
check("dedupe slack: event_id first seen is processed", r, 200, body=processed(ev, "event_callback"))
r = send("slack", b2, {**slack_headers(b2, secret=SLACK[1]), "Content-Type": "application/json"})
check("dedupe slack: same event_id, different body, is a duplicate", r, 200, body=duplicate(ev, "event_callback"))

sys.exit(summary())

"""Black-box check of the demo receiver, signing with the providers' own SDKs.

Run by scripts/blackbox.sh, which builds and starts the receiver with the
secrets below. Every case prints one line; the last line is the count.
"""

import base64
import datetime
import hashlib
import hmac
import json
import os
import sys
import time
import uuid

import requests
import slack_sdk.signature
import standardwebhooks
import stripe
import svix.webhooks

BASE = "http://" + os.environ["WEBHOOK_ADDR"]
STRIPE = os.environ["STRIPE_WEBHOOK_SECRET"].split(",")
GITHUB = os.environ["GITHUB_WEBHOOK_SECRET"].split(",")
STANDARD = os.environ["STANDARD_WEBHOOK_SECRET"].split(",")
SLACK = os.environ["SLACK_SIGNING_SECRET"].split(",")
SHOPIFY = os.environ["SHOPIFY_WEBHOOK_SECRET"].split(",")
MAX_BODY = int(os.environ["WEBHOOK_MAX_BODY_BYTES"])

passed = 0
failed = 0


def check(name, response, status, reason=None, body=None):
    global passed, failed
    problems = []
    if response.status_code != status:
        problems.append(f"status {response.status_code} != {status}")
    doc = None
    try:
        doc = response.json()
    except ValueError:
        pass
    if status >= 400 and response.status_code == status and status not in (404,):
        if not response.headers.get("content-type", "").startswith("application/problem+json"):
            problems.append("not problem+json")
        for field in ("type", "title", "status", "detail"):
            if not isinstance(doc, dict) or field not in doc:
                problems.append(f"no {field}")
    if reason is not None and (not isinstance(doc, dict) or doc.get("reason") != reason):
        problems.append(f"reason {doc.get('reason') if isinstance(doc, dict) else None!r} != {reason!r}")
    if body is not None and doc != body:
        problems.append(f"body {doc!r} != {body!r}")
    for secret in STRIPE + GITHUB + STANDARD + SLACK + SHOPIFY:
        if secret in response.text:
            problems.append("a secret is in the response")
    if problems:
        failed += 1
        print(f"FAIL {name}: {'; '.join(problems)} :: {response.text[:300]}")
    else:
        passed += 1
        print(f"ok   {name}")


def post(route, body, headers):
    if isinstance(body, str):
        body = body.encode()
    return requests.post(f"{BASE}/webhooks/{route}", data=body, headers=headers, timeout=10)


def now():
    return int(time.time())


# --- Stripe, signed by stripe-python -----------------------------------------------------------
def stripe_event(event_type="payment_intent.succeeded"):
    eid = "evt_" + uuid.uuid4().hex
    body = json.dumps({"id": eid, "object": "event", "type": event_type, "created": now(),
                       "data": {"object": {"id": "pi_1", "object": "payment_intent"}}})
    return eid, body


def stripe_header(body, secret=None, ts=None):
    return stripe.WebhookSignature.generate_signature_header(body, secret or STRIPE[0], timestamp=ts or now())


eid, body = stripe_event()
r = post("stripe", body, {"Stripe-Signature": stripe_header(body)})
check("stripe: valid", r, 200, body={"status": "processed", "id": eid, "type": "payment_intent.succeeded"})
eid, body = stripe_event()
r = post("stripe", body, {"Stripe-Signature": stripe_header(body, secret=STRIPE[1])})
check("stripe: second secret (rotation)", r, 200, body={"status": "processed", "id": eid, "type": "payment_intent.succeeded"})
eid, body = stripe_event()
h = stripe_header(body, secret="whsec_wrong")
good = stripe_header(body).split(",v1=")[1]
r = post("stripe", body, {"Stripe-Signature": f"{h},v1={good}"})
check("stripe: two v1, one matching", r, 200)
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
check("stripe: verified, not JSON", r, 400)
eid, body = stripe_event("test.handler_error")
r = post("stripe", body, {"Stripe-Signature": stripe_header(body)})
check("stripe: handler error", r, 500)
r = post("stripe", body, {"Stripe-Signature": stripe_header(body)})
check("stripe: handler error retried", r, 500)

# --- Standard Webhooks, signed by standardwebhooks and by svix ---------------------------------
for lib, prefix in ((standardwebhooks.Webhook, "webhook"), (svix.webhooks.Webhook, "svix")):
    name = lib.__module__.split(".")[0]
    msg_id = "msg_" + uuid.uuid4().hex
    body = json.dumps({"type": "invoice.paid", "timestamp": "2026-11-23T10:00:00Z", "data": {"n": 1}})
    ts = datetime.datetime.now(tz=datetime.timezone.utc)
    sig = lib(STANDARD[0]).sign(msg_id, ts, body)
    headers = {f"{prefix}-id": msg_id, f"{prefix}-timestamp": str(int(ts.timestamp())), f"{prefix}-signature": sig}
    r = post("standard", body, headers)
    check(f"standard ({name}): valid", r, 200, body={"status": "processed", "id": msg_id, "type": "invoice.paid"})
    sig2 = lib(STANDARD[1]).sign(msg_id, ts, body)
    r = post("standard", body, {**headers, f"{prefix}-signature": sig2})
    check(f"standard ({name}): second secret", r, 200)
    r = post("standard", body, {**headers, f"{prefix}-signature": f"v1a,{sig.split(',')[1]} {sig2}"})
    check(f"standard ({name}): list with v1a", r, 200)
    old = ts - datetime.timedelta(seconds=400)
    r = post("standard", body, {**headers, f"{prefix}-timestamp": str(int(old.timestamp())),
                                f"{prefix}-signature": lib(STANDARD[0]).sign(msg_id, old, body)})
    check(f"standard ({name}): 400 s old", r, 401, "timestamp_out_of_tolerance")
    r = post("standard", body, {k: v for k, v in headers.items() if not k.endswith("-id")})
    check(f"standard ({name}): no id", r, 401)
    r = post("standard", body, {**headers, f"{prefix}-id": msg_id + "x"})
    check(f"standard ({name}): other id", r, 401, "signature_mismatch")

# --- Slack, signed by slack_sdk ---------------------------------------------------------------
def slack_headers(body, secret=None, ts=None):
    ts = str(ts or now())
    sig = slack_sdk.signature.SignatureVerifier(secret or SLACK[0]).generate_signature(timestamp=ts, body=body)
    return {"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": sig}


ev = "Ev" + uuid.uuid4().hex[:10]
body = json.dumps({"type": "event_callback", "event_id": ev, "event": {"type": "app_mention"}})
r = post("slack", body, {**slack_headers(body), "Content-Type": "application/json"})
check("slack: event", r, 200, body={"status": "processed", "id": ev, "type": "event_callback"})
body = json.dumps({"type": "url_verification", "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P", "token": "t"})
r = post("slack", body, {**slack_headers(body), "Content-Type": "application/json"})
check("slack: url_verification", r, 200, body={"challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"})
form = "token=x&team_id=T1&command=%2Fweather&text=94070&response_url=https%3A%2F%2Fhooks.slack.com%2Fx"
r = post("slack", form, {**slack_headers(form), "Content-Type": "application/x-www-form-urlencoded"})
check("slack: slash command (form)", r, 200, body={"status": "processed", "id": None, "type": "/weather"})
form = "payload=%7B%22type%22%3A%22block_actions%22%7D"
r = post("slack", form, {**slack_headers(form), "Content-Type": "application/x-www-form-urlencoded"})
check("slack: interactivity (form)", r, 200, body={"status": "processed", "id": None, "type": "interactive"})
r = post("slack", form, {**slack_headers(form, secret=SLACK[1]), "Content-Type": "application/x-www-form-urlencoded"})
check("slack: second secret", r, 200)
r = post("slack", form, {**slack_headers(form, ts=now() - 301), "Content-Type": "application/x-www-form-urlencoded"})
check("slack: 301 s old", r, 401, "timestamp_out_of_tolerance")
h = slack_headers(form)
h["X-Slack-Request-Timestamp"] = "+" + h["X-Slack-Request-Timestamp"]
r = post("slack", form, h)
check("slack: +timestamp", r, 401, "malformed_timestamp")

# --- GitHub, signed as GitHub's docs show (hmac over the body) ---------------------------------
def gh(body, secret=None):
    return "sha256=" + hmac.new((secret or GITHUB[0]).encode(), body.encode(), hashlib.sha256).hexdigest()


delivery = str(uuid.uuid4())
body = json.dumps({"action": "opened", "issue": {"number": 1}})
base = {"X-GitHub-Event": "issues", "X-GitHub-Delivery": delivery, "Content-Type": "application/json"}
r = post("github", body, {**base, "X-Hub-Signature-256": gh(body)})
check("github: valid", r, 200, body={"status": "processed", "id": delivery, "type": "issues"})
r = post("github", body, {**base, "X-Hub-Signature-256": gh(body, GITHUB[1])})
check("github: second secret", r, 200)
sha1 = "sha1=" + hmac.new(GITHUB[0].encode(), body.encode(), hashlib.sha1).hexdigest()
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
check("github: at the limit, verified, not JSON", r, 400)
binary = b"\xff\xfe\x00garbage"
sig = "sha256=" + hmac.new(GITHUB[0].encode(), binary, hashlib.sha256).hexdigest()
r = post("github", binary, {**base, "X-Hub-Signature-256": sig})
check("github: non-UTF-8 body verifies, then is not JSON", r, 400)

# --- Shopify, signed as Shopify's docs show (base64 hmac over the body) ------------------------
def shop(body, secret=None):
    return base64.b64encode(hmac.new((secret or SHOPIFY[0]).encode(), body.encode(), hashlib.sha256).digest()).decode()


wid = str(uuid.uuid4())
body = json.dumps({"id": 820982911946154508, "email": "jon@example.com"})
base = {"X-Shopify-Topic": "orders/create", "X-Shopify-Webhook-Id": wid, "Content-Type": "application/json"}
r = post("shopify", body, {**base, "X-Shopify-Hmac-Sha256": shop(body)})
check("shopify: valid", r, 200, body={"status": "processed", "id": wid, "type": "orders/create"})
r = post("shopify", body, {**base, "Shopify-Hmac-Sha256": shop(body, SHOPIFY[1])})
check("shopify: new header name, second secret", r, 200)
r = post("shopify", body, {**base, "X-Shopify-Hmac-Sha256": shop(body).rstrip("=")})
check("shopify: unpadded base64", r, 401, "malformed_signature")

r = requests.get(f"{BASE}/healthz", timeout=10)
check("healthz", r, 200)

print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed else 0)

"""Black-box check of the demo receiver's named-provider routes
(/webhooks/<name>, `Scheme::named_providers()`), signing with the
providers' own SDKs where one can sign.

Run by scripts/blackbox.sh, which starts the receiver with every
`<NAME>_WEBHOOK_SECRET` below (two secrets each) and
WEBHOOK_PUBLIC_URL=https://hooks.example.com, the URL Twilio, Square and
HubSpot sign. Every case prints one line; the last line is the count.

Signers (in each case's label):
- twilio: twilio's RequestValidator (compute_signature, compute_hash);
- adyen: Adyen's util.generate_notification_sig;
- hubspot: hubspot-api-client's Signature.get_signature (v3, and v1 to show
  it is refused);
- anthropic, brex, clerk, openai, replicate, resend: standardwebhooks;
- every other route "(hmac)": a small helper below, as the provider's docs
  describe. Paddle's and WorkOS's SDKs verify but cannot sign: their
  deliveries are signed with hmac and each header is first checked with
  the SDK's own verifier.

Every route dedupes, so each case that expects `processed` sends a fresh
delivery. Each route sends from its own loopback address (127.0.1.N), so
the 401 cases stay far below the failed-authentication quota (20 a minute
per client IP) and no route shares the rate limiter's burst with another.
"""

import base64
import datetime
import hashlib
import hmac
import json
import os
import secrets
import sys
import time
import uuid
from urllib.parse import urlencode

import Adyen.util
import paddle_billing.Notifications
import requests
import standardwebhooks
import workos.webhooks
from hubspot.utils.signature import Signature as HubSpotSignature
from twilio.request_validator import RequestValidator

from bbkit import check, duplicate, expect, now, processed, record, summary
import bbkit

BASE = "http://" + os.environ["WEBHOOK_ADDR"]
PUBLIC_URL = os.environ["WEBHOOK_PUBLIC_URL"].rstrip("/")

ROUTES = ("adyen", "anthropic", "bitbucket", "brex", "calendly", "clerk", "coinbase", "dropbox", "gitlab",
          "hubspot", "intercom", "lemonsqueezy", "linear", "mailgun", "mux", "openai", "paddle", "razorpay",
          "replicate", "resend", "sentry", "square", "twilio", "twitch", "typeform", "vercel", "workos",
          "zendesk", "zoom")
SECRET = {name: os.environ[f"{name.upper()}_WEBHOOK_SECRET"].split(",") for name in ROUTES}
# `check` fails any response that carries a secret: these too.
bbkit.SECRETS.extend(s for name in ROUTES for s in SECRET[name])
SOURCE = {name: f"127.0.1.{i + 1}" for i, name in enumerate(ROUTES)}
JSON = {"Content-Type": "application/json"}


def post(route, body, headers):
    return bbkit.post(BASE, route, body, headers, source=SOURCE[route])


def url(route):
    """The URL a provider signs: WEBHOOK_PUBLIC_URL + the route's path."""
    return f"{PUBLIC_URL}/webhooks/{route}"


def fresh():
    return uuid.uuid4().hex


def text_problems(response, status, text, content_type="text/plain"):
    """What is wrong with a plain-text answer (a handshake, Adyen's `[accepted]`)."""
    problems = []
    if response.status_code != status:
        problems.append(f"status {response.status_code} != {status}")
    if response.text != text:
        problems.append(f"body {response.text!r} != {text!r}")
    if not response.headers.get("content-type", "").startswith(content_type):
        problems.append(f"content type {response.headers.get('content-type')!r} is not {content_type}")
    return problems


def check_text(name, response, status, text, content_type="text/plain"):
    return record(name, text_problems(response, status, text, content_type), response.text)


# --- hmac helpers, for the providers whose SDK cannot sign -----------------------------------
def mac(secret, data, digest=hashlib.sha256):
    if isinstance(data, str):
        data = data.encode()
    return hmac.new(secret.encode(), data, digest).digest()


def hex_mac(secret, data, digest=hashlib.sha256):
    return mac(secret, data, digest).hex()


def b64_mac(secret, data, digest=hashlib.sha256):
    return base64.b64encode(mac(secret, data, digest)).decode()


def rfc3339(nanos=False, offset=0):
    """Now (+ offset seconds) as RFC 3339 UTC; with nanoseconds as Twitch writes it."""
    ns = time.time_ns() + offset * 1_000_000_000
    dt = datetime.datetime.fromtimestamp(ns // 1_000_000_000, tz=datetime.timezone.utc)
    base = dt.strftime("%Y-%m-%dT%H:%M:%S")
    return f"{base}.{ns % 1_000_000_000:09d}Z" if nanos else base + "Z"


# --- GET /providers: every named route with the variables it reads ---------------------------
r = requests.get(f"{BASE}/providers", timeout=10)
listed = {p.get("name"): p for p in r.json()} if r.status_code == 200 else {}
problems = [] if r.status_code == 200 else [f"status {r.status_code}"]
for name in ROUTES:
    env = [f"{name.upper()}_WEBHOOK_SECRET"]
    env += {"twilio": ["WEBHOOK_PUBLIC_URL"], "square": ["WEBHOOK_PUBLIC_URL"], "hubspot": ["WEBHOOK_PUBLIC_URL"],
            "dropbox": ["DROPBOX_CHALLENGE"]}.get(name, [])
    want = {"name": name, "route": f"/webhooks/{name}", "env": env}
    if listed.get(name) != want:
        problems.append(f"{listed.get(name)!r} != {want!r}")
record("GET /providers lists the 29 named routes and their variables", problems, r.text)

# --- Twilio, signed by twilio's RequestValidator ---------------------------------------------
TWILIO = "twilio (twilio)"


def twilio_form():
    """A fresh status callback, form-encoded as Twilio sends it: (params, body)."""
    params = {"AccountSid": "AC" + fresh(), "MessageSid": "SM" + fresh(), "MessageStatus": "delivered",
              "To": "+15558675310", "From": "+15017122661", "ApiVersion": "2010-04-01"}
    return params, urlencode(params)


def twilio_form_headers(params, signed_url=None, secret=None):
    sig = RequestValidator(secret or SECRET["twilio"][0]).compute_signature(signed_url or url("twilio"), params)
    return {"Content-Type": "application/x-www-form-urlencoded", "X-Twilio-Signature": sig,
            "I-Twilio-Idempotency-Token": fresh()}


def twilio_json_headers(body, signed_url=None, secret=None):
    """JSON mode: compute_hash(body) as bodySHA256 in the query, the URL signed with no params."""
    v = RequestValidator(secret or SECRET["twilio"][0])
    signed = f"{signed_url or url('twilio')}?bodySHA256={v.compute_hash(body)}"
    return {**JSON, "X-Twilio-Signature": v.compute_signature(signed, {}), "I-Twilio-Idempotency-Token": fresh()}


# Twilio's default: a form body, signed as URL + its parameters sorted by name.
params, form = twilio_form()
h = twilio_form_headers(params)
r = post("twilio", form, h)
check(f"{TWILIO}: form status callback processed", r, 200, body=processed(h["I-Twilio-Idempotency-Token"], None))
body = json.dumps({"event": "com.twilio.messaging.message.delivered", "sid": "SM" + fresh()})
h = twilio_json_headers(body)
r = post("twilio", body, h)
check(f"{TWILIO}: JSON body (bodySHA256 in the signed URL)", r, 200, body=processed(h["I-Twilio-Idempotency-Token"], None))
body = json.dumps({"event": "com.twilio.messaging.message.queued", "sid": "SM" + fresh()})
h = twilio_json_headers(body, secret=SECRET["twilio"][1])
r = post("twilio", body, h)
check(f"{TWILIO}: JSON body, second auth token", r, 200, body=processed(h["I-Twilio-Idempotency-Token"], None))
body = json.dumps({"event": "com.twilio.messaging.message.sent", "sid": "SM" + fresh()})
h = twilio_json_headers(body, signed_url="https://hooks.example.com:443/webhooks/twilio")
r = post("twilio", body, h)
check(f"{TWILIO}: URL signed with the default port :443", r, 200, body=processed(h["I-Twilio-Idempotency-Token"], None))
r = post("twilio", body, h)
check(f"{TWILIO}: same JSON delivery again is a duplicate", r, 200, body=duplicate(h["I-Twilio-Idempotency-Token"], None))
params, form = twilio_form()
r = post("twilio", form, twilio_form_headers(params, signed_url=f"{BASE}/webhooks/twilio"))
check(f"{TWILIO}: form signed for the URL the request reached, not the configured one", r, 401, "signature_mismatch")
body = json.dumps({"event": "com.twilio.messaging.message.failed", "sid": "SM" + fresh()})
r = post("twilio", body, twilio_json_headers(body, signed_url="https://hooks.example.com/webhooks/twilio/"))
check(f"{TWILIO}: JSON signed for another URL (trailing slash)", r, 401, "signature_mismatch")
r = post("twilio", form, twilio_form_headers(params, secret="not-the-auth-token"))
check(f"{TWILIO}: wrong auth token", r, 401, "signature_mismatch")
h = twilio_form_headers(params)
r = post("twilio", form.replace("delivered", "undelivered"), h)
check(f"{TWILIO}: tampered form parameter", r, 401, "signature_mismatch")
h = twilio_json_headers(body)
r = post("twilio", body.replace("failed", "read"), h)
check(f"{TWILIO}: tampered JSON body (its bodySHA256 no longer matches)", r, 401, "signature_mismatch")

# --- Adyen, signed by Adyen's util.generate_notification_sig ---------------------------------
ADYEN = "adyen (Adyen)"


def adyen_item(key=None, event="AUTHORISATION", psp=None):
    """A fresh NotificationRequestItem, its hmacSignature from the Adyen SDK."""
    item = {"amount": {"value": 1130, "currency": "EUR"},
            "pspReference": psp or str(secrets.randbelow(10**16)).zfill(16),
            "eventCode": event, "eventDate": "2026-12-01T01:00:00+01:00",
            "merchantAccountCode": "BlackboxMerchant", "merchantReference": "order-" + fresh(),
            "paymentMethod": "visa", "reason": "033899:1111:03/2030", "success": "true",
            "additionalData": {}}
    item["additionalData"]["hmacSignature"] = Adyen.util.generate_notification_sig(item, key or SECRET["adyen"][0]).decode()
    return item


def adyen_body(*items):
    return json.dumps({"live": "false", "notificationItems": [{"NotificationRequestItem": i} for i in items]})


item = adyen_item()
expect(f"{ADYEN}: the SDK's own is_valid_hmac_notification accepts the item",
       Adyen.util.is_valid_hmac_notification(item, SECRET["adyen"][0]))
body = adyen_body(item)
r = post("adyen", body, JSON)
check_text(f"{ADYEN}: notification processed, answered [accepted]", r, 200, "[accepted]")
r = post("adyen", body, JSON)
check_text(f"{ADYEN}: same notification again (duplicate) is also [accepted]", r, 200, "[accepted]")
r = post("adyen", adyen_body(adyen_item(SECRET["adyen"][1], "CAPTURE")), JSON)
check_text(f"{ADYEN}: second HMAC key", r, 200, "[accepted]")
r = post("adyen", adyen_body(adyen_item(event="REFUND"), adyen_item(event="CANCELLATION")), JSON)
check_text(f"{ADYEN}: two items, both signed", r, 200, "[accepted]")
bad = adyen_item(secrets.token_hex(32), "REFUND")
r = post("adyen", adyen_body(adyen_item(event="REFUND"), bad), JSON)
check(f"{ADYEN}: two items, the second signed with another key", r, 401, "signature_mismatch")
item = adyen_item()
item["amount"]["value"] = 1
r = post("adyen", adyen_body(item), JSON)
check(f"{ADYEN}: signed field (amount) changed after signing", r, 401, "signature_mismatch")

# --- HubSpot, signed by hubspot-api-client (v3) -----------------------------------------------
HUBSPOT = "hubspot (hubspot-api-client)"


def hubspot_body(kind="contact.creation"):
    return json.dumps([{"eventId": secrets.randbelow(10**9), "subscriptionId": 42, "portalId": 62515,
                        "appId": 54321, "occurredAt": now() * 1000, "subscriptionType": kind,
                        "attemptNumber": 0, "objectId": secrets.randbelow(10**9), "changeFlag": "CREATED",
                        "changeSource": "CRM", "nonce": fresh()}])


def hubspot_headers(body, secret=None, ts_ms=None, signed_url=None):
    ts = str(ts_ms or int(time.time() * 1000))
    sig = HubSpotSignature.get_signature(secret or SECRET["hubspot"][0], body, "v3",
                                         http_uri=signed_url or url("hubspot"), http_method="POST", timestamp=ts)
    return {**JSON, "X-HubSpot-Signature-v3": sig, "X-HubSpot-Request-Timestamp": ts}


body = hubspot_body()
r = post("hubspot", body, hubspot_headers(body))
check(f"{HUBSPOT}: v3 batch processed (first event's subscriptionType)", r, 200, body=processed(None, "contact.creation"))
r = post("hubspot", body, hubspot_headers(body))
check(f"{HUBSPOT}: same batch re-signed is a duplicate (body hash)", r, 200, body=duplicate(None, "contact.creation"))
body = hubspot_body("deal.propertyChange")
r = post("hubspot", body, hubspot_headers(body, SECRET["hubspot"][1]))
check(f"{HUBSPOT}: second client secret", r, 200, body=processed(None, "deal.propertyChange"))
body = hubspot_body()
r = post("hubspot", body, hubspot_headers(body, "not-the-client-secret"))
check(f"{HUBSPOT}: wrong client secret", r, 401, "signature_mismatch")
r = post("hubspot", body, hubspot_headers(body, signed_url=f"{BASE}/webhooks/hubspot"))
check(f"{HUBSPOT}: signed for the URL the request reached, not the configured one", r, 401, "signature_mismatch")
r = post("hubspot", body, hubspot_headers(body, ts_ms=(now() - 400) * 1000))
check(f"{HUBSPOT}: 400 s old timestamp", r, 401, "timestamp_out_of_tolerance")
v1 = HubSpotSignature.get_signature(SECRET["hubspot"][0], body, "v1")
r = post("hubspot", body, {**JSON, "X-HubSpot-Signature": v1, "X-HubSpot-Signature-Version": "v1"})
check(f"{HUBSPOT}: v1 signature only (not HMAC) is never accepted", r, 401, "missing_signature")

# --- Standard Webhooks senders, signed by standardwebhooks ------------------------------------
# Clerk and Resend send the svix-* names, the others webhook-*; Brex's secret is plain base64.
STANDARD_SENDERS = {
    "clerk": ("svix", lambda: {"type": "user.created", "object": "event", "data": {"id": "user_" + fresh()}},
              "user.created"),
    "resend": ("svix", lambda: {"type": "email.delivered", "created_at": "2026-12-01T00:00:00Z",
                                "data": {"email_id": fresh()}}, "email.delivered"),
    "openai": ("webhook", lambda: {"object": "event", "id": "evt_" + fresh(), "type": "response.completed",
                                   "data": {"id": "resp_" + fresh()}}, "response.completed"),
    "anthropic": ("webhook", lambda: {"type": "event", "id": "wevt_" + fresh(),
                                      "data": {"type": "session.created", "id": "sess_" + fresh()}},
                  "session.created"),
    "replicate": ("webhook", lambda: {"id": fresh(), "status": "succeeded", "version": "5c7d5dc6",
                                      "output": ["https://example.com/out.png"]}, None),
    "brex": ("webhook", lambda: {"event_type": "TRANSFER_PROCESSED", "transfer_id": "dptr_" + fresh()},
             "TRANSFER_PROCESSED"),
}


def standard(route, prefix, body, secret, msg_id=None):
    msg_id = msg_id or "msg_" + fresh()
    ts = datetime.datetime.now(tz=datetime.timezone.utc)
    sig = standardwebhooks.Webhook(secret).sign(msg_id, ts, body)
    return msg_id, {**JSON, f"{prefix}-id": msg_id, f"{prefix}-timestamp": str(int(ts.timestamp())),
                    f"{prefix}-signature": sig}


for route, (prefix, make, kind) in STANDARD_SENDERS.items():
    label = f"{route} (standardwebhooks)"
    body = json.dumps(make())
    msg_id, h = standard(route, prefix, body, SECRET[route][0])
    r = post(route, body, h)
    check(f"{label}: {prefix}-* delivery processed", r, 200, body=processed(msg_id, kind))
    r = post(route, body, h)
    check(f"{label}: same {prefix}-id again is a duplicate", r, 200, body=duplicate(msg_id, kind))
    body = json.dumps(make())
    msg_id, h = standard(route, prefix, body, SECRET[route][1])
    r = post(route, body, h)
    check(f"{label}: second secret", r, 200, body=processed(msg_id, kind))
    other = "openai" if route != "openai" else "clerk"
    msg_id, h = standard(route, prefix, body, SECRET[other][0])
    r = post(route, body, h)
    check(f"{label}: signed with {other}'s secret", r, 401, "signature_mismatch")

# --- Paddle (hmac: paddle-python-sdk verifies, it has no signer) ------------------------------
PADDLE = "paddle (hmac)"


def paddle_body(kind="transaction.completed"):
    return json.dumps({"event_id": "evt_" + fresh(), "event_type": kind, "occurred_at": rfc3339(),
                       "notification_id": "ntf_" + fresh(), "data": {"id": "txn_" + fresh(), "status": "completed"}})


def paddle_header(body, keys=None, ts=None):
    """Paddle-Signature: ts=<unix>;h1=<hex HMAC-SHA256 of "ts:body">, one h1 per key."""
    ts = ts or now()
    return ";".join([f"ts={ts}"] + [f"h1={hex_mac(k, f'{ts}:{body}')}" for k in (keys or SECRET['paddle'][:1])])


def paddle_sdk_accepts(header, body, key):
    """paddle-python-sdk's own verifier on the header we send."""
    try:
        return paddle_billing.Notifications.PaddleSignature().verify(header, body, paddle_billing.Notifications.Secret(key))
    except ValueError:
        return False


body = paddle_body()
header = paddle_header(body)
expect(f"{PADDLE}: paddle-python-sdk's PaddleSignature.verify accepts the header", paddle_sdk_accepts(header, body, SECRET["paddle"][0]))
r = post("paddle", body, {**JSON, "Paddle-Signature": header})
check(f"{PADDLE}: processed (event_id, event_type)", r, 200, body=processed(json.loads(body)["event_id"], "transaction.completed"))
r = post("paddle", body, {**JSON, "Paddle-Signature": paddle_header(body)})
check(f"{PADDLE}: same event_id re-signed is a duplicate", r, 200, body=duplicate(json.loads(body)["event_id"], "transaction.completed"))
body = paddle_body("subscription.updated")
header = paddle_header(body, ["pdl_ntfset_retired", SECRET["paddle"][1]])
r = post("paddle", body, {**JSON, "Paddle-Signature": header})
check(f"{PADDLE}: two h1 (rotation), the second under the second secret", r, 200,
      body=processed(json.loads(body)["event_id"], "subscription.updated"))
body = paddle_body()
r = post("paddle", body, {**JSON, "Paddle-Signature": paddle_header(body, ["pdl_ntfset_not_the_secret"])})
check(f"{PADDLE}: wrong secret", r, 401, "signature_mismatch")
r = post("paddle", body, {**JSON, "Paddle-Signature": paddle_header(body, ts=now() - 400)})
check(f"{PADDLE}: 400 s old ts", r, 401, "timestamp_out_of_tolerance")

# --- WorkOS (hmac: the workos SDK verifies, it has no signer) ---------------------------------
WORKOS = "workos (hmac)"


def workos_body():
    return json.dumps({"id": "event_" + fresh(), "event": "dsync.user.created", "created_at": rfc3339(),
                       "data": {"id": "directory_user_" + fresh()}})


def workos_header(body, key=None, ts_ms=None):
    """WorkOS-Signature: t=<unix ms>, v1=<hex HMAC-SHA256 of "t.body">."""
    t = ts_ms or int(time.time() * 1000)
    return f"t={t}, v1={hex_mac(key or SECRET['workos'][0], f'{t}.{body}')}"


def workos_sdk_accepts(header, body, key):
    try:
        workos.webhooks.Webhooks(None).verify_header(event_body=body.encode(), event_signature=header, secret=key)
        return True
    except ValueError:
        return False


body = workos_body()
header = workos_header(body)
expect(f"{WORKOS}: the workos SDK's Webhooks.verify_header accepts the header", workos_sdk_accepts(header, body, SECRET["workos"][0]))
r = post("workos", body, {**JSON, "WorkOS-Signature": header})
check(f"{WORKOS}: processed (id, event)", r, 200, body=processed(json.loads(body)["id"], "dsync.user.created"))
body = workos_body()
r = post("workos", body, {**JSON, "WorkOS-Signature": workos_header(body, SECRET["workos"][1])})
check(f"{WORKOS}: second secret", r, 200, body=processed(json.loads(body)["id"], "dsync.user.created"))
r = post("workos", body, {**JSON, "WorkOS-Signature": workos_header(body, "not-the-secret")})
check(f"{WORKOS}: wrong secret", r, 401, "signature_mismatch")
r = post("workos", body, {**JSON, "WorkOS-Signature": workos_header(body, ts_ms=(now() - 400) * 1000)})
check(f"{WORKOS}: 400 s old t (milliseconds)", r, 401, "timestamp_out_of_tolerance")

# --- Twitch EventSub (hmac) -------------------------------------------------------------------
TWITCH = "twitch (hmac)"


def twitch_headers(body, message_type="notification", sub_type="channel.follow", key=None, ts=None, msg_id=None):
    msg_id = msg_id or str(uuid.uuid4())
    ts = ts or rfc3339(nanos=True)
    return {**JSON, "Twitch-Eventsub-Message-Id": msg_id, "Twitch-Eventsub-Message-Timestamp": ts,
            "Twitch-Eventsub-Message-Type": message_type, "Twitch-Eventsub-Subscription-Type": sub_type,
            "Twitch-Eventsub-Subscription-Version": "2",
            "Twitch-Eventsub-Message-Signature": "sha256=" + hex_mac(key or SECRET["twitch"][0], msg_id + ts + body)}


def twitch_subscription(sub_type="channel.follow", status="enabled"):
    return {"id": str(uuid.uuid4()), "status": status, "type": sub_type, "version": "2", "cost": 0,
            "condition": {"broadcaster_user_id": "1337", "moderator_user_id": "1337"},
            "transport": {"method": "webhook", "callback": url("twitch")}, "created_at": rfc3339(nanos=True)}


challenge = "pogchamp-kappa-" + fresh()
body = json.dumps({"challenge": challenge, "subscription": twitch_subscription(status="webhook_callback_verification_pending")})
r = post("twitch", body, twitch_headers(body, "webhook_callback_verification"))
check_text(f"{TWITCH}: webhook_callback_verification answered with the challenge", r, 200, challenge)
body = json.dumps({"challenge": "x" + fresh(), "subscription": twitch_subscription()})
r = post("twitch", body, twitch_headers(body, "webhook_callback_verification", key="not-the-twitch-secret"))
check(f"{TWITCH}: verification signed with another secret", r, 401, "signature_mismatch")
body = json.dumps({"subscription": twitch_subscription(),
                   "event": {"user_id": str(secrets.randbelow(10**8)), "user_login": "viewer", "followed_at": rfc3339(nanos=True)}})
h = twitch_headers(body)
r = post("twitch", body, h)
check(f"{TWITCH}: notification processed, its subscription type as type", r, 200,
      body=processed(h["Twitch-Eventsub-Message-Id"], "channel.follow"))
h2 = twitch_headers(body, msg_id=h["Twitch-Eventsub-Message-Id"], key=SECRET["twitch"][1])
r = post("twitch", body, h2)
check(f"{TWITCH}: same message id resent (new timestamp, second secret) is a duplicate", r, 200,
      body=duplicate(h["Twitch-Eventsub-Message-Id"], "channel.follow"))
body = json.dumps({"subscription": twitch_subscription(status="authorization_revoked")})
h = twitch_headers(body, "revocation")
r = post("twitch", body, h)
check(f"{TWITCH}: revocation processed as type revocation", r, 200, body=processed(h["Twitch-Eventsub-Message-Id"], "revocation"))
body = json.dumps({"subscription": twitch_subscription(), "event": {"user_id": fresh()}})
r = post("twitch", body, twitch_headers(body, ts=rfc3339(nanos=True, offset=-700)))
check(f"{TWITCH}: 700 s old timestamp", r, 401, "timestamp_out_of_tolerance")

# --- Zoom (hmac) ------------------------------------------------------------------------------
ZOOM = "zoom (hmac)"


def zoom_headers(body, key=None, ts=None):
    ts = str(ts or now())
    return {**JSON, "x-zm-request-timestamp": ts, "x-zm-signature": "v0=" + hex_mac(key or SECRET["zoom"][0], f"v0:{ts}:{body}")}


for n, key in enumerate(SECRET["zoom"]):
    plain = "qgg8vlvZRS6UYooatFL8Aw" + fresh()
    body = json.dumps({"payload": {"plainToken": plain}, "event_ts": now() * 1000, "event": "endpoint.url_validation"})
    r = post("zoom", body, zoom_headers(body, key))
    check(f"{ZOOM}: endpoint.url_validation ({'first' if n == 0 else 'second'} secret) answered with its encryptedToken",
          r, 200, body={"plainToken": plain, "encryptedToken": hex_mac(key, plain)})
body = json.dumps({"event": "meeting.started", "event_ts": now() * 1000,
                   "payload": {"account_id": "AAAAAA", "object": {"id": fresh(), "topic": "blackbox"}}})
r = post("zoom", body, zoom_headers(body))
check(f"{ZOOM}: meeting.started processed", r, 200, body=processed(None, "meeting.started"))
r = post("zoom", body, zoom_headers(body))
check(f"{ZOOM}: same body re-signed is a duplicate (body hash)", r, 200, body=duplicate(None, "meeting.started"))
r = post("zoom", body, zoom_headers(body, "not-the-secret-token"))
check(f"{ZOOM}: wrong secret token", r, 401, "signature_mismatch")

# --- Mailgun (hmac; the signature is in the body, over timestamp + token only) ----------------
MAILGUN = "mailgun (hmac)"


def mailgun_body(token, event="delivered", key=None, message=None):
    ts = str(now())
    return json.dumps({"signature": {"timestamp": ts, "token": token,
                                     "signature": hex_mac(key or SECRET["mailgun"][0], ts + token)},
                       "event-data": {"event": event, "id": fresh(), "timestamp": now(),
                                      "message": {"headers": {"message-id": message or fresh() + "@example.com"}}}})


token = secrets.token_hex(25)
r = post("mailgun", mailgun_body(token), JSON)
check(f"{MAILGUN}: JSON event processed (token, event-data.event)", r, 200, body=processed(token, "delivered"))
r = post("mailgun", mailgun_body(token, "opened", message="other@example.com"), JSON)
check(f"{MAILGUN}: its token replayed with other event-data is a duplicate", r, 200, body=duplicate(token, "opened"))
token = secrets.token_hex(25)
r = post("mailgun", mailgun_body(token, "failed", SECRET["mailgun"][1]), JSON)
check(f"{MAILGUN}: second signing key", r, 200, body=processed(token, "failed"))
r = post("mailgun", mailgun_body(secrets.token_hex(25), key="not-the-signing-key"), JSON)
check(f"{MAILGUN}: wrong signing key", r, 401, "signature_mismatch")
r = post("mailgun", json.dumps({"event-data": {"event": "delivered", "id": fresh()}}), JSON)
check(f"{MAILGUN}: no signature object", r, 401, "signature_mismatch")

# --- GitLab (a shared token, not a signature) --------------------------------------------------
GITLAB = "gitlab (token)"


def gitlab_body():
    return json.dumps({"object_kind": "push", "ref": "refs/heads/main", "checkout_sha": secrets.token_hex(20)})


def gitlab_headers(token, event_uuid=None):
    return {**JSON, "X-Gitlab-Token": token, "X-Gitlab-Event": "Push Hook",
            "X-Gitlab-Event-UUID": event_uuid or str(uuid.uuid4())}


h = gitlab_headers(SECRET["gitlab"][0])
r = post("gitlab", gitlab_body(), h)
check(f"{GITLAB}: right token", r, 200, body=processed(h["X-Gitlab-Event-UUID"], "Push Hook"))
h = gitlab_headers(SECRET["gitlab"][1])
r = post("gitlab", gitlab_body(), h)
check(f"{GITLAB}: second token", r, 200, body=processed(h["X-Gitlab-Event-UUID"], "Push Hook"))
r = post("gitlab", gitlab_body(), gitlab_headers("not-the-token"))
check(f"{GITLAB}: wrong token", r, 401, "signature_mismatch")
body = gitlab_body()
_, h = standard("gitlab", "webhook", body, "whsec_" + base64.b64encode(SECRET["gitlab"][0].encode()).decode())
r = post("gitlab", body, h)
check(f"{GITLAB}: a Standard Webhooks signature is not this route's scheme", r, 401, "missing_signature")

# --- Zendesk (hmac) ---------------------------------------------------------------------------
ZENDESK = "zendesk (hmac)"
ZENDESK_TEST_SECRET = "dGhpc19zZWNyZXRfaXNfZm9yX3Rlc3Rpbmdfb25seQ=="


def zendesk_body():
    return json.dumps({"type": "zen:event-type:ticket.created", "id": str(uuid.uuid4()), "time": rfc3339(),
                       "zendesk_event_version": "2022-11-06", "detail": {"id": str(secrets.randbelow(10**6))}})


def zendesk_headers(body, key=None):
    ts = rfc3339()
    return {**JSON, "X-Zendesk-Webhook-Signature-Timestamp": ts, "X-Zendesk-Webhook-Invocation-Id": str(secrets.randbelow(10**10)),
            "X-Zendesk-Webhook-Signature": b64_mac(key or SECRET["zendesk"][0], ts + body)}


body = zendesk_body()
h = zendesk_headers(body)
r = post("zendesk", body, h)
check(f"{ZENDESK}: processed (invocation id, body type)", r, 200,
      body=processed(h["X-Zendesk-Webhook-Invocation-Id"], "zen:event-type:ticket.created"))
body = zendesk_body()
r = post("zendesk", body, zendesk_headers(body, ZENDESK_TEST_SECRET))
check(f"{ZENDESK}: signed with Zendesk's public test secret is not accepted", r, 401, "signature_mismatch")

# --- The other routes: one header, hmac over the body (and a timestamp) -------------------------
# (route, make body, headers(body, key), expected id(body, headers), expected type)
def j(**fields):
    return json.dumps(fields)


HMAC_ROUTES = [
    ("bitbucket",
     lambda: j(push={"changes": [{"new": {"target": {"hash": secrets.token_hex(20)}}}]}, repository={"full_name": "team/repo"}),
     lambda b, k: {**JSON, "X-Hub-Signature": "sha256=" + hex_mac(k, b), "X-Request-UUID": str(uuid.uuid4()),
                   "X-Event-Key": "repo:push"},
     lambda b, h: h["X-Request-UUID"], "repo:push"),
    ("calendly",
     lambda: j(event="invitee.created", created_at=rfc3339(), payload={"uri": "https://api.calendly.com/x/" + fresh()}),
     lambda b, k: (lambda t: {**JSON, "Calendly-Webhook-Signature": f"t={t},v1={hex_mac(k, f'{t}.{b}')}"})(now()),
     lambda b, h: None, "invitee.created"),
    ("coinbase",
     lambda: j(id=secrets.randbelow(10**6), scheduled_for=rfc3339(),
               event={"id": str(uuid.uuid4()), "type": "charge:confirmed", "data": {"code": fresh()[:8]}}),
     lambda b, k: {**JSON, "X-CC-Webhook-Signature": hex_mac(k, b)},
     lambda b, h: json.loads(b)["event"]["id"], "charge:confirmed"),
    ("dropbox",
     lambda: j(list_folder={"accounts": ["dbid:" + fresh()]}, delta={"users": [secrets.randbelow(10**8)]}),
     lambda b, k: {**JSON, "X-Dropbox-Signature": hex_mac(k, b)},
     lambda b, h: None, None),
    ("intercom",
     lambda: j(type="notification_event", app_id="abc123", id="notif_" + fresh(), topic="conversation.user.created",
               data={"item": {"type": "conversation", "id": fresh()}}, created_at=now()),
     lambda b, k: {**JSON, "X-Hub-Signature": "sha1=" + hex_mac(k, b, hashlib.sha1)},
     lambda b, h: json.loads(b)["id"], "conversation.user.created"),
    ("lemonsqueezy",
     lambda: j(meta={"event_name": "order_created", "custom_data": {"n": fresh()}},
               data={"type": "orders", "id": str(secrets.randbelow(10**6))}),
     lambda b, k: {**JSON, "X-Signature": hex_mac(k, b), "X-Event-Name": "order_created"},
     lambda b, h: None, "order_created"),
    ("linear",
     lambda: j(action="create", type="Issue", data={"id": str(uuid.uuid4()), "title": "blackbox"},
               webhookTimestamp=int(time.time() * 1000)),
     lambda b, k: {**JSON, "Linear-Signature": hex_mac(k, b), "Linear-Delivery": str(uuid.uuid4())},
     lambda b, h: h["Linear-Delivery"], "Issue"),
    ("mux",
     lambda: j(type="video.asset.ready", id=str(uuid.uuid4()), object={"type": "asset", "id": fresh()}),
     lambda b, k: (lambda t: {**JSON, "Mux-Signature": f"t={t},v1={hex_mac(k, f'{t}.{b}')}"})(now()),
     lambda b, h: json.loads(b)["id"], "video.asset.ready"),
    ("razorpay",
     lambda: j(entity="event", account_id="acc_" + fresh()[:14], event="payment.captured",
               payload={"payment": {"entity": {"id": "pay_" + fresh()[:14]}}}),
     lambda b, k: {**JSON, "X-Razorpay-Signature": hex_mac(k, b), "X-Razorpay-Event-Id": "evt_" + fresh()[:14]},
     lambda b, h: h["X-Razorpay-Event-Id"], "payment.captured"),
    ("sentry",
     lambda: j(action="created", data={"issue": {"id": str(secrets.randbelow(10**9))}}, installation={"uuid": str(uuid.uuid4())}),
     lambda b, k: {**JSON, "Sentry-Hook-Signature": hex_mac(k, b), "Request-ID": str(uuid.uuid4()),
                   "Sentry-Hook-Resource": "issue", "Sentry-Hook-Timestamp": str(now())},
     lambda b, h: h["Request-ID"], "issue"),
    ("square",
     lambda: j(merchant_id="MLEFBHHSJGVHD", type="payment.updated", event_id=str(uuid.uuid4()), created_at=rfc3339(),
               data={"type": "payment", "id": fresh()}),
     lambda b, k: {**JSON, "x-square-hmacsha256-signature": b64_mac(k, url("square") + b)},
     lambda b, h: json.loads(b)["event_id"], "payment.updated"),
    ("typeform",
     lambda: j(event_id=fresh()[:26].upper(), event_type="form_response",
               form_response={"form_id": "lT4Z3j", "token": fresh(), "submitted_at": rfc3339()}),
     lambda b, k: {**JSON, "Typeform-Signature": "sha256=" + b64_mac(k, b)},
     lambda b, h: json.loads(b)["event_id"], "form_response"),
    ("vercel",
     lambda: j(id="evt_" + fresh(), type="deployment.created", createdAt=int(time.time() * 1000),
               payload={"deployment": {"id": "dpl_" + fresh()}}),
     lambda b, k: {**JSON, "x-vercel-signature": hex_mac(k, b, hashlib.sha1)},
     lambda b, h: json.loads(b)["id"], "deployment.created"),
]

for route, make, sign, id_of, kind in HMAC_ROUTES:
    label = f"{route} (hmac)"
    body = make()
    h = sign(body, SECRET[route][0])
    r = post(route, body, h)
    check(f"{label}: processed", r, 200, body=processed(id_of(body, h), kind))
    body = make()
    h = sign(body, SECRET[route][1])
    r = post(route, body, h)
    check(f"{label}: second secret", r, 200, body=processed(id_of(body, h), kind))
    r = post(route, body, h)
    check(f"{label}: same delivery again is a duplicate", r, 200, body=duplicate(id_of(body, h), kind))
    body = make()
    r = post(route, body, sign(body, "not-the-" + route + "-secret"))
    check(f"{label}: wrong secret", r, 401, "signature_mismatch")
    body = make()
    h = sign(body, SECRET[route][0])
    r = post(route, body.replace("}", " }", 1), h)
    check(f"{label}: tampered body", r, 401, "signature_mismatch")

# Square signs the URL it calls: the configured one, not the request's.
body = HMAC_ROUTES[[r_[0] for r_ in HMAC_ROUTES].index("square")][1]()
r = post("square", body, {**JSON, "x-square-hmacsha256-signature": b64_mac(SECRET["square"][0], f"{BASE}/webhooks/square" + body)})
check("square (hmac): signed for the URL the request reached, not the configured one", r, 401, "signature_mismatch")
# Intercom's HMAC-SHA1 is pinned: a sha256= header is refused as malformed.
body = json.dumps({"type": "notification_event", "id": "notif_" + fresh(), "topic": "ping"})
r = post("intercom", body, {**JSON, "X-Hub-Signature": "sha256=" + hex_mac(SECRET["intercom"][0], body)})
check("intercom (hmac): sha256= instead of sha1=", r, 401, "malformed_signature")

# Dropbox's GET ?challenge= is off in this kit (DROPBOX_CHALLENGE unset): not echoed.
r = requests.get(f"{BASE}/webhooks/dropbox", params={"challenge": "echo-" + fresh()}, timeout=10)
expect("dropbox: GET ?challenge= without DROPBOX_CHALLENGE=1 is 405, not echoed",
       r.status_code == 405 and "echo-" not in r.text, f"status {r.status_code}: {r.text[:200]}")

# Every named route refuses an unsigned delivery.
problems = []
for route in ROUTES:
    r = post(route, json.dumps({"type": "unsigned", "n": fresh()}), JSON)
    if r.status_code != 401:
        problems.append(f"{route}: {r.status_code}")
record("every named route: an unsigned delivery is 401", problems)

sys.exit(summary())

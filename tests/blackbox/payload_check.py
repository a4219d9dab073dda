"""Black-box check of the receiver's payload rules and its Meta and X routes.

Run by scripts/blackbox.sh against the main receiver (the secrets come from
the environment it exports; META_APP_SECRET and X_CONSUMER_SECRET hold two
secrets each). Every case prints one `ok` / `FAIL` line; the last line is
the count.

- Meta and X deliveries (signed as their docs describe, with Python's hmac),
  rotation, tampering, missing headers, dedupe on the body hash, X's event
  type (the first top-level `_events` key in document order);
- the two GET handshakes (Meta's subscription check, X's CRC) and 405 for
  other methods;
- JSON Schema (422 `schema_violation` with a `pointer`, never echoing the
  failing value), not-JSON (400 `invalid_json`), duplicate keys (400
  `duplicate_keys`), form Content-Types, and that a 422 is not recorded by
  dedupe.

Everything is sent from its own loopback addresses so that the few 401s
here do not share a failed-authentication quota (or a rate-limit bucket)
with the other checks.
"""

import datetime
import json
import os
import sys
import urllib.parse
import uuid

import standardwebhooks

from bbkit import (META, META_VERIFY_TOKEN, X, check, duplicate, expect, github_headers, meta_headers, meta_sig,
                   now, processed, record, response_problems, shopify_headers, slack_headers, standard_delivery,
                   stripe_event, stripe_header, summary, x_crc_token, x_headers, x_sig)
import bbkit

BASE = "http://" + os.environ["WEBHOOK_ADDR"]
SRC = "127.0.0.6"
JSON = {"Content-Type": "application/json"}
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def post(route, body, headers, source=SRC):
    return bbkit.post(BASE, route, body, headers, source=source)


def get(path, source=SRC):
    return bbkit.get(BASE, path, source=source)


def nonce():
    return uuid.uuid4().hex


# --- Meta: X-Hub-Signature-256 = "sha256=" + hex HMAC-SHA256(app secret, body) ------------------
def meta_body(obj="page"):
    return json.dumps({"object": obj, "entry": [{"id": "1", "time": now(), "changes": [{"field": "feed",
                                                                                       "value": nonce()}]}]})


body = meta_body()
r = post("meta", body, meta_headers(body))
check("meta: signed with the first app secret is processed (id null, type = body object)", r, 200,
      body=processed(None, "page"))
r = post("meta", body, meta_headers(body))
check("meta: the same delivery again is a duplicate", r, 200, body=duplicate(None, "page"))
r = post("meta", body, meta_headers(body, META[1]))
check("meta: the same body signed with the second secret is still a duplicate (key = body hash)", r, 200,
      body=duplicate(None, "page"))
body2 = meta_body("instagram")
r = post("meta", body2, meta_headers(body2, META[1]))
check("meta: signed with the second app secret (rotation) is processed", r, 200, body=processed(None, "instagram"))
body3 = meta_body("whatsapp_business_account")
r = post("meta", body3 + " ", meta_headers(body3))
check("meta: tampered body is 401 signature_mismatch", r, 401, "signature_mismatch")
r = post("meta", body3, JSON)
check("meta: no X-Hub-Signature-256 is 401 missing_signature", r, 401, "missing_signature")
sha1 = "sha1=" + bbkit.hmac.new(META[0].encode(), body3.encode(), bbkit.hashlib.sha1).hexdigest()
r = post("meta", body3, {**JSON, "X-Hub-Signature": sha1})
check("meta: only the legacy SHA-1 X-Hub-Signature is 401 missing_signature", r, 401, "missing_signature")
r = post("meta", body3, {**JSON, "X-Hub-Signature-256": meta_sig(body3, "not-the-app-secret")})
check("meta: signed with another secret is 401 signature_mismatch", r, 401, "signature_mismatch")
r = post("meta", body3, meta_headers(body3))
check("meta: the real delivery after the refused ones is processed (refusals never reach dedupe)", r, 200,
      body=processed(None, "whatsapp_business_account"))
r = post("meta", body3, meta_headers(body3))
check("meta: ... and then a duplicate", r, 200, body=duplicate(None, "whatsapp_business_account"))
nobj = json.dumps({"entry": [], "n": nonce()})
r = post("meta", nobj, meta_headers(nobj))
check("meta: a body without `object` is processed with type null", r, 200, body=processed(None, None))

# --- X: X-Twitter-Webhooks-Signature = "sha256=" + base64 HMAC-SHA256(consumer secret, body) -----
body = '{"for_user_id":"1","tweet_create_events":[],"favorite_events":[]}'
r = post("x", body, x_headers(body))
check("x: first `_events` key in document order (tweet_create_events before favorite_events)", r, 200,
      body=processed(None, "tweet_create_events"))
r = post("x", body, x_headers(body))
check("x: the same delivery again is a duplicate", r, 200, body=duplicate(None, "tweet_create_events"))
rev = json.dumps({"for_user_id": "2", "favorite_events": [], "tweet_create_events": [], "n": nonce()})
r = post("x", rev, x_headers(rev, X[1]))
check("x: signed with the second consumer secret (rotation); favorite_events first in the document wins", r, 200,
      body=processed(None, "favorite_events"))
late = json.dumps({"for_user_id": "3", "user_event": {"revoke": {}}, "n": nonce(), "direct_message_events": []})
r = post("x", late, x_headers(late))
check("x: the `_events` key need not be the first key (direct_message_events)", r, 200,
      body=processed(None, "direct_message_events"))
none = json.dumps({"for_user_id": "4", "user_has_blocked": True, "n": nonce()})
r = post("x", none, x_headers(none))
check("x: no top-level `_events` key: processed with type null", r, 200, body=processed(None, None))
nested = json.dumps({"for_user_id": "5", "data": {"tweet_create_events": []}, "n": nonce()})
r = post("x", nested, x_headers(nested))
check("x: an `_events` key nested below the top level does not count (type null)", r, 200,
      body=processed(None, None))
tx = json.dumps({"for_user_id": "6", "tweet_delete_events": [], "n": nonce()})
r = post("x", tx.replace('"6"', '"7"'), x_headers(tx))
check("x: tampered body is 401 signature_mismatch", r, 401, "signature_mismatch")
r = post("x", tx, JSON)
check("x: no X-Twitter-Webhooks-Signature is 401 missing_signature", r, 401, "missing_signature")
r = post("x", tx, {**JSON, "X-Twitter-Webhooks-Signature": x_sig(tx, "not-the-consumer-secret")})
check("x: signed with another secret is 401 signature_mismatch", r, 401, "signature_mismatch")
hexsig = "sha256=" + bbkit.hmac.new(X[0].encode(), tx.encode(), bbkit.hashlib.sha256).hexdigest()
r = post("x", tx, {**JSON, "X-Twitter-Webhooks-Signature": hexsig})
check("x: the right HMAC in hex instead of base64 is 401", r, 401)
r = post("x", tx, {**JSON, "X-Hub-Signature-256": meta_sig(tx, X[0])})
check("x: a Meta/GitHub-style header instead of X's is 401 missing_signature", r, 401, "missing_signature")
r = post("x", tx, x_headers(tx))
check("x: the real delivery after the refused ones is processed", r, 200, body=processed(None, "tweet_delete_events"))
r = post("x", tx, x_headers(tx, X[1]))
check("x: ... then a duplicate (even signed with the other secret)", r, 200,
      body=duplicate(None, "tweet_delete_events"))

# --- Handshakes ---------------------------------------------------------------------------------
def meta_q(**params):
    return "/webhooks/meta?" + urllib.parse.urlencode(params)


challenge = "1158201444"
r = get(meta_q(**{"hub.mode": "subscribe", "hub.verify_token": META_VERIFY_TOKEN, "hub.challenge": challenge}))
record("meta handshake: right verify token: 200 text/plain, body exactly the challenge",
       response_problems(r, 200)
       + ([] if r.headers.get("content-type", "").split(";")[0].strip() == "text/plain"
          else [f"content-type {r.headers.get('content-type')!r}"])
       + ([] if r.content == challenge.encode() else [f"body {r.content[:80]!r} != {challenge!r}"]), r.text)
odd = "ch-" + nonce() + " +/=&?"
r = get(meta_q(**{"hub.mode": "subscribe", "hub.verify_token": META_VERIFY_TOKEN, "hub.challenge": odd}))
expect("meta handshake: a challenge with reserved characters comes back URL-decoded, exactly",
       r.status_code == 200 and r.content == odd.encode(), f"{r.status_code} {r.content[:80]!r}")
r = get(meta_q(**{"hub.mode": "subscribe", "hub.verify_token": META_VERIFY_TOKEN + "x", "hub.challenge": challenge}))
record("meta handshake: wrong verify token is 403 problem+json, challenge not echoed",
       response_problems(r, 403) + ([challenge + " echoed"] if challenge in r.text else []), r.text)
r = get(meta_q(**{"hub.mode": "subscribe", "hub.verify_token": META_VERIFY_TOKEN[:-1], "hub.challenge": challenge}))
check("meta handshake: a prefix of the verify token is 403", r, 403)
r = get(meta_q(**{"hub.mode": "subscribe", "hub.verify_token": "", "hub.challenge": challenge}))
check("meta handshake: an empty verify token is 403", r, 403)
r = get(meta_q(**{"hub.mode": "subscribe", "hub.verify_token": META_VERIFY_TOKEN}))
check("meta handshake: right token, no hub.challenge is 400", r, 400)
r = bbkit.request("POST", BASE + meta_q(**{"hub.mode": "subscribe", "hub.verify_token": META_VERIFY_TOKEN,
                                          "hub.challenge": challenge}), source=SRC, data=b"{}", headers=JSON)
check("meta: a POST carrying the handshake query but no signature is still 401 missing_signature", r, 401,
      "missing_signature")

token = "crc" + nonce()
r = get("/webhooks/x?crc_token=" + token)
want = x_crc_token(token, X[0])
other = x_crc_token(token, X[1])
doc = r.json() if r.headers.get("content-type", "").startswith("application/json") else None
check("x CRC: 200 {response_token: sha256=<base64 HMAC-SHA256(FIRST consumer secret, crc_token)>}", r, 200,
      body={"response_token": want})
expect("x CRC: ... not the token computed with the second secret",
       isinstance(doc, dict) and doc.get("response_token") != other, f"{r.text[:120]}")
token = "aB3-_.+/=" + nonce()
r = get("/webhooks/x?crc_token=" + urllib.parse.quote(token, safe=""))
check("x CRC: a token using every base64 / URL-safe punctuation (-_.+/=) is answered with the first secret", r, 200,
      body={"response_token": x_crc_token(token, X[0])})
r = get("/webhooks/x")
check("x CRC: no crc_token is 400", r, 400)
r = get("/webhooks/x?crc_token=")
check("x CRC: empty crc_token is 400", r, 400)
jtok = json.dumps({"for_user_id": "1", "tweet_create_events": []})
r = get("/webhooks/x?crc_token=" + urllib.parse.quote(jtok, safe=""))
record("x CRC: a JSON-looking crc_token is 400 (the CRC must not sign a JSON object)",
       response_problems(r, 400) + (["a response_token came back"] if "response_token" in r.text else []), r.text)
# Digit-only tokens (and true/null) are JSON too: the CRC must refuse them, or its answer would be
# a valid signature for that body.
for tok in ("1234567", "true", "null"):
    r = get("/webhooks/x?crc_token=" + tok)
    record(f"x CRC: a JSON-valued crc_token ({tok}) is 400",
           response_problems(r, 400) + (["a response_token came back"] if "response_token" in r.text else []), r.text)

for path in ("/webhooks/github", "/webhooks/stripe", "/webhooks/standard", "/webhooks/slack", "/webhooks/shopify"):
    check(f"GET {path} (no handshake on this route) is 405", get(path), 405)
r = bbkit.request("PUT", BASE + "/webhooks/meta", source=SRC, data=b"{}")
check("PUT /webhooks/meta is 405", r, 405)
r = bbkit.request("DELETE", BASE + "/webhooks/x?crc_token=abc", source=SRC)
check("DELETE /webhooks/x?crc_token=abc is 405", r, 405)


# --- JSON Schema: 422 schema_violation with a pointer, never the failing value ------------------
def schema_422(name, r, pointers, leaks=()):
    """422 problem+json, reason schema_violation, `pointer` one of `pointers`, none of `leaks` echoed."""
    problems = response_problems(r, 422, "schema_violation")
    doc = None
    try:
        doc = r.json()
    except ValueError:
        pass
    if r.status_code == 422:
        if not isinstance(doc, dict) or "pointer" not in doc:
            problems.append("no `pointer` member")
        elif doc["pointer"] not in pointers:
            problems.append(f"pointer {doc['pointer']!r} not in {pointers!r}")
    for leak in leaks:
        if leak in r.text:
            problems.append(f"the failing value {leak!r} is echoed")
    return record(name, problems, r.text)


def stripe_doc(**changes):
    eid = "evt_" + nonce()
    doc = {"id": eid, "object": "event", "type": "payment_intent.succeeded", "created": now(),
           "data": {"object": {"id": "pi_1", "object": "payment_intent"}}}
    for key, value in changes.items():
        if value is ...:
            doc.pop(key)
        else:
            doc[key] = value
    return eid, json.dumps(doc)


def stripe_post(body, headers=None, source=SRC):
    return post("stripe", body, {"Stripe-Signature": stripe_header(body), **(headers or {})}, source=source)


_, b = stripe_doc(created=...)
schema_422("schema stripe: missing `created` is 422, pointer names it or its parent", stripe_post(b),
           ("/created", "", "/"))
_, b = stripe_doc(object="evnt_leak_7f3a9c")
schema_422("schema stripe: `object` not \"event\" is 422 pointer /object, value not echoed", stripe_post(b),
           ("/object",), ("evnt_leak_7f3a9c",))
_, b = stripe_doc(data={"object": "pi_leak_string_51c2"})
schema_422("schema stripe: `data.object` a string is 422 pointer /data/object, value not echoed", stripe_post(b),
           ("/data/object",), ("pi_leak_string_51c2",))
_, b = stripe_doc(data={"object": ["leak_in_array_88d1"]})
schema_422("schema stripe: `data.object` an array is 422 pointer /data/object, value not echoed", stripe_post(b),
           ("/data/object",), ("leak_in_array_88d1",))
_, b = stripe_doc(created="1700000000leak")
schema_422("schema stripe: `created` a string is 422 pointer /created, value not echoed", stripe_post(b),
           ("/created",), ("1700000000leak",))
_, b = stripe_doc(created=1700000000.5)
schema_422("schema stripe: `created` not an integer (1700000000.5) is 422 pointer /created", stripe_post(b),
           ("/created",), ("1700000000.5",))
_, b = stripe_doc(id=987654321123)
schema_422("schema stripe: `id` a number is 422 pointer /id, value not echoed", stripe_post(b), ("/id",),
           ("987654321123",))
_, b = stripe_doc(data=...)
schema_422("schema stripe: missing `data` is 422", stripe_post(b), ("/data", "", "/"))
_, b = stripe_doc(data={"previous_attributes": {}})
schema_422("schema stripe: `data` without `object` is 422, pointer /data/object or /data", stripe_post(b),
           ("/data/object", "/data"))
_, b = stripe_doc(object="evnt_leak_form_c0ffee")
schema_422("schema stripe: form Content-Type does not skip the schema (still 422 /object)",
           stripe_post(b, FORM), ("/object",), ("evnt_leak_form_c0ffee",))
eid, b = stripe_doc()
r = stripe_post(b, FORM)
check("schema stripe: a valid event sent with a form Content-Type is processed (only Slack parses forms)", r, 200,
      body=processed(eid, "payment_intent.succeeded"))

# Standard Webhooks, signed by the standardwebhooks SDK.
def standard_raw(doc, msg_id=None, secret=None):
    """A Standard Webhooks delivery of exactly `doc` (a dict, dumped as is): (msg_id, body, headers)."""
    msg_id = msg_id or "msg_" + nonce()
    body = json.dumps(doc)
    ts = datetime.datetime.now(tz=datetime.timezone.utc)
    sig = standardwebhooks.Webhook(secret or bbkit.STANDARD[0]).sign(msg_id, ts, body)
    return msg_id, body, {"webhook-id": msg_id, "webhook-timestamp": str(int(ts.timestamp())),
                          "webhook-signature": sig, **JSON}


msg_id, b, h = standard_raw({"type": "invoice.paid", "data": {"n": nonce()}})
schema_422("schema standard: missing `timestamp` is 422", post("standard", b, h), ("/timestamp", "", "/"))
_, b, h = standard_raw({"type": 424242424242, "timestamp": "2026-11-23T10:00:00Z", "data": {}})
schema_422("schema standard: `type` a number is 422 pointer /type, value not echoed", post("standard", b, h),
           ("/type",), ("424242424242",))
_, b, h = standard_raw({"type": "invoice.paid", "timestamp": "2026-11-23T10:00:00Z", "data": "leak_data_str_e1"})
schema_422("schema standard: `data` a string is 422 pointer /data, value not echoed", post("standard", b, h),
           ("/data",), ("leak_data_str_e1",))

# Any-JSON-object routes: a JSON array (or scalar) is 422.
arr = json.dumps(["leak_array_member_3b7", {"n": nonce()}])
schema_422("schema github: a JSON array body is 422, value not echoed", post("github", arr, github_headers(arr)),
           ("", "/"), ("leak_array_member_3b7",))
schema_422("schema shopify: a JSON array body is 422", post("shopify", arr, shopify_headers(arr)), ("", "/"),
           ("leak_array_member_3b7",))
schema_422("schema meta: a JSON array body is 422", post("meta", arr, meta_headers(arr)), ("", "/"),
           ("leak_array_member_3b7",))
schema_422("schema x: a JSON array body is 422", post("x", arr, x_headers(arr)), ("", "/"),
           ("leak_array_member_3b7",))
schema_422("schema slack: a JSON array body (JSON Content-Type) is 422",
           post("slack", arr, {**slack_headers(arr), **JSON}), ("", "/"), ("leak_array_member_3b7",))
scalar = '"leak_scalar_string_9e9"'
schema_422("schema github: a JSON string body is 422, value not echoed",
           post("github", scalar, github_headers(scalar)), ("", "/"), ("leak_scalar_string_9e9",))

# A 422 is not recorded by dedupe: the fixed delivery with the same id is processed.
eid, bad = stripe_doc(created=...)
r = stripe_post(bad)
check("dedupe after 422: stripe event without `created` is 422", r, 422, "schema_violation")
r = stripe_post(bad)
check("dedupe after 422: ... sent again it is 422 again (not duplicate)", r, 422, "schema_violation")
fixed = json.loads(bad)
fixed["created"] = now()
fixed = json.dumps(fixed)
r = stripe_post(fixed)
check("dedupe after 422: the fixed event with the same id is processed", r, 200,
      body=processed(eid, "payment_intent.succeeded"))
r = stripe_post(fixed)
check("dedupe after 422: ... then a duplicate", r, 200, body=duplicate(eid, "payment_intent.succeeded"))
msg_id, b, h = standard_raw({"type": "invoice.paid", "data": {"n": nonce()}})
r = post("standard", b, h)
check("dedupe after 422: standard delivery without `timestamp` is 422", r, 422, "schema_violation")
msg_id, b, h = standard_delivery(msg_id=msg_id)
r = post("standard", b, h)
check("dedupe after 422: the fixed standard delivery with the same webhook-id is processed", r, 200,
      body=processed(msg_id, "invoice.paid"))

# --- 400: not JSON, duplicate keys --------------------------------------------------------------
def signed(route, body, content_type=JSON):
    """Headers signing `body` for `route` (correctly, with the first secret)."""
    if route == "stripe":
        return {"Stripe-Signature": stripe_header(body), **content_type}
    if route == "github":
        return {**github_headers(body), **content_type}
    if route == "standard":
        msg_id, ts = "msg_" + nonce(), datetime.datetime.now(tz=datetime.timezone.utc)
        return {"webhook-id": msg_id, "webhook-timestamp": str(int(ts.timestamp())),
                "webhook-signature": standardwebhooks.Webhook(bbkit.STANDARD[0]).sign(msg_id, ts, body),
                **content_type}
    if route == "slack":
        return {**slack_headers(body), **content_type}
    if route == "shopify":
        return {**shopify_headers(body), **content_type}
    if route == "meta":
        return {**meta_headers(body), **content_type}
    return {**x_headers(body), **content_type}


ROUTES = ("stripe", "github", "standard", "slack", "shopify", "meta", "x")
for route in ROUTES:
    b = "not json " + nonce()
    check(f"400 {route}: verified body that is not JSON is invalid_json", post(route, b, signed(route, b)), 400,
          "invalid_json")
for route in ROUTES:
    b = '{"type":"first.type","type":"second.type","n":"' + nonce() + '"}'
    check(f"400 {route}: verified body with a duplicate key is duplicate_keys", post(route, b, signed(route, b)),
          400, "duplicate_keys")
eid = "evt_" + nonce()
b = ('{"id":"' + eid + '","object":"event","type":"payment_intent.succeeded","created":' + str(now())
     + ',"data":{"object":{"id":"pi_1","amount":100,"amount":1}}}')
check("400 stripe: a duplicate key nested in data.object is duplicate_keys", stripe_post(b), 400, "duplicate_keys")
b = ('{"id":"evt_' + nonce() + '","object":"event","type":"payment_intent.succeeded","t\\u0079pe":"charge.refunded",'
     '"created":' + str(now()) + ',"data":{"object":{}}}')
check("400 stripe: duplicate key spelled with a \\u escape (type / t\\u0079pe) is duplicate_keys", stripe_post(b),
      400, "duplicate_keys")
b = json.dumps({"a": 1, "n": nonce()}) + ' {"b":2}'
check("400 github: JSON followed by a second document is invalid_json", post("github", b, github_headers(b)), 400,
      "invalid_json")
b = "\ufeff" + json.dumps({"a": 1, "n": nonce()})
r = post("github", b, github_headers(b))
record("github: JSON behind a UTF-8 BOM is 400 invalid_json (or accepted), never 5xx",
       [] if r.status_code in (200, 400) else [f"status {r.status_code}"], r.text)
deep = "[" * 2000 + "]" * 2000
r = post("github", deep, github_headers(deep))
record("github: 2000-deep nested JSON array is 400 or 422, never 5xx",
       [] if r.status_code in (400, 422) else [f"status {r.status_code}"], r.text)
deep = '{"a":' * 600 + "1" + "}" * 600  # 3601 bytes, under the 4096 limit
r = post("meta", deep, meta_headers(deep))
record("meta: 600-deep nested JSON object is answered without a 5xx (400, 422 or processed)",
       [] if r.status_code in (200, 400, 422) else [f"status {r.status_code}"], r.text)
r = bbkit.get(BASE, "/healthz", source=SRC)
check("healthz still answers after the deep-nesting bodies", r, 200)
b = "not json " + nonce()
r = post("stripe", b, {"Stripe-Signature": stripe_header(b, secret="whsec_not_the_secret"), **JSON})
check("400 order: an unverified body that is not JSON is 401 signature_mismatch (not 400)", r, 401,
      "signature_mismatch")
_, b = stripe_doc(object="evnt_unverified")
r = post("stripe", b, {"Stripe-Signature": stripe_header(b, secret="whsec_not_the_secret")})
check("422 order: an unverified body failing the schema is 401 (not 422)", r, 401, "signature_mismatch")
b = "token=x&command=%2Fnot-json&n=" + nonce()
check("400 stripe: a form body with a form Content-Type is invalid_json (only Slack parses forms)",
      post("stripe", b, {"Stripe-Signature": stripe_header(b), **FORM}), 400, "invalid_json")
b = "payload=" + urllib.parse.quote(json.dumps({"n": nonce()}))
check("400 github: a form body (GitHub's form content type) is invalid_json",
      post("github", b, {**github_headers(b), **FORM}), 400, "invalid_json")

# --- Slack forms skip the schema ----------------------------------------------------------------
form = ("token=x&team_id=T1&command=%2Fdeploy&text=prod&response_url=https%3A%2F%2Fhooks.slack.com%2Fx"
        f"&trigger_id={nonce()}")
r = post("slack", form, {**slack_headers(form), **FORM})
check("slack form: slash command is processed with the command as type", r, 200, body=processed(None, "/deploy"))
r = post("slack", form, {**slack_headers(form), **FORM})
check("slack form: ... the same form again is a duplicate", r, 200, body=duplicate(None, "/deploy"))
form = f"command=%2Fcharset&text=x&trigger_id={nonce()}"
r = post("slack", form, {**slack_headers(form), "Content-Type": "application/x-www-form-urlencoded; charset=utf-8"})
check("slack form: Content-Type with a charset parameter is still a form", r, 200, body=processed(None, "/charset"))

# --- 400 and 422 are not failed authentications -------------------------------------------------
# 25 verified-but-invalid deliveries from one address (more than the failed-authentication quota
# of 20): a valid delivery from it afterwards is still processed.
Q = "127.0.0.9"
statuses = []
for i in range(25):
    if i % 2:
        _, b = stripe_doc(created=...)
    else:
        b = "not json " + nonce()
    statuses.append(stripe_post(b, source=Q).status_code)
expect("quota: 25 verified but invalid deliveries from 127.0.0.9 are all 400/422 (never 429)",
       all(s in (400, 422) for s in statuses), f"statuses {statuses}")
eid, b = stripe_event()
r = stripe_post(b, source=Q)
check("quota: ... and a valid delivery from 127.0.0.9 afterwards is processed (400/422 are not auth failures)",
      r, 200, body=processed(eid, "payment_intent.succeeded"))

sys.exit(summary())

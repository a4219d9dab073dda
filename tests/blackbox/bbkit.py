"""Helpers shared by the black-box checks (sdk_check.py, abuse_check.py,
payload_check.py).

- the secrets the receivers were started with (from the environment that
  scripts/blackbox.sh exports);
- `check`: one `ok` / `FAIL` line per case, counted for the summary;
- HTTP from a chosen loopback source address (the receiver's rate limiter
  and failed-authentication quota are per client IP);
- signing with the providers' own SDKs (stripe, standardwebhooks, slack_sdk)
  and, for GitHub, Shopify, Meta and X, as their docs show.
"""

import base64
import datetime
import hashlib
import hmac
import json
import os
import re
import socket
import time
import uuid

import requests
import requests.adapters
import slack_sdk.signature
import standardwebhooks
import stripe

STRIPE = os.environ["STRIPE_WEBHOOK_SECRET"].split(",")
GITHUB = os.environ["GITHUB_WEBHOOK_SECRET"].split(",")
STANDARD = os.environ["STANDARD_WEBHOOK_SECRET"].split(",")
SLACK = os.environ["SLACK_SIGNING_SECRET"].split(",")
SHOPIFY = os.environ["SHOPIFY_WEBHOOK_SECRET"].split(",")
META = os.environ["META_APP_SECRET"].split(",")
META_VERIFY_TOKEN = os.environ["META_VERIFY_TOKEN"]
X = os.environ["X_CONSUMER_SECRET"].split(",")
SECRETS = STRIPE + GITHUB + STANDARD + SLACK + SHOPIFY + META + [META_VERIFY_TOKEN] + X

passed = 0
failed = 0


def record(name, problems, text=""):
    """Prints one line for a case and counts it."""
    global passed, failed
    if problems:
        failed += 1
        tail = f" :: {text[:300]}" if text else ""
        print(f"FAIL {name}: {'; '.join(problems)}{tail}", flush=True)
    else:
        passed += 1
        print(f"ok   {name}", flush=True)
    return not problems


def expect(name, condition, detail=""):
    """A case that is a plain condition; `detail` explains a failure."""
    return record(name, [] if condition else [detail or "condition false"])


def retry_after_problems(response):
    """Problems with a response's Retry-After: it must be whole seconds, at least 1."""
    value = response.headers.get("retry-after")
    if value is None:
        return ["no Retry-After header"]
    if not re.fullmatch(r"[0-9]+", value.strip()) or int(value) < 1:
        return [f"Retry-After {value!r} is not an integer >= 1"]
    return []


def response_problems(response, status, reason=None, body=None, retry_after=False):
    """What is wrong with `response` (a requests.Response or a RawResponse)."""
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
    if retry_after:
        problems += retry_after_problems(response)
    for secret in SECRETS:
        if secret in response.text:
            problems.append("a secret is in the response")
    return problems


def check(name, response, status, reason=None, body=None, retry_after=False):
    """One case: `response` must have `status` (and, for errors, be
    problem+json), the given `reason`, exactly `body`, and with
    `retry_after` an integer Retry-After >= 1. No secret may appear."""
    return record(name, response_problems(response, status, reason, body, retry_after), response.text)


def summary():
    """Prints the count line; returns the exit code."""
    print(f"{passed} passed, {failed} failed", flush=True)
    return 1 if failed else 0


def processed(id_, type_):
    return {"status": "processed", "id": id_, "type": type_}


def duplicate(id_, type_):
    return {"status": "duplicate", "id": id_, "type": type_}


# --- HTTP from a chosen loopback source address -------------------------------------------------
class _SourceAdapter(requests.adapters.HTTPAdapter):
    def __init__(self, source, **kwargs):
        self._source = source
        super().__init__(**kwargs)

    def init_poolmanager(self, *args, **kwargs):
        kwargs["source_address"] = (self._source, 0)
        super().init_poolmanager(*args, **kwargs)


def request(method, url, source=None, timeout=10, **kwargs):
    """One HTTP request on a fresh connection, from `source` (a loopback
    address) when given."""
    if source is None:
        return requests.request(method, url, timeout=timeout, **kwargs)
    with requests.Session() as session:
        session.mount("http://", _SourceAdapter(source))
        return session.request(method, url, timeout=timeout, **kwargs)


def post(base, route, body, headers, source=None, timeout=10):
    if isinstance(body, str):
        body = body.encode()
    return request("POST", f"{base}/webhooks/{route}", source=source, data=body, headers=headers, timeout=timeout)


def get(base, path, source=None, headers=None, timeout=10):
    return request("GET", f"{base}{path}", source=source, headers=headers or {}, timeout=timeout)


class RawResponse:
    """A response read off a raw socket, with the bits `check` looks at."""

    def __init__(self, status_code, headers, content):
        self.status_code = status_code
        self.headers = requests.structures.CaseInsensitiveDict(headers)
        self.content = content
        self.text = content.decode("utf-8", "replace")

    def json(self):
        try:
            return json.loads(self.text)
        except json.JSONDecodeError as e:
            raise ValueError(str(e)) from e


def raw_request(addr, head, source="127.0.0.1", timeout=3.0):
    """Sends `head` (request line and headers, no body) over a raw socket
    from `source` and reads one response. Returns (RawResponse or None on
    timeout / close, seconds taken)."""
    host, port = addr.rsplit(":", 1)
    start = time.monotonic()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.bind((source, 0))
        sock.connect((host, int(port)))
        sock.sendall(head.encode())
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                return None, time.monotonic() - start
            data += chunk
        head_bytes, rest = data.split(b"\r\n\r\n", 1)
        lines = head_bytes.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            headers[k.strip()] = v.strip()
        length = 0
        for k, v in headers.items():
            if k.lower() == "content-length":
                length = int(v)
        while len(rest) < length:
            chunk = sock.recv(65536)
            if not chunk:
                break
            rest += chunk
        return RawResponse(status, headers, rest[:length]), time.monotonic() - start
    except socket.timeout:
        return None, time.monotonic() - start
    finally:
        sock.close()


# --- Signing ------------------------------------------------------------------------------------
def now():
    return int(time.time())


def stripe_event(event_type="payment_intent.succeeded", eid=None):
    eid = eid or "evt_" + uuid.uuid4().hex
    body = json.dumps({"id": eid, "object": "event", "type": event_type, "created": now(),
                       "data": {"object": {"id": "pi_1", "object": "payment_intent"}}})
    return eid, body


def stripe_header(body, secret=None, ts=None):
    return stripe.WebhookSignature.generate_signature_header(body, secret or STRIPE[0], timestamp=ts or now())


def standard_delivery(event_type="invoice.paid", msg_id=None, secret=None, extra=None):
    """A Standard Webhooks delivery signed by the standardwebhooks SDK:
    (msg_id, body, headers)."""
    msg_id = msg_id or "msg_" + uuid.uuid4().hex
    body = json.dumps({"type": event_type, "timestamp": "2026-11-23T10:00:00Z",
                       "data": {"n": uuid.uuid4().hex, **(extra or {})}})
    ts = datetime.datetime.now(tz=datetime.timezone.utc)
    sig = standardwebhooks.Webhook(secret or STANDARD[0]).sign(msg_id, ts, body)
    headers = {"webhook-id": msg_id, "webhook-timestamp": str(int(ts.timestamp())), "webhook-signature": sig,
               "Content-Type": "application/json"}
    return msg_id, body, headers


def slack_headers(body, secret=None, ts=None):
    ts = str(ts or now())
    sig = slack_sdk.signature.SignatureVerifier(secret or SLACK[0]).generate_signature(timestamp=ts, body=body)
    return {"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": sig}


def _bytes(body):
    return body.encode() if isinstance(body, str) else body


def gh(body, secret=None):
    return "sha256=" + hmac.new((secret or GITHUB[0]).encode(), _bytes(body), hashlib.sha256).hexdigest()


def github_headers(body, delivery=None, event="issues", secret=None):
    """Headers of a signed GitHub delivery (its id header is not signed)."""
    return {"X-GitHub-Event": event, "X-GitHub-Delivery": delivery or str(uuid.uuid4()),
            "Content-Type": "application/json", "X-Hub-Signature-256": gh(body, secret)}


def github_body():
    return json.dumps({"action": "opened", "issue": {"number": 1, "node": uuid.uuid4().hex}})


def shop(body, secret=None):
    return base64.b64encode(hmac.new((secret or SHOPIFY[0]).encode(), _bytes(body), hashlib.sha256).digest()).decode()


def shopify_headers(body, wid=None, topic="orders/create", secret=None):
    return {"X-Shopify-Topic": topic, "X-Shopify-Webhook-Id": wid or str(uuid.uuid4()),
            "Content-Type": "application/json", "X-Shopify-Hmac-Sha256": shop(body, secret)}


def meta_sig(body, secret=None):
    """Meta's X-Hub-Signature-256: "sha256=" + hex HMAC-SHA256(app secret, raw body)."""
    return "sha256=" + hmac.new((secret or META[0]).encode(), _bytes(body), hashlib.sha256).hexdigest()


def meta_headers(body, secret=None):
    return {"Content-Type": "application/json", "X-Hub-Signature-256": meta_sig(body, secret)}


def x_sig(body, secret=None):
    """X's X-Twitter-Webhooks-Signature: "sha256=" + base64 HMAC-SHA256(consumer secret, raw body)."""
    return "sha256=" + base64.b64encode(hmac.new((secret or X[0]).encode(), _bytes(body), hashlib.sha256).digest()).decode()


def x_headers(body, secret=None):
    return {"Content-Type": "application/json", "X-Twitter-Webhooks-Signature": x_sig(body, secret)}


def x_crc_token(crc_token, secret=None):
    """The response_token X expects for a CRC challenge (its Account Activity docs)."""
    return x_sig(crc_token, secret or X[0])

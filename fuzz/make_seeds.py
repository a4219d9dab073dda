#!/usr/bin/env python3
"""Writes the committed seed corpora under fuzz/corpus/<target>/ from the
provider vectors in tests/vectors/*.json plus hostile variants. Re-run from
the repository root after changing the vectors: python3 fuzz/make_seeds.py"""
import base64, hashlib, hmac, json, os, struct

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORPUS = os.path.join(ROOT, "fuzz", "corpus")


def write(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def block(pairs):
    return "".join(f"{k}: {v}\n" for k, v in pairs).encode()


def vectors(provider):
    with open(os.path.join(ROOT, "tests", "vectors", provider + ".json")) as f:
        return json.load(f)["vectors"]


HEX = "0ad5af9a342412b0d421446485d5626540c4dfb9b2afd69232d115a07791451e"
B64 = "g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="

# Hostile variants per parser: (signature header, timestamp header or None, bad values).
HOSTILE = {
    "stripe": [
        [("stripe-signature", "")],
        [("stripe-signature", "t=+123,v1=" + HEX)],
        [("stripe-signature", "t=0123,v1=" + HEX)],
        [("stripe-signature", "t=1.7e9,v1=" + HEX)],
        [("stripe-signature", "t=1700000000,v0=" + HEX)],
        [("stripe-signature", "t=1700000000,v1=" + HEX[:31])],
        [("stripe-signature", "t=1700000000,t=1700000001,v1=" + HEX)],
        [("stripe-signature", "t=1700000000,v1=" + HEX), ("stripe-signature", "t=1700000000,v1=" + HEX)],
        [("stripe-signature", "t=1700000000," + ",".join(["v1=" + HEX] * 40))],
        [("stripe-signature", "t=1700000000,v1=" + "a" * 5000)],
        [("stripe-signature", "t=17000000\u00e9,v1=" + HEX)],
        [("stripe-signature", ",,,=,t=,v1=")],
    ],
    "github": [
        [("x-hub-signature-256", "")],
        [("x-hub-signature-256", "sha256=")],
        [("x-hub-signature-256", "sha256=" + HEX[:63])],
        [("x-hub-signature-256", "sha256=" + HEX), ("x-hub-signature-256", "sha256=" + HEX)],
        [("x-hub-signature-256", "SHA256=" + HEX.upper())],
        [("x-hub-signature-256", "sha256=" + HEX + " ")],
        [("x-hub-signature-256", "sha256=" + "\u00e9" * 32)],
        [("x-hub-signature-256", "sha256=" + "f" * 10000)],
    ],
    "standard": [
        [("webhook-id", "msg_1"), ("webhook-timestamp", "+123"), ("webhook-signature", "v1," + B64)],
        [("webhook-id", "msg_1"), ("webhook-timestamp", "0123"), ("webhook-signature", "v1," + B64)],
        [("webhook-id", "msg_1"), ("webhook-timestamp", "1.7e9"), ("webhook-signature", "v1," + B64)],
        [("webhook-id", "msg_1"), ("webhook-timestamp", "1614265330"), ("webhook-signature", "v1," + B64[:20])],
        [("webhook-id", "msg_1"), ("webhook-timestamp", "1614265330"), ("webhook-signature", "v1,")],
        [("webhook-id", "msg_1"), ("webhook-timestamp", "1614265330"), ("webhook-signature", " ".join(["v1," + B64] * 40))],
        [("webhook-id", "msg_1"), ("svix-id", "msg_2"), ("webhook-timestamp", "1614265330"), ("webhook-signature", "v1a,x v1," + B64)],
        [("webhook-id", "msg_1"), ("webhook-id", "msg_1"), ("webhook-timestamp", "1614265330"), ("webhook-signature", "v1," + B64)],
        [("webhook-id", ""), ("webhook-timestamp", ""), ("webhook-signature", "")],
    ],
    "slack": [
        [("x-slack-signature", "v0="), ("x-slack-request-timestamp", "1531420618")],
        [("x-slack-signature", "v0=" + HEX), ("x-slack-request-timestamp", "+123")],
        [("x-slack-signature", "v0=" + HEX), ("x-slack-request-timestamp", "0123")],
        [("x-slack-signature", "v0=" + HEX), ("x-slack-request-timestamp", "1.7e9")],
        [("x-slack-signature", "v0=" + HEX[:40]), ("x-slack-request-timestamp", "1531420618")],
        [("x-slack-signature", "v0=" + HEX), ("x-slack-request-timestamp", "1531420618"), ("x-slack-request-timestamp", "1531420618")],
        [("x-slack-signature", "v0=" + HEX + "," + "v0=" + HEX), ("x-slack-request-timestamp", "1531420618")],
    ],
    "shopify": [
        [("x-shopify-hmac-sha256", "")],
        [("x-shopify-hmac-sha256", B64[:43])],
        [("x-shopify-hmac-sha256", B64[:-1] + "==")],
        [("x-shopify-hmac-sha256", B64), ("shopify-hmac-sha256", "u7wvKRfP5HmT3fkB9h/FLBw6frxumazBE6JRSssGao0=")],
        [("x-shopify-hmac-sha256", B64), ("x-shopify-hmac-sha256", B64)],
        [("x-shopify-hmac-sha256", "=" * 44)],
        [("x-shopify-hmac-sha256", "A" * 9000)],
    ],
}

HOSTILE["custom"] = [
    [("x-acme-timestamp", "1700000000"), ("x-acme-id", "evt_1"), ("x-acme-signature", "v1=" + B64)],
    [("x-acme-timestamp", "1700000000"), ("x-acme-id", "evt_1"), ("x-acme-signature", "v1=" + B64 + " v1=" + B64 + " v2=abc")],
    [("x-acme-timestamp", "1700000000"), ("x-acme-id", "evt_1"), ("x-acme-signature", "v1=")],
    [("x-acme-timestamp", "1700000000"), ("x-acme-id", "evt_1"), ("x-acme-signature", "v1=" + B64[:30])],
    [("x-acme-timestamp", "1700000000"), ("x-acme-id", "evt_1"), ("x-acme-signature", "v1=" + HEX)],
    [("x-acme-timestamp", "+123"), ("x-acme-id", "evt_1"), ("x-acme-signature", "v1=" + B64)],
    [("x-acme-timestamp", "0123"), ("x-acme-id", "evt_1"), ("x-acme-signature", "v1=" + B64)],
    [("x-acme-timestamp", "1.7e9"), ("x-acme-id", "evt_1"), ("x-acme-signature", "v1=" + B64)],
    [("x-acme-timestamp", "1700000000"), ("x-acme-timestamp", "1700000000"), ("x-acme-signature", "v1=" + B64)],
    [("x-acme-id", "evt_1"), ("x-acme-signature", "v1=" + B64)],
    [("x-acme-timestamp", "1700000000"), ("x-acme-id", "evt_1"), ("x-acme-signature", " ".join(["v1=" + B64] * 40))],
    [("x-acme-timestamp", "1700000000"), ("x-acme-signature", "v1=" + B64), ("x-acme-signature", "v1=" + B64)],
]

ED_SIG = "756baa610c8465c468a26af3c4d3bac60c8f46660d21e1292acde7be2082a0850a2a5757e0ca63e815c8f01270a56637d20ab35d5d13e38218056b0d497f370c"
HOSTILE["discord"] = [
    [("x-signature-ed25519", ED_SIG), ("x-signature-timestamp", "+123")],
    [("x-signature-ed25519", ED_SIG), ("x-signature-timestamp", "0123")],
    [("x-signature-ed25519", ED_SIG), ("x-signature-timestamp", "1700000000000")],
    [("x-signature-ed25519", ED_SIG[:127]), ("x-signature-timestamp", "1700000000")],
    [("x-signature-ed25519", ED_SIG + "00"), ("x-signature-timestamp", "1700000000")],
    [("x-signature-ed25519", "0x" + ED_SIG[2:]), ("x-signature-timestamp", "1700000000")],
    [("x-signature-ed25519", ED_SIG), ("x-signature-ed25519", ED_SIG), ("x-signature-timestamp", "1700000000")],
    [("x-signature-ed25519", ""), ("x-signature-timestamp", "")],
    [("x-signature-ed25519", "f" * 9000), ("x-signature-timestamp", "1700000000")],
]
SG_SIG = "MEUCIQCtIHJeH93Y+qpYeWrySphQgpNGNr/U+UyUlBkU6n7RAwIgJTz2C+8a8xonZGi6BpSzoQsbVRamr2nlxFDWYNH2j/0="
SG_TS = "x-twilio-email-event-webhook-timestamp"
SG_SIG_H = "x-twilio-email-event-webhook-signature"
HOSTILE["sendgrid"] = [
    [(SG_SIG_H, SG_SIG), (SG_TS, "+123")],
    [(SG_SIG_H, SG_SIG.rstrip("=")), (SG_TS, "1588788367")],
    [(SG_SIG_H, base64.b64encode(bytes([0x30, 0x06, 0x02, 0x01, 0x00, 0x02, 0x01, 0x00])).decode()), (SG_TS, "1588788367")],
    [(SG_SIG_H, base64.b64encode(bytes([0x30, 0x80, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01, 0x00, 0x00])).decode()), (SG_TS, "1588788367")],
    [(SG_SIG_H, base64.b64encode(bytes([0x30, 0x81, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01])).decode()), (SG_TS, "1588788367")],
    [(SG_SIG_H, base64.b64encode(bytes([0x30, 0x46, 0x02, 0x21]) + bytes(33) + bytes([0x02, 0x21]) + bytes(33)).decode()), (SG_TS, "1588788367")],
    [(SG_SIG_H, base64.b64encode(bytes(75)).decode()), (SG_TS, "1588788367")],
    [(SG_SIG_H, SG_SIG), (SG_SIG_H, SG_SIG), (SG_TS, "1588788367")],
    [(SG_SIG_H, "A" * 9000), (SG_TS, "1588788367")],
]

COMMON = [
    ("empty", b""),
    ("nonascii", "x-h\u00e9: \u00e9\u00e9\n\u00ff\u00fe: v\n".encode("latin-1")),
    ("crlf-garbage", b":\r\n::\r\n \t: x\r\nname\r\n"),
    ("huge-value", b"x-big: " + b"A" * 20000 + b"\n"),
]

PP_SIG = base64.b64encode(bytes(range(256))).decode()
PP_OK = [
    ("paypal-transmission-id", "dfb3be50-fd74-11e4-8bf3-77339302725b"),
    ("paypal-transmission-time", "2015-05-18T15:45:13Z"),
    ("paypal-cert-url", "https://api.sandbox.paypal.com/v1/notifications/certs/CERT-360caa42-fca2a594-a5cafa77"),
    ("paypal-auth-algo", "SHA256withRSA"),
]
HOSTILE["paypal"] = [
    PP_OK + [("paypal-transmission-sig", PP_SIG)],
    PP_OK[:1] + [("paypal-transmission-time", "2015-05-18T15:45:13")] + PP_OK[2:] + [("paypal-transmission-sig", PP_SIG)],
    PP_OK[:3] + [("paypal-auth-algo", "SHA1withRSA"), ("paypal-transmission-sig", PP_SIG)],
    PP_OK + [("paypal-transmission-sig", PP_SIG[:-4])],
    PP_OK + [("paypal-transmission-sig", PP_SIG), ("paypal-transmission-sig", PP_SIG)],
    [("paypal-transmission-id", "1" * 80)] + PP_OK[1:] + [("paypal-transmission-sig", PP_SIG)],
]

# parse_headers: the first byte picks the scheme (its index in SCHEMES,
# modulo their number, as fuzz/src/lib.rs reads it), the rest is the block.
SCHEMES = ["stripe", "github", "standard", "slack", "shopify", "custom", "discord", "sendgrid", "paypal"]
for index, provider in enumerate(SCHEMES):
    tag = bytes([index])
    if provider != "custom":
        for i, v in enumerate(vectors(provider)):
            write("parse_headers", f"{provider}-vector-{i:02}-{v['name']}", tag + block(v["headers"].items()))
    for i, pairs in enumerate(HOSTILE[provider]):
        write("parse_headers", f"{provider}-hostile-{i:02}", tag + block(pairs))
    for name, data in COMMON:
        write("parse_headers", f"{provider}-{name}", tag + data)

# timestamp: now (i64 LE), tolerance (u64 LE), other (i64 LE), raw.
def ts(now, tol, other, raw):
    return struct.pack("<qQq", now, tol, other) + raw

for i, (now, tol, other, raw) in enumerate([
    (1700000000, 300, 1700000300, b"1700000000"),
    (1700000000, 300, 1700000301, b"1699999699"),
    (0, 0, 0, b"0"),
    (-(2**63), 300, 2**63 - 1, b"9999999999"),
    (2**63 - 1, 2**64 - 1, -(2**63), b"99999999999"),
    (1700000000, 300, 0, b"+123"),
    (1700000000, 300, 0, b"0123"),
    (1700000000, 300, 0, b"1.7e9"),
    (1700000000, 300, 0, b"-5"),
    (1700000000, 300, 0, b"1700000000000"),
    (1700000000, 300, 0, b" 1700000000"),
    (1700000000, 300, 0, b""),
    (1700000000, 300, 0, "\u0661\u0662".encode()),
]):
    write("timestamp", f"seed-{i:02}", ts(now, tol, other, raw))

# client_ip: trusted-set byte, header byte, peer byte (+ bytes), lines.
for i, data in enumerate([
    bytes([1, 0, 3]) + b"203.0.113.7, 10.0.0.2\n10.9.9.9",
    bytes([2, 1, 3]) + b'for=198.51.100.1;proto=https, for="[2001:db8::17]:4711"\nfor=10.0.0.1',
    bytes([3, 2, 0, 10, 0, 0, 1]) + b"1.2.3.4:8080, [2001:db8::5]:443\nfor=_hidden, for=unknown",
    bytes([4, 0, 2, 10, 0, 0, 9]) + b"::ffff:192.0.2.1, ::ffff:10.0.0.3",
    bytes([5, 1, 3 + 4 * 4]) + b'For="127.0.0.1";for=1.1.1.1\nfor="[::1',
    bytes([6, 0, 1]) + bytes(16) + b"garbage, ,,, 300.1.1.1, 10.1.2.3",
    bytes([0, 0, 0, 8, 8, 8, 8]) + b"1.1.1.1",
    bytes([3, 0, 3]) + (b"10.0.0.1," * 100),
]):
    write("client_ip", f"seed-{i:02}", data)

for i, data in enumerate([b"", b"\x06stripeevt_1", b"\x00", b"\xff" + b"x" * 300, b"\x03\xe2\x82\xacbody"]):
    write("dedupe_key", f"seed-{i:02}", data)

stripe_body = vectors("stripe")[0]["body"]
for i, data in enumerate([
    stripe_body,
    '{"id":"evt_1","object":"event","type":"x","created":1.5,"data":{"object":[]}}',
    '{"a":1,"a":2}',
    '{"id":"evt_1","id":"evt_2"}',
    "[" * 200 + "]" * 200,
    '{"n":1e400,"m":-0,"s":"\\ud800"}',
    "\ufeff{}",
    '{"id":"e","object":"event","type":"t","created":1700000000,"data":{"object":{}}} x',
    "",
    # Typed reads: numeric and boolean keys, tags, a struct variant as an array.
    '{"by_number":{"07":true,"1":false},"pair":[1,"x"],"tagged":{"type":"paid","amount":1}}',
    '{"kind":{"c":[false]},"loose":[1,1.5,"a",{"k":null}],"type":"c","c":{"x":1}}',
    '[1,""]',
]):
    write("json_schema", f"seed-{i:02}", data)

# router: route, method, flags, offset, id; header lines; blank line; body.
stripe_evt = stripe_body.encode()
slack_form = vectors("slack")[0]["body"].encode()
for i, data in enumerate([
    bytes([0, 0, 1, 0, 0]) + b"content-type: application/json\n\n" + stripe_evt,
    bytes([0, 0, 0, 0, 0]) + b"stripe-signature: t=1700000000,v1=" + HEX.encode() + b"\n\n" + stripe_evt,
    bytes([0, 0, 3, 0, 0]) + b"\n\n" + stripe_evt,
    bytes([0, 0, 1, 31, 0]) + b"\n\n" + stripe_evt,
    bytes([1, 0, 1, 0, 0]) + b"x-github-event: push\n\n" + b'{"zen":"hi"}',
    bytes([1, 0, 1, 0, 0]) + b"content-encoding: gzip\n\n" + b'{"zen":"hi"}',
    bytes([1, 0, 1, 0, 0]) + b"\n\n" + b"x" * 300,
    bytes([2, 0, 1, 0, 1]) + b"\n\n" + b'{"type":"user.created","timestamp":"2024-01-01T00:00:00Z","data":{}}',
    bytes([2, 0, 1, 0, 1]) + b"\n\n" + b'{"type":"user.created"}',
    bytes([3, 0, 1, 0, 0]) + b"content-type: application/x-www-form-urlencoded\n\n" + slack_form,
    bytes([3, 0, 1, 0, 0]) + b"content-type: application/json\n\n" + b'{"type":"url_verification","challenge":"abc"}',
    bytes([3, 0, 1, 0, 0]) + b"\n\n" + b"not json",
    bytes([0, 5, 0, 0, 0]) + b"\n\n",
    bytes([2, 6, 1, 0, 0]) + b"\n\n{}",
]):
    write("router", f"seed-{i:02}", data)

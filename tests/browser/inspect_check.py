#!/usr/bin/env python3
"""Drives the inspector page in a real headless Chromium over the DevTools
protocol and checks what it shows.

Started by scripts/inspect_browser.sh with the running example's addresses:

    inspect_check.py --webhooks http://127.0.0.1:W --inspect http://127.0.0.1:P/inspect \
        --secret whsec_... --out DIR

It opens the page, then sends a signed Stripe delivery, a tampered one
(signature mismatch), a stale one (an hour old), a replay of the first
(duplicate) and one with a hostile header value, and checks by evaluating
JavaScript in the page that the rows appear without a reload, with the
right verdicts, reasons and skew, the signature masked, the hostile value
shown as text, and the copy-as-curl command built. Saves a screenshot
under DIR. Standard library only (a minimal WebSocket client included).
Exits 1 on the first failed check.
"""

import argparse
import base64
import hashlib
import hmac
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

HOSTILE = '<img src=x onerror="window.__pwned=1">\'"$(id)`id`'


class WebSocket:
    """A minimal RFC 6455 client: text frames, fragmentation, ping/pong."""

    def __init__(self, url, timeout=30.0):
        parts = urllib.parse.urlparse(url)
        self.sock = socket.create_connection((parts.hostname, parts.port), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        path = parts.path + (("?" + parts.query) if parts.query else "")
        request = (
            f"GET {path} HTTP/1.1\r\nHost: {parts.hostname}:{parts.port}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        self.sock.sendall(request.encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(1)
            if not chunk:
                raise RuntimeError("websocket handshake: connection closed")
            head += chunk
        status = head.split(b"\r\n", 1)[0]
        if b" 101 " not in status:
            raise RuntimeError(f"websocket handshake refused: {status!r}")

    def _exact(self, n):
        data = bytearray()
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise RuntimeError("websocket closed")
            data += chunk
        return bytes(data)

    def _send_frame(self, opcode, payload):
        header = bytearray([0x80 | opcode])
        n = len(payload)
        if n < 126:
            header.append(0x80 | n)
        elif n < 1 << 16:
            header.append(0x80 | 126)
            header += struct.pack(">H", n)
        else:
            header.append(0x80 | 127)
            header += struct.pack(">Q", n)
        mask = os.urandom(4)
        header += mask
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(bytes(header) + masked)

    def send(self, text):
        self._send_frame(0x1, text.encode())

    def recv(self):
        message = bytearray()
        while True:
            b0, b1 = self._exact(2)
            opcode, n = b0 & 0x0F, b1 & 0x7F
            if n == 126:
                n = struct.unpack(">H", self._exact(2))[0]
            elif n == 127:
                n = struct.unpack(">Q", self._exact(8))[0]
            mask = self._exact(4) if b1 & 0x80 else None
            payload = self._exact(n)
            if mask:
                payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
            if opcode == 0x9:  # ping
                self._send_frame(0xA, payload)
                continue
            if opcode == 0x8:
                raise RuntimeError("websocket closed by the browser")
            if opcode in (0x0, 0x1, 0x2):
                message += payload
                if b0 & 0x80:
                    return message.decode()

    def close(self):
        try:
            self._send_frame(0x8, b"")
        except OSError:
            pass
        self.sock.close()


class Page:
    """One DevTools page session."""

    def __init__(self, ws_url):
        self.ws = WebSocket(ws_url)
        self.next_id = 0

    def call(self, method, **params):
        self.next_id += 1
        my_id = self.next_id
        self.ws.send(json.dumps({"id": my_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv())
            if message.get("id") == my_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})

    def eval(self, expression):
        result = self.call(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
        )
        if "exceptionDetails" in result:
            raise RuntimeError(f"page script failed: {result['exceptionDetails']}")
        return result["result"].get("value")


FAILURES = []
PASSED = []


def check(condition, what):
    print(("ok   " if condition else "FAIL ") + what)
    (PASSED if condition else FAILURES).append(what)


def wait_for(page, expression, what, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = page.eval(expression)
        if value:
            return value
        time.sleep(0.2)
    raise RuntimeError(f"timed out waiting for {what}")


def stripe_headers(secret, body, at):
    signed = f"{at}.".encode() + body
    sig = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return {"Content-Type": "application/json", "Stripe-Signature": f"t={at},v1={sig}"}, sig


def post(url, body, headers):
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as e:
        return e.code


def launch_chromium(profile):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if not chromium:
        raise RuntimeError("chromium is not on PATH")
    args = [
        chromium,
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-extensions",
        # No name resolves: the page can reach only the loopback address.
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
        "--remote-debugging-address=127.0.0.1",
        "--remote-debugging-port=0",
        f"--user-data-dir={profile}",
        "--window-size=1500,1000",
        "about:blank",
    ]
    log = open(os.path.join(profile, "chromium.log"), "w")
    process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
    port_file = os.path.join(profile, "DevToolsActivePort")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"chromium exited with {process.returncode} (log: {log.name})")
        if os.path.exists(port_file):
            lines = open(port_file).read().split()
            if lines:
                return process, int(lines[0])
        time.sleep(0.1)
    process.kill()
    raise RuntimeError("chromium did not open its DevTools port")


def page_target(port):
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=5) as r:
            targets = [t for t in json.load(r) if t.get("type") == "page"]
        if targets:
            return targets[0]["webSocketDebuggerUrl"]
        time.sleep(0.1)
    raise RuntimeError("no page target")


ROWS_JS = """(() => Array.from(document.querySelectorAll('#rows tr.entry')).map(tr => ({
  id: Number(tr.dataset.id),
  verdict: tr.querySelector('.verdict').textContent,
  status: tr.querySelector('td.status').textContent,
  reason: tr.querySelector('td.reason').textContent,
  hints: tr.querySelector('td.hints').textContent,
  skew: tr.querySelector('td.skew').textContent,
  secret: tr.querySelector('td.secret').textContent,
  size: tr.querySelector('td.size').textContent,
  sha: tr.querySelector('td.sha').title,
})))()"""


def run(args):
    os.makedirs(args.out, exist_ok=True)
    profile = tempfile.mkdtemp(prefix="inspect-chromium-")
    process = None
    try:
        process, port = launch_chromium(profile)
        page = Page(page_target(port))
        page.call("Page.enable")
        page.call("Runtime.enable")
        page.call(
            "Emulation.setDeviceMetricsOverride",
            width=1500, height=1000, deviceScaleFactor=1, mobile=False,
        )
        navigated = page.call("Page.navigate", url=args.inspect)
        if navigated.get("errorText"):
            raise RuntimeError(f"loading {args.inspect}: {navigated['errorText']}")
        wait_for(page, "document.readyState === 'complete' && !!document.getElementById('rows')", "the page")
        wait_for(page, "document.getElementById('state').textContent.startsWith('live:')", "the first poll")
        check(page.eval("document.querySelectorAll('#rows tr.entry').length") == 0, "no row before any delivery")
        # Lost if the page reloads: the rows must come by the live update.
        page.eval("window.__marker = 'same-page'; true")

        url = args.webhooks.rstrip("/") + "/webhooks/stripe"
        now = int(time.time())
        body = json.dumps({"id": "evt_browser_0001", "type": "invoice.paid"}).encode()
        headers, signature = stripe_headers(args.secret, body, now)
        check(post(url, body, headers) == 200, "the signed delivery is answered 200")

        tampered = body.replace(b"invoice.paid", b"invoice.void")
        t_headers, t_signature = stripe_headers(args.secret, body, now)
        check(post(url, tampered, t_headers) == 401, "the tampered delivery is answered 401")

        stale_body = json.dumps({"id": "evt_browser_0002", "type": "invoice.paid"}).encode()
        s_headers, _ = stripe_headers(args.secret, stale_body, now - 3600)
        stale_status = post(url, stale_body, s_headers)
        check(400 <= stale_status < 500, f"the stale delivery is refused ({stale_status})")

        check(post(url, body, headers) == 200, "the replayed delivery is answered 200")

        hostile_body = json.dumps({"id": "evt_browser_0003", "type": "invoice.paid"}).encode()
        h_headers, _ = stripe_headers(args.secret, hostile_body, now)
        h_headers["X-Note"] = HOSTILE
        check(post(url, hostile_body, h_headers) == 200, "the delivery with a hostile header is answered 200")

        wait_for(page, "document.querySelectorAll('#rows tr.entry').length >= 5", "five rows")
        check(page.eval("window.__marker") == "same-page", "the rows came without a reload")
        rows = page.eval(ROWS_JS)
        rows.sort(key=lambda r: r["id"])
        check(len(rows) == 5, f"five rows ({len(rows)})")
        signed, tamper, stale, replay, hostile = rows[:5]

        check((signed["verdict"], signed["status"], signed["reason"]) == ("processed", "200", "—"),
              f"signed: processed 200 ({signed})")
        check(signed["secret"] == "dev", f"signed: secret label dev ({signed['secret']})")
        check(signed["sha"] == hashlib.sha256(body).hexdigest(), "signed: the body's SHA-256")
        check(signed["size"] == f"{len(body)} B", f"signed: body size ({signed['size']})")
        check(signed["hints"] == "", "signed: no hints")
        check((tamper["verdict"], tamper["status"], tamper["reason"]) == ("rejected", "401", "signature_mismatch"),
              f"tampered: rejected 401 signature_mismatch ({tamper})")
        check(tamper["sha"] == hashlib.sha256(tampered).hexdigest(), "tampered: the SHA-256 of the bytes received")
        check(tamper["secret"] == "—", "tampered: no secret matched")
        check((stale["verdict"], stale["reason"]) == ("rejected", "timestamp_out_of_tolerance"),
              f"stale: rejected timestamp_out_of_tolerance ({stale})")
        check(stale["skew"].startswith("+36") and stale["skew"].endswith(" s"), f"stale: skew about an hour ({stale['skew']})")
        check(replay["verdict"] == "duplicate", f"replayed: duplicate ({replay['verdict']})")
        check(hostile["verdict"] == "processed", "hostile: processed")

        # Open the signed row's details and build its curl command.
        sid = signed["id"]
        page.eval(f"document.querySelector('tr.entry[data-id=\"{sid}\"] button.copy-curl').click(); true")
        curl = wait_for(page,
                        f"(document.querySelector('tr.entry[data-id=\"{sid}\"]').nextElementSibling"
                        ".querySelector('textarea.curl') || {}).value",
                        "the curl command")
        check(curl.startswith("curl -sS -X 'POST' 'http://127.0.0.1:"), "curl: method and URL")
        check("/webhooks/stripe'" in curl, "curl: the path")
        check("-H 'stripe-signature: '\"$STRIPE_SIGNATURE\"" in curl, "curl: the signature as a placeholder")
        check("--data-binary @body.json" in curl, "curl: the body from body.json")
        check(signature not in curl and t_signature not in curl, "curl: no signature value")

        shown = page.eval(
            f"document.querySelector('tr.entry[data-id=\"{sid}\"]').nextElementSibling.querySelector('dd.masked')"
            ".textContent")
        check(shown == f"t={now},v1=<masked, 64 bytes>", f"the signature header is shown masked ({shown})")
        text = page.eval("document.body.innerText + document.documentElement.outerHTML")
        check(signature not in text and t_signature not in text, "no signature anywhere in the page")
        check(args.secret not in text, "no secret anywhere in the page")

        # The hostile value: shown as text, never run or parsed as markup.
        hid = hostile["id"]
        page.eval(f"document.querySelector('tr.entry[data-id=\"{hid}\"] button.more').click(); true")
        note = page.eval(
            f"Array.from(document.querySelector('tr.entry[data-id=\"{hid}\"]').nextElementSibling"
            ".querySelectorAll('dt')).filter(dt => dt.textContent === 'x-note')"
            ".map(dt => dt.nextElementSibling.textContent)[0]")
        check(note == HOSTILE, f"the hostile header value is shown as text ({note!r})")
        check(page.eval("document.querySelectorAll('#rows img').length") == 0, "no element made from a value")
        check(page.eval("typeof window.__pwned") == "undefined", "no script run from a value")

        # New deliveries keep arriving on the same page.
        body2 = json.dumps({"id": "evt_browser_0004", "type": "invoice.paid"}).encode()
        headers2, _ = stripe_headers(args.secret, body2, int(time.time()))
        post(url, body2, headers2)
        wait_for(page, "document.querySelectorAll('#rows tr.entry').length >= 6", "the sixth row")
        top = page.eval("document.querySelector('#rows tr.entry').dataset.id")
        check(int(top) == max(r["id"] for r in rows) + 1, "the newest row is on top")

        page.eval("window.scrollTo(0, 0); true")
        shot = page.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        path = os.path.join(args.out, "inspect.png")
        with open(path, "wb") as f:
            f.write(base64.b64decode(shot["data"]))
        print(f"screenshot: {path}")
        page.ws.close()
    finally:
        if process is not None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        shutil.rmtree(profile, ignore_errors=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--webhooks", required=True)
    parser.add_argument("--inspect", required=True)
    parser.add_argument("--secret", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    try:
        run(args)
    except Exception as e:  # a broken step is a failure, with its reason
        print(f"FAIL {e}")
        FAILURES.append(str(e))
    if FAILURES:
        print("failed: " + "; ".join(FAILURES))
    print(f"inspect-browser: {len(PASSED)} passed, {len(FAILURES)} failed")
    return 1 if FAILURES or not PASSED else 0


if __name__ == "__main__":
    sys.exit(main())

//! Verified deliveries through a real axum router: the happy path of every
//! scheme, secret rotation, raw (non-UTF-8) bodies reaching the handler
//! byte for byte, the `VerifiedWebhook` getters, custom schemes (Meta, X and
//! a timestamped one) checked against an independent HMAC, and redaction of
//! secrets in `Debug` / `Display`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::routing::post;
use axum::Router;
use base64::Engine as _;
use bytes::Bytes;
use hmac::{Hmac, Mac as _};
use http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use http_body::Frame;
use serde_json::Value;
use sha2::Sha256;
use webhook_guard::test_util::TestSigner;
use webhook_guard::{
    CustomScheme, FixedClock, Provider, RejectionKind, Scheme, Secret, SignatureEncoding, SignedPiece,
    VerifiedWebhook, Verifier,
};

use support::{app, assert_ok, assert_problem, post_request, send};

const NOW: i64 = 1_700_000_000;
const STANDARD_OLD: &str = "whsec_b2xkLXN0YW5kYXJkLXdlYmhvb2tzLXNlY3JldA==";
const STANDARD_NEW: &str = "whsec_bmV3LXN0YW5kYXJkLXdlYmhvb2tzLXNlY3JldCEh";

fn mac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The five named schemes with two secrets each (old, new), in the form
/// each provider hands them out.
fn named() -> [(Scheme, &'static str, &'static str); 5] {
    [
        (
            Scheme::stripe(),
            "whsec_old_stripe_secret",
            "whsec_new_stripe_secret",
        ),
        (Scheme::github(), "old github secret", "new github secret"),
        (Scheme::standard_webhooks(), STANDARD_OLD, STANDARD_NEW),
        (
            Scheme::slack(),
            "old-slack-signing-secret",
            "new-slack-signing-secret",
        ),
        (Scheme::shopify(), "shpss_old_shopify", "shpss_new_shopify"),
    ]
}

fn verifier(scheme: &Scheme, secrets: impl IntoIterator<Item = Secret>) -> Verifier {
    Verifier::builder(scheme.clone())
        .secrets(secrets)
        .clock(FixedClock::new(NOW))
        .build()
        .unwrap()
}

fn signer(scheme: &Scheme, secret: &str) -> TestSigner {
    TestSigner::new(scheme, secret).unwrap().timestamp(NOW)
}

fn meta() -> Scheme {
    Scheme::custom(
        CustomScheme::builder("meta", HeaderName::from_static("x-hub-signature-256"))
            .prefix("sha256=")
            .encoding(SignatureEncoding::Hex)
            .signed_content([SignedPiece::Body])
            .build()
            .unwrap(),
    )
}

fn x() -> Scheme {
    Scheme::custom(
        CustomScheme::builder("x", HeaderName::from_static("x-twitter-webhooks-signature"))
            .prefix("sha256=")
            .encoding(SignatureEncoding::Base64)
            .build()
            .unwrap(),
    )
}

/// `x-acme-signature: v1=<hex>` over `<x-acme-timestamp>.<body>`, with id
/// and event headers.
fn acme() -> Scheme {
    let ts = HeaderName::from_static("x-acme-timestamp");
    Scheme::custom(
        CustomScheme::builder("acme", HeaderName::from_static("x-acme-signature"))
            .prefix("v1=")
            .separator(b' ')
            .encoding(SignatureEncoding::Hex)
            .timestamp_header(ts.clone())
            .signed_content([
                SignedPiece::Header(ts),
                SignedPiece::literal("."),
                SignedPiece::Body,
            ])
            .delivery_id_header(HeaderName::from_static("x-acme-delivery"))
            .event_type_header(HeaderName::from_static("x-acme-event"))
            .build()
            .unwrap(),
    )
}

#[tokio::test]
async fn every_scheme_verifies_what_its_sender_signs() {
    let body = br#"{"id":"evt_1","type":"thing.happened","event_id":"Ev1"}"#;
    let mut schemes: Vec<(Scheme, &str)> = named().into_iter().map(|(s, old, _)| (s, old)).collect();
    schemes.extend([
        (meta(), "meta-app-secret"),
        (x(), "x-consumer-secret"),
        (acme(), "acme-secret"),
    ]);
    for (scheme, secret) in schemes {
        let name = scheme.provider().name().to_owned();
        let (router, calls) = app(&verifier(&scheme, [Secret::new(secret)]));
        let request = signer(&scheme, secret).request("/hook", &body[..]);
        let echo = assert_ok(&name, send(router, request).await).await;
        assert_eq!(calls.load(Ordering::SeqCst), 1, "{name}");
        assert_eq!(echo["provider"], name.as_str());
        assert_eq!(echo["hook_body_hex"], hex::encode(body), "{name}");
        assert_eq!(echo["secret_index"], 0, "{name}");
        assert_eq!(echo["secret_label"], Value::Null, "{name}");
        let timestamped = scheme.is_timestamped();
        assert_eq!(
            echo["timestamp"] == NOW,
            timestamped,
            "{name}: timestamp {}",
            echo["timestamp"]
        );
    }
}

#[tokio::test]
async fn rotation_reports_which_secret_matched() {
    let body = br#"{"id":"evt_rot","type":"rotated"}"#;
    for (scheme, old, new) in named() {
        let name = scheme.provider().name().to_owned();
        let v = verifier(
            &scheme,
            [Secret::labeled("old", old), Secret::labeled("new", new)],
        );
        assert_eq!(v.secret_count(), 2);
        for (secret, index, label) in [(old, 0, "old"), (new, 1, "new")] {
            let (router, calls) = app(&v);
            let echo = assert_ok(
                &format!("{name} signed with {label}"),
                send(router, signer(&scheme, secret).request("/hook", &body[..])).await,
            )
            .await;
            assert_eq!(echo["secret_index"], index, "{name} {label}");
            assert_eq!(echo["secret_label"], label, "{name} {label}");
            assert_eq!(calls.load(Ordering::SeqCst), 1);
        }
        // Once the old secret is dropped, its signatures stop working.
        let (router, calls) = app(&verifier(&scheme, [Secret::new(new)]));
        let response = send(router, signer(&scheme, old).request("/hook", &body[..])).await;
        assert_problem(
            &format!("{name} old secret after rotation"),
            response,
            RejectionKind::SignatureMismatch,
            &name,
            &[old, new],
        )
        .await;
        assert_eq!(calls.load(Ordering::SeqCst), 0);
    }
}

#[tokio::test]
async fn stripe_header_with_two_v1_passes_when_either_matches() {
    let body = br#"{"id":"evt_two","type":"charge.succeeded"}"#;
    let secret = "whsec_current";
    let good = hex::encode(mac(secret.as_bytes(), &[b"1700000000.", body]));
    let other = hex::encode(mac(b"whsec_previous", &[b"1700000000.", body]));
    let v = verifier(&Scheme::stripe(), [Secret::new(secret)]);
    for sig in [
        format!("t={NOW},v1={other},v1={good}"),
        format!("t={NOW},v1={good},v1={other}"),
        format!("v1={other},t={NOW},v0={other},v1={good}"),
        format!("t={NOW},v1={}", good.to_uppercase()),
    ] {
        let (router, _) = app(&v);
        let h = support::headers(&[("stripe-signature", &sig)]);
        let echo = assert_ok(
            &sig,
            send(router, post_request(h, support::body(&body[..]))).await,
        )
        .await;
        assert_eq!(echo["delivery_id"], "evt_two", "{sig}");
    }
    // Neither matching: refused.
    let (router, _) = app(&v);
    let h = support::headers(&[("stripe-signature", &format!("t={NOW},v1={other},v1={other}"))]);
    let response = send(router, post_request(h, support::body(&body[..]))).await;
    assert_problem(
        "two wrong v1",
        response,
        RejectionKind::SignatureMismatch,
        "stripe",
        &[&good, secret],
    )
    .await;
}

#[tokio::test]
async fn standard_header_with_several_entries() {
    let body = br#"{"type":"user.created","timestamp":"2026-01-01T00:00:00Z","data":{}}"#;
    let key = base64::engine::general_purpose::STANDARD
        .decode(&STANDARD_NEW["whsec_".len()..])
        .unwrap();
    let good = b64(&mac(&key, &[b"msg_multi.1700000000.", body]));
    let wrong = b64(&mac(b"another key", &[b"msg_multi.1700000000.", body]));
    let v = verifier(&Scheme::standard_webhooks(), [Secret::new(STANDARD_NEW)]);
    for sig in [
        format!("v1,{wrong} v1,{good}"),
        format!("v1,{good} v1,{wrong}"),
        format!("v1a,{wrong} v2,{wrong} v1,{wrong} v1,{good}"),
        // Seven wrong plus the right one: eight v1 are allowed.
        format!("{} v1,{good}", vec![format!("v1,{wrong}"); 7].join(" ")),
    ] {
        let (router, _) = app(&v);
        let h = support::headers(&[
            ("webhook-id", "msg_multi"),
            ("webhook-timestamp", "1700000000"),
            ("webhook-signature", &sig),
        ]);
        let echo = assert_ok(
            &sig,
            send(router, post_request(h, support::body(&body[..]))).await,
        )
        .await;
        assert_eq!(echo["delivery_id"], "msg_multi");
        assert_eq!(echo["event_type"], "user.created");
    }
}

/// A body that arrives in several frames.
struct Chunks(VecDeque<Bytes>);

impl http_body::Body for Chunks {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.0.pop_front().map(|c| Ok(Frame::data(c))))
    }
}

#[tokio::test]
async fn non_utf8_bodies_verify_and_reach_the_handler_byte_for_byte() {
    let body: Vec<u8> = [
        0xff, 0xfe, 0x00, 0x80, 0xc3, 0x28, b'{', 0xed, 0xa0, 0x80, b'\r', b'\n', 0xf8,
    ]
    .into_iter()
    .chain((0..=255u8).rev())
    .collect();
    assert!(std::str::from_utf8(&body).is_err());
    let mut schemes: Vec<(Scheme, &str)> = named().into_iter().map(|(s, old, _)| (s, old)).collect();
    schemes.extend([(meta(), "meta-app-secret"), (acme(), "acme-secret")]);
    for (scheme, secret) in schemes {
        let name = scheme.provider().name().to_owned();
        let v = verifier(&scheme, [Secret::new(secret)]);
        let headers = signer(&scheme, secret).headers(&body);

        // In one frame.
        let (router, _) = app(&v);
        let echo = assert_ok(
            &name,
            send(router, post_request(headers.clone(), support::body(body.clone()))).await,
        )
        .await;
        assert_eq!(
            echo["hook_body_hex"],
            hex::encode(&body),
            "{name}: VerifiedWebhook::body"
        );
        assert_eq!(
            echo["extractor_body_hex"],
            hex::encode(&body),
            "{name}: Bytes extractor"
        );
        // The request body and VerifiedWebhook::body share one buffer.
        assert_eq!(echo["same_buffer"], true, "{name}: the body was copied");

        // In frames split inside multi-byte sequences.
        let chunks = Chunks(body.chunks(3).map(Bytes::copy_from_slice).collect());
        let (router, _) = app(&v);
        let echo = assert_ok(&name, send(router, post_request(headers, chunks)).await).await;
        assert_eq!(echo["extractor_body_hex"], hex::encode(&body), "{name}: chunked");
        assert_eq!(echo["same_buffer"], true, "{name}: the chunked body was copied");
    }

    // A handler that takes only `Bytes` gets the same bytes too.
    let scheme = Scheme::github();
    let v = verifier(&scheme, [Secret::new("s3cret")]);
    let router = Router::new().route("/hook", post(|b: Bytes| async move { b }).layer(v.layer()));
    let response = send(router, signer(&scheme, "s3cret").request("/hook", body.clone())).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(support::body_bytes(response).await, body);
}

#[tokio::test]
async fn getters_per_scheme() {
    let get = |scheme: Scheme,
               signer: TestSigner,
               body: &'static [u8],
               content_type: Option<&'static str>| async move {
        let mut request = signer.request("/hook", body);
        if let Some(ct) = content_type {
            request
                .headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
        }
        let (router, _) = app(&verifier(&scheme, [Secret::new("getter-secret")]));
        assert_ok(scheme.provider().name(), send(router, request).await).await
    };
    let s = |scheme: &Scheme| signer(scheme, "getter-secret");

    // Stripe: id and type from the body, the signed t.
    let stripe = Scheme::stripe();
    let e = get(
        stripe.clone(),
        s(&stripe),
        br#"{"id":"evt_9","object":"event","type":"customer.created"}"#,
        Some("application/json"),
    )
    .await;
    assert_eq!(
        (
            &e["provider"],
            &e["delivery_id"],
            &e["event_type"],
            &e["timestamp"],
            &e["timestamp_rfc"],
            &e["form"]
        ),
        (
            &"stripe".into(),
            &"evt_9".into(),
            &"customer.created".into(),
            &NOW.into(),
            &NOW.into(),
            &false.into()
        )
    );
    // Non-string fields count as absent.
    let e = get(stripe.clone(), s(&stripe), br#"{"id":7,"type":null}"#, None).await;
    assert_eq!(
        (&e["delivery_id"], &e["event_type"]),
        (&Value::Null, &Value::Null)
    );

    // GitHub: X-GitHub-Delivery and X-GitHub-Event, no timestamp.
    let github = Scheme::github();
    let e = get(
        github.clone(),
        s(&github)
            .id("8c6f0b1e-0000-11f0-8000-000000000001")
            .event_type("push"),
        br#"{"ref":"refs/heads/main"}"#,
        None,
    )
    .await;
    assert_eq!(e["provider"], "github");
    assert_eq!(e["delivery_id"], "8c6f0b1e-0000-11f0-8000-000000000001");
    assert_eq!(e["event_type"], "push");
    assert_eq!(e["timestamp"], Value::Null);
    assert_eq!(e["timestamp_rfc"], Value::Null);

    // Standard Webhooks: webhook-id, the body's type, the signed timestamp.
    let standard = Scheme::standard_webhooks();
    let std_signer = TestSigner::new(&standard, STANDARD_OLD)
        .unwrap()
        .timestamp(NOW)
        .id("msg_getters");
    let request = std_signer.request("/hook", &br#"{"type":"invoice.created","data":{}}"#[..]);
    let (router, _) = app(&verifier(&standard, [Secret::new(STANDARD_OLD)]));
    let e = assert_ok("standard", send(router, request).await).await;
    assert_eq!(
        (
            &e["provider"],
            &e["delivery_id"],
            &e["event_type"],
            &e["timestamp"]
        ),
        (
            &"standard".into(),
            &"msg_getters".into(),
            &"invoice.created".into(),
            &NOW.into()
        )
    );

    // Slack JSON: event_id and type.
    let slack = Scheme::slack();
    let e = get(
        slack.clone(),
        s(&slack),
        br#"{"type":"event_callback","event_id":"Ev08MFMKH6","event":{"type":"app_mention"}}"#,
        Some("application/json"),
    )
    .await;
    assert_eq!(
        (&e["delivery_id"], &e["event_type"], &e["timestamp"], &e["form"]),
        (
            &"Ev08MFMKH6".into(),
            &"event_callback".into(),
            &NOW.into(),
            &false.into()
        )
    );
    // Slack form: the slash command.
    let e = get(
        slack.clone(),
        s(&slack),
        b"token=x&command=%2Fweather&text=94070",
        Some("Application/X-WWW-Form-URLEncoded ; charset=utf-8"),
    )
    .await;
    assert_eq!(
        (&e["delivery_id"], &e["event_type"], &e["form"]),
        (&Value::Null, &"/weather".into(), &true.into())
    );
    // Slack form: interactivity.
    let e = get(
        slack.clone(),
        s(&slack),
        b"payload=%7B%22type%22%3A%22block_actions%22%7D",
        Some("application/x-www-form-urlencoded"),
    )
    .await;
    assert_eq!(e["event_type"], "interactive");

    // Shopify: X-Shopify-Webhook-Id and X-Shopify-Topic.
    let shopify = Scheme::shopify();
    let e = get(
        shopify.clone(),
        s(&shopify).id("b54557e4-0001").event_type("products/update"),
        br#"{"id":1}"#,
        None,
    )
    .await;
    assert_eq!(
        (
            &e["provider"],
            &e["delivery_id"],
            &e["event_type"],
            &e["timestamp"]
        ),
        (
            &"shopify".into(),
            &"b54557e4-0001".into(),
            &"products/update".into(),
            &Value::Null
        )
    );

    // Custom: its id and event headers and its timestamp.
    let acme = acme();
    let e = get(
        acme.clone(),
        s(&acme).id("dlv_42").event_type("order.paid"),
        b"{}",
        None,
    )
    .await;
    assert_eq!(
        (
            &e["provider"],
            &e["delivery_id"],
            &e["event_type"],
            &e["timestamp"]
        ),
        (
            &"acme".into(),
            &"dlv_42".into(),
            &"order.paid".into(),
            &NOW.into()
        )
    );
}

#[tokio::test]
async fn verified_webhook_helpers() {
    let scheme = Scheme::stripe();
    let v = verifier(&scheme, [Secret::new("whsec_helpers")]);
    let body = br#"{"id":"evt_h","type":"t","n":3}"#;
    let router = Router::new().route(
        "/hook",
        post(|hook: VerifiedWebhook| async move {
            let value: Value = hook.json().unwrap();
            let debug = format!("{hook:?}");
            assert!(matches!(hook.provider(), Provider::Stripe));
            assert_eq!(hook.timestamp().map(|t| t.unix_timestamp()), Some(NOW));
            format!("{}|{}", value["n"], debug)
        })
        .layer(v.layer()),
    );
    let response = send(
        router,
        signer(&scheme, "whsec_helpers").request("/hook", &body[..]),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    let text = String::from_utf8(support::body_bytes(response).await.to_vec()).unwrap();
    let (n, debug) = text.split_once('|').unwrap();
    assert_eq!(n, "3");
    // Debug shows the length, not the bytes.
    assert!(debug.contains("body_len: 31"), "{debug}");
    assert!(!debug.contains("\\\"n\\\""), "{debug}");
    assert_eq!(body.len(), 31);
}

/// Meta signs the body with the app secret: `X-Hub-Signature-256:
/// sha256=<hex>`. The tag is computed here with `hmac` directly.
#[tokio::test]
async fn meta_as_a_custom_scheme() {
    let secret = "meta-app-secret-1b2c";
    let body = br#"{"object":"page","entry":[{"id":"1","time":1700000000,"changes":[]}]}"#;
    let tag = hex::encode(mac(secret.as_bytes(), &[body]));
    let v = verifier(&meta(), [Secret::new(secret)]);

    let (router, calls) = app(&v);
    let h = support::headers(&[("x-hub-signature-256", &format!("sha256={tag}"))]);
    let echo = assert_ok(
        "meta",
        send(router, post_request(h, support::body(&body[..]))).await,
    )
    .await;
    assert_eq!(echo["provider"], "meta");
    assert_eq!(echo["timestamp"], Value::Null);
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    for (what, value, kind) in [
        (
            "sha1 prefix",
            format!("sha1={tag}"),
            RejectionKind::MalformedSignature,
        ),
        ("no prefix", tag.clone(), RejectionKind::MalformedSignature),
        (
            "base64",
            format!("sha256={}", b64(&hex::decode(&tag).unwrap())),
            RejectionKind::MalformedSignature,
        ),
        (
            "other secret",
            format!("sha256={}", hex::encode(mac(b"not the app secret", &[body]))),
            RejectionKind::SignatureMismatch,
        ),
    ] {
        let (router, calls) = app(&v);
        let h = support::headers(&[("x-hub-signature-256", &value)]);
        let response = send(router, post_request(h, support::body(&body[..]))).await;
        assert_problem(&format!("meta {what}"), response, kind, "meta", &[secret, &tag]).await;
        assert_eq!(calls.load(Ordering::SeqCst), 0);
    }
}

/// X (Twitter) signs the body with the consumer secret:
/// `X-Twitter-Webhooks-Signature: sha256=<base64>`.
#[tokio::test]
async fn x_as_a_custom_scheme() {
    let secret = "x-consumer-secret-77";
    let body = br#"{"for_user_id":"2244994945","tweet_create_events":[{"id_str":"1"}]}"#;
    let tag = b64(&mac(secret.as_bytes(), &[body]));
    let v = verifier(&x(), [Secret::new(secret)]);

    let (router, _) = app(&v);
    let h = support::headers(&[("x-twitter-webhooks-signature", &format!("sha256={tag}"))]);
    let echo = assert_ok("x", send(router, post_request(h, support::body(&body[..]))).await).await;
    assert_eq!(echo["provider"], "x");

    let hex_tag = hex::encode(mac(secret.as_bytes(), &[body]));
    for (what, value, kind) in [
        (
            "hex",
            format!("sha256={hex_tag}"),
            RejectionKind::MalformedSignature,
        ),
        (
            "unpadded",
            format!("sha256={}", tag.trim_end_matches('=')),
            RejectionKind::MalformedSignature,
        ),
        (
            "tampered",
            format!("sha256={}", b64(&mac(secret.as_bytes(), &[b"{}"]))),
            RejectionKind::SignatureMismatch,
        ),
    ] {
        let (router, calls) = app(&v);
        let h = support::headers(&[("x-twitter-webhooks-signature", &value)]);
        let response = send(router, post_request(h, support::body(&body[..]))).await;
        assert_problem(
            &format!("x {what}"),
            response,
            kind,
            "x",
            &[secret, &tag, &hex_tag],
        )
        .await;
        assert_eq!(calls.load(Ordering::SeqCst), 0);
    }
}

/// A timestamped custom scheme: `<timestamp>.<body>`, the timestamp checked
/// against the clock, several signatures separated by spaces.
#[tokio::test]
async fn timestamped_custom_scheme() {
    let secret = "acme-signing-secret";
    let body = br#"{"order":"A-1"}"#;
    let tag = hex::encode(mac(secret.as_bytes(), &[b"1700000000.", body]));
    let wrong = hex::encode(mac(b"old", &[b"1700000000.", body]));
    let clock = Arc::new(FixedClock::new(NOW));
    let v = Verifier::builder(acme())
        .secret(secret)
        .clock(Arc::clone(&clock))
        .build()
        .unwrap();
    let request_headers = |sig: &str, ts: Option<&str>| {
        let mut h = support::headers(&[("x-acme-signature", sig)]);
        if let Some(ts) = ts {
            h.insert("x-acme-timestamp", HeaderValue::from_str(ts).unwrap());
        }
        h
    };

    for sig in [
        format!("v1={tag}"),
        format!("v0={wrong} v1={wrong} v1={tag}"),
        // Sixteen entries are still read.
        format!("{}v1={tag}", format!("v0={wrong} ").repeat(15)),
    ] {
        let (router, _) = app(&v);
        let h = request_headers(&sig, Some("1700000000"));
        let echo = assert_ok(
            &sig,
            send(router, post_request(h, support::body(&body[..]))).await,
        )
        .await;
        assert_eq!(echo["timestamp"], NOW);
        assert_eq!(echo["provider"], "acme");
    }

    let cases: [(&str, HeaderMap, RejectionKind); 5] = [
        (
            "no timestamp",
            request_headers(&format!("v1={tag}"), None),
            RejectionKind::MissingTimestamp,
        ),
        (
            "malformed timestamp",
            request_headers(&format!("v1={tag}"), Some("1.7e9")),
            RejectionKind::MalformedTimestamp,
        ),
        (
            "timestamp not the signed one",
            request_headers(&format!("v1={tag}"), Some("1700000001")),
            RejectionKind::SignatureMismatch,
        ),
        (
            "no v1 entry",
            request_headers(&format!("v0={tag}"), Some("1700000000")),
            RejectionKind::MalformedSignature,
        ),
        (
            "seventeen entries, the last one valid",
            request_headers(
                &format!("{}v1={tag}", format!("v0={wrong} ").repeat(16)),
                Some("1700000000"),
            ),
            RejectionKind::MalformedSignature,
        ),
    ];
    for (what, h, kind) in cases {
        let (router, calls) = app(&v);
        let response = send(router, post_request(h, support::body(&body[..]))).await;
        assert_problem(what, response, kind, "acme", &[secret]).await;
        assert_eq!(calls.load(Ordering::SeqCst), 0, "{what}");
    }

    // The clock is read per request: moving it makes the same request stale.
    clock.advance(301);
    let (router, _) = app(&v);
    let response = send(
        router,
        post_request(
            request_headers(&format!("v1={tag}"), Some("1700000000")),
            support::body(&body[..]),
        ),
    )
    .await;
    let (rejection, _) = assert_problem(
        "acme 301 s later",
        response,
        RejectionKind::TimestampOutOfTolerance,
        "acme",
        &[secret, &tag],
    )
    .await;
    assert_eq!(rejection.timestamp().map(|c| c.skew_secs()), Some(301));
    clock.advance(-1);
    let (router, _) = app(&v);
    let response = send(
        router,
        post_request(
            request_headers(&format!("v1={tag}"), Some("1700000000")),
            support::body(&body[..]),
        ),
    )
    .await;
    assert_ok("acme 300 s later", response).await;
}

#[tokio::test]
async fn the_layer_works_on_the_whole_router_too() {
    let scheme = Scheme::github();
    let v = verifier(&scheme, [Secret::new("router-wide")]);
    let router = Router::new()
        .route(
            "/hook",
            post(|hook: VerifiedWebhook| async move { hook.event_type().unwrap_or("").to_owned() }),
        )
        .layer(v.layer());
    let response = send(
        router.clone(),
        signer(&scheme, "router-wide")
            .event_type("issues")
            .request("/hook", "{}"),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(&support::body_bytes(response).await[..], b"issues");
    let response = send(router, signer(&scheme, "another").request("/hook", "{}")).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn the_extractor_without_the_layer_is_a_500() {
    let router = Router::new().route("/hook", post(|_: VerifiedWebhook| async { "never" }));
    let response = send(router, post_request(HeaderMap::new(), support::body("{}"))).await;
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
}

/// `Verifier::verify` on an already buffered body agrees with the layer.
#[test]
fn verify_on_a_buffered_body() {
    let scheme = Scheme::standard_webhooks();
    let v = verifier(&scheme, [Secret::new(STANDARD_OLD)]);
    let body = Bytes::from_static(br#"{"type":"a.b"}"#);
    let h = signer(&scheme, STANDARD_OLD).id("msg_buf").headers(&body);
    let hook = v.verify(&h, body.clone()).unwrap();
    assert_eq!(hook.body(), &body);
    assert_eq!(hook.delivery_id(), Some("msg_buf"));
    assert_eq!(hook.event_type(), Some("a.b"));
    assert_eq!(hook.timestamp_unix(), Some(NOW));
    let err = v.verify(&h, Bytes::from_static(b"{}")).unwrap_err();
    assert_eq!(err.kind(), RejectionKind::SignatureMismatch);
}

#[test]
fn secrets_are_never_printed() {
    let value = "whsec_hunter2_do_not_print";
    for secret in [Secret::new(value), Secret::labeled("2026-rotation", value)] {
        let debug = format!("{secret:?}");
        let display = secret.to_string();
        assert!(!debug.contains("hunter2"), "{debug}");
        assert!(!display.contains("hunter2"), "{display}");
        assert_eq!(display, "[redacted]");
        assert!(debug.contains("[redacted]"), "{debug}");
    }
    let labeled = Secret::labeled("2026-rotation", value);
    assert!(format!("{labeled:?}").contains("2026-rotation"));
    assert_eq!(labeled.label(), Some("2026-rotation"));
    assert_eq!(format!("{:#?}", Secret::new(value)).matches("hunter2").count(), 0);
}

#[test]
fn verifier_debug_never_shows_secrets() {
    let plain = "plain-secret-value-8d1";
    let key_text = "c3RhbmRhcmQta2V5LWJ5dGVzLTMyLWxvbmctISEhISE=";
    let standard_secret = format!("whsec_{key_text}");
    let builder = Verifier::builder(Scheme::github())
        .secret(plain)
        .secret(Secret::labeled("next", "labeled-secret-value-2f9"))
        .tolerance(Duration::from_secs(120));
    let builder_debug = format!("{builder:?} {builder:#?}");
    let v = builder.build().unwrap();
    let verifier_debug = format!("{v:?} {v:#?} {:?}", v.layer());
    let standard = Verifier::builder(Scheme::standard_webhooks())
        .secret(standard_secret.as_str())
        .build()
        .unwrap();
    let standard_debug = format!("{standard:?}");
    let key_hex = hex::encode(
        base64::engine::general_purpose::STANDARD
            .decode(key_text)
            .unwrap(),
    );
    let signer_debug = format!("{:?}", TestSigner::new(&Scheme::github(), plain).unwrap());
    for debug in [&builder_debug, &verifier_debug, &standard_debug, &signer_debug] {
        for leaked in [plain, "labeled-secret-value-2f9", key_text, key_hex.as_str()] {
            assert!(!debug.contains(leaked), "{leaked:?} in {debug}");
        }
        // Byte-array renderings of the key material are not there either.
        assert!(!debug.contains("112, 108, 97, 105, 110"), "{debug}"); // b"plain"
    }
    assert!(
        verifier_debug.contains("next"),
        "labels are not secret: {verifier_debug}"
    );
    assert_eq!(v.secret_count(), 2);
    assert_eq!(v.tolerance(), Duration::from_secs(120));
    assert_eq!(v.max_body_bytes(), webhook_guard::DEFAULT_MAX_BODY_BYTES);
}

/// A custom scheme may sign another header's value; changing it breaks the
/// signature.
#[tokio::test]
async fn custom_scheme_signing_a_header() {
    let account = HeaderName::from_static("x-acme-account");
    let scheme = Scheme::custom(
        CustomScheme::builder("acme-accounts", HeaderName::from_static("x-acme-signature"))
            .signed_content([
                SignedPiece::Header(account.clone()),
                SignedPiece::literal(":"),
                SignedPiece::Body,
            ])
            .build()
            .unwrap(),
    );
    let secret = "acme-accounts-secret";
    let body = br#"{"amount":100}"#;
    let tag = hex::encode(mac(secret.as_bytes(), &[b"acct_1:", body]));
    let v = verifier(&scheme, [Secret::new(secret)]);
    // TestSigner and the independent HMAC agree.
    let signed = TestSigner::new(&scheme, secret)
        .unwrap()
        .header(account.clone(), HeaderValue::from_static("acct_1"))
        .headers(body);
    assert_eq!(signed["x-acme-signature"], tag.as_str());

    let (router, _) = app(&v);
    let h = support::headers(&[("x-acme-signature", &tag), ("x-acme-account", "acct_1")]);
    assert_ok(
        "acct_1",
        send(router, post_request(h, support::body(&body[..]))).await,
    )
    .await;

    let (router, calls) = app(&v);
    let h = support::headers(&[("x-acme-signature", &tag), ("x-acme-account", "acct_2")]);
    let response = send(router, post_request(h, support::body(&body[..]))).await;
    assert_problem(
        "other account",
        response,
        RejectionKind::SignatureMismatch,
        "acme-accounts",
        &[secret],
    )
    .await;
    assert_eq!(calls.load(Ordering::SeqCst), 0);

    let (router, _) = app(&v);
    let mut h = support::headers(&[("x-acme-signature", &tag)]);
    h.insert(&account, HeaderValue::from_bytes(b"acct_\xff").unwrap());
    let response = send(router, post_request(h, support::body(&body[..]))).await;
    assert_problem(
        "non-ASCII account",
        response,
        RejectionKind::MalformedHeader,
        "acme-accounts",
        &[secret],
    )
    .await;
}

/// A signature header of exactly 4096 bytes is read; one byte more is
/// malformed, even with a valid signature in it.
#[tokio::test]
async fn signature_header_length_boundary() {
    let secret = "whsec_length_boundary";
    let body = br#"{"id":"evt_len"}"#;
    let good = hex::encode(mac(secret.as_bytes(), &[b"1700000000.", body]));
    let v = verifier(&Scheme::stripe(), [Secret::new(secret)]);
    let head = format!("t={NOW},v1={good},x=");
    for (len, ok) in [(4096, true), (4097, false)] {
        let value = format!("{head}{}", "a".repeat(len - head.len()));
        assert_eq!(value.len(), len);
        let (router, calls) = app(&v);
        let h = support::headers(&[("stripe-signature", &value)]);
        let response = send(router, post_request(h, support::body(&body[..]))).await;
        if ok {
            assert_ok("4096-byte header", response).await;
            assert_eq!(calls.load(Ordering::SeqCst), 1);
        } else {
            assert_problem(
                "4097-byte header",
                response,
                RejectionKind::MalformedSignature,
                "stripe",
                &[secret, &good],
            )
            .await;
            assert_eq!(calls.load(Ordering::SeqCst), 0);
        }
    }
}

/// A body that arrives in one frame is handed on without a copy: the
/// handler sees the very buffer the request was built with.
#[tokio::test]
async fn a_single_frame_body_is_not_copied() {
    let scheme = Scheme::github();
    let v = verifier(&scheme, [Secret::new("zero-copy")]);
    let original = Bytes::from(vec![b'q'; 4000]);
    let address = original.as_ptr() as usize;
    let router = Router::new().route(
        "/hook",
        post(move |hook: VerifiedWebhook, body: Bytes| async move {
            format!(
                "{} {}",
                hook.body().as_ptr() as usize == address,
                body.as_ptr() as usize == address
            )
        })
        .layer(v.layer()),
    );
    let headers = signer(&scheme, "zero-copy").headers(&original);
    let response = send(router, post_request(headers, support::body(original.clone()))).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(&support::body_bytes(response).await[..], b"true true");
}

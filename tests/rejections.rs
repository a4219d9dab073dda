//! Every rejection the layer can produce, provoked through a real axum
//! router with `oneshot`: status, `application/problem+json`, the RFC 9457
//! fields and the reason code, no secret and no computed signature in the
//! answer, the handler never run, and (for everything decided on the
//! headers) the body never polled. Also `on_rejection` and every
//! `ConfigError` a builder can return.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::num::NonZeroUsize;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::response::{IntoResponse as _, Response};
use axum::routing::post;
use axum::Router;
use base64::Engine as _;
use bytes::Bytes;
use hmac::{Hmac, Mac as _};
use http::{header, HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode};
use sha2::Sha256;
use webhook_guard::test_util::TestSigner;
use webhook_guard::{
    ConfigError, CustomScheme, FixedClock, Rejection, RejectionKind, Scheme, Secret, SignatureEncoding,
    SignedPiece, VerifiedWebhook, Verifier,
};

use support::{app, assert_ok, assert_problem, post_request, send, Broken, Endless, Spy};

const NOW: i64 = 1_700_000_000;
const STRIPE_SECRET: &str = "whsec_rejections_stripe_9f3e1c";
const GITHUB_SECRET: &str = "github rejections secret";
const SLACK_SECRET: &str = "slack-rejections-secret-0b7d";
const SHOPIFY_SECRET: &str = "shpss_rejections_shopify_4a1f";
const STANDARD_SECRET: &str = "whsec_cmVqZWN0aW9ucy1zdGFuZGFyZC1rZXktMzJieXRlcyE=";
const STANDARD_ID: &str = "msg_rejections_1";
const BODY: &str = r#"{"id":"evt_rejections","type":"invoice.paid"}"#;

#[derive(Clone, Copy, Debug)]
enum P {
    Stripe,
    GitHub,
    Standard,
    Slack,
    Shopify,
}

impl P {
    const ALL: [P; 5] = [P::Stripe, P::GitHub, P::Standard, P::Slack, P::Shopify];

    fn scheme(self) -> Scheme {
        match self {
            P::Stripe => Scheme::stripe(),
            P::GitHub => Scheme::github(),
            P::Standard => Scheme::standard_webhooks(),
            P::Slack => Scheme::slack(),
            P::Shopify => Scheme::shopify(),
        }
    }

    fn secret(self) -> &'static str {
        match self {
            P::Stripe => STRIPE_SECRET,
            P::GitHub => GITHUB_SECRET,
            P::Standard => STANDARD_SECRET,
            P::Slack => SLACK_SECRET,
            P::Shopify => SHOPIFY_SECRET,
        }
    }

    fn name(self) -> &'static str {
        match self {
            P::Stripe => "stripe",
            P::GitHub => "github",
            P::Standard => "standard",
            P::Slack => "slack",
            P::Shopify => "shopify",
        }
    }

    fn verifier(self) -> Verifier {
        Verifier::builder(self.scheme())
            .secret(self.secret())
            .clock(FixedClock::new(NOW))
            .build()
            .unwrap()
    }

    /// Headers a real sender would send for `body` at `NOW`.
    fn signed(self, body: &[u8]) -> HeaderMap {
        TestSigner::new(&self.scheme(), self.secret())
            .unwrap()
            .timestamp(NOW)
            .id(STANDARD_ID)
            .headers(body)
    }

    /// The tag the verifier computes for `body` at `NOW`, worked out here
    /// independently with `hmac`: hex (both cases) and base64. None of these
    /// may ever appear in a rejection.
    fn computed(self, body: &[u8]) -> Vec<String> {
        let ts = NOW.to_string();
        let (key, parts): (Vec<u8>, Vec<&[u8]>) = match self {
            P::Stripe => (self.secret().into(), vec![ts.as_bytes(), b".", body]),
            P::GitHub | P::Shopify => (self.secret().into(), vec![body]),
            P::Slack => (self.secret().into(), vec![b"v0:", ts.as_bytes(), b":", body]),
            P::Standard => (
                base64::engine::general_purpose::STANDARD
                    .decode(&self.secret()["whsec_".len()..])
                    .unwrap(),
                vec![STANDARD_ID.as_bytes(), b".", ts.as_bytes(), b".", body],
            ),
        };
        let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
        for p in parts {
            mac.update(p);
        }
        let tag = mac.finalize().into_bytes();
        vec![
            hex::encode(tag),
            hex::encode_upper(tag),
            base64::engine::general_purpose::STANDARD.encode(tag),
        ]
    }
}

/// Sends `headers` + `body` to `verifier`'s route with a body that records
/// its polls, checks the problem document (with the route's secret and the
/// signature it computes for `body` forbidden in it) and that the handler
/// did not run. Returns the rejection and how many times the body was
/// polled.
async fn reject(
    what: &str,
    p: P,
    verifier: &Verifier,
    headers: HeaderMap,
    body: &[u8],
    kind: RejectionKind,
) -> (Rejection, usize) {
    let (router, calls) = app(verifier);
    let (spy, polls) = Spy::new(Bytes::copy_from_slice(body));
    let response = send(router, post_request(headers, spy)).await;
    let computed = p.computed(body);
    let mut forbidden: Vec<&str> = computed.iter().map(String::as_str).collect();
    forbidden.push(p.secret());
    let (rejection, _) = assert_problem(what, response, kind, p.name(), &forbidden).await;
    assert_eq!(calls.load(Ordering::SeqCst), 0, "{what}: the handler ran");
    assert_eq!(rejection.provider().map(|p| p.name()), Some(p.name()), "{what}");
    (rejection, polls.load(Ordering::SeqCst))
}

/// A rejection decided on the headers alone: the body is never polled.
async fn reject_head(what: &str, p: P, headers: HeaderMap, kind: RejectionKind) -> Rejection {
    let (rejection, polls) = reject(what, p, &p.verifier(), headers, BODY.as_bytes(), kind).await;
    assert_eq!(polls, 0, "{what}: the body was read for a header-level rejection");
    rejection
}

fn set(headers: &mut HeaderMap, name: &'static str, value: &str) {
    headers.insert(
        HeaderName::from_static(name),
        HeaderValue::from_str(value).unwrap(),
    );
}

fn value(headers: &HeaderMap, name: &str) -> String {
    headers[name].to_str().unwrap().to_owned()
}

/// The hex tag of a Stripe header `t=…,v1=<hex>`.
fn stripe_hex(headers: &HeaderMap) -> String {
    value(headers, "stripe-signature")
        .split_once(",v1=")
        .unwrap()
        .1
        .to_owned()
}

/// Sanity check for the helpers: the untouched signed request passes.
#[tokio::test]
async fn control_every_signed_request_passes() {
    for p in P::ALL {
        let (router, calls) = app(&p.verifier());
        let response = send(
            router,
            post_request(p.signed(BODY.as_bytes()), support::body(BODY)),
        )
        .await;
        assert_ok(p.name(), response).await;
        assert_eq!(calls.load(Ordering::SeqCst), 1, "{p:?}");
        // The independent MAC is the one the signer wrote.
        let sent = format!("{:?}", p.signed(BODY.as_bytes()));
        assert!(
            p.computed(BODY.as_bytes())
                .iter()
                .any(|t| sent.contains(t.as_str())),
            "{p:?}: the test's own HMAC does not match the signer"
        );
    }
}

#[tokio::test]
async fn missing_signature() {
    let cases: [(P, &str); 5] = [
        (P::Stripe, "stripe-signature"),
        (P::GitHub, "x-hub-signature-256"),
        (P::Standard, "webhook-signature"),
        (P::Slack, "x-slack-signature"),
        (P::Shopify, "x-shopify-hmac-sha256"),
    ];
    for (p, name) in cases {
        let mut h = p.signed(BODY.as_bytes());
        assert!(h.remove(name).is_some(), "{p:?}: {name} was not sent");
        reject_head(
            &format!("{p:?} without {name}"),
            p,
            h,
            RejectionKind::MissingSignature,
        )
        .await;
    }
    // GitHub: the legacy SHA-1 header alone is not a signature.
    let mut h = P::GitHub.signed(BODY.as_bytes());
    let hex = value(&h, "x-hub-signature-256")[7..].to_owned();
    h.remove("x-hub-signature-256");
    set(&mut h, "x-hub-signature", &format!("sha1={}", &hex[..40]));
    reject_head(
        "github with only X-Hub-Signature",
        P::GitHub,
        h,
        RejectionKind::MissingSignature,
    )
    .await;
}

#[tokio::test]
async fn malformed_signature() {
    use P::*;
    let body = BODY.as_bytes();
    let stripe = Stripe.signed(body);
    let hex = stripe_hex(&stripe);
    let github = GitHub.signed(body);
    let gh = value(&github, "x-hub-signature-256");
    let standard = Standard.signed(body);
    let sw = value(&standard, "webhook-signature");
    let slack = Slack.signed(body);
    let sl = value(&slack, "x-slack-signature");

    let mut cases: Vec<(&str, P, HeaderMap)> = Vec::new();
    let mut with = |what: &'static str, p: P, base: &HeaderMap, name: &'static str, v: String| {
        let mut h = base.clone();
        set(&mut h, name, &v);
        cases.push((what, p, h));
    };
    with(
        "github bad hex",
        GitHub,
        &github,
        "x-hub-signature-256",
        format!("sha256={}", "zz".repeat(32)),
    );
    with(
        "github sha1= prefix",
        GitHub,
        &github,
        "x-hub-signature-256",
        format!("sha1={}", &gh[7..]),
    );
    with(
        "github no prefix",
        GitHub,
        &github,
        "x-hub-signature-256",
        gh[7..].to_owned(),
    );
    with(
        "github empty",
        GitHub,
        &github,
        "x-hub-signature-256",
        String::new(),
    );
    with(
        "github sha256= empty",
        GitHub,
        &github,
        "x-hub-signature-256",
        "sha256=".into(),
    );
    with(
        "github truncated",
        GitHub,
        &github,
        "x-hub-signature-256",
        gh[..gh.len() - 2].to_owned(),
    );
    with(
        "github over-long",
        GitHub,
        &github,
        "x-hub-signature-256",
        format!("{gh}00"),
    );
    with(
        "github 5000-byte header",
        GitHub,
        &github,
        "x-hub-signature-256",
        format!("sha256={}", "a".repeat(5000)),
    );
    with(
        "slack v1= prefix",
        Slack,
        &slack,
        "x-slack-signature",
        format!("v1={}", &sl[3..]),
    );
    with(
        "slack bad hex",
        Slack,
        &slack,
        "x-slack-signature",
        format!("v0={}", "g".repeat(64)),
    );
    with(
        "standard `v1,` empty",
        Standard,
        &standard,
        "webhook-signature",
        "v1,".into(),
    );
    with(
        "standard no comma",
        Standard,
        &standard,
        "webhook-signature",
        sw.replace(',', ""),
    );
    with(
        "standard truncated base64",
        Standard,
        &standard,
        "webhook-signature",
        sw[..sw.len() - 4].to_owned(),
    );
    with(
        "standard unpadded base64",
        Standard,
        &standard,
        "webhook-signature",
        sw.trim_end_matches('=').to_owned(),
    );
    with(
        "standard only v1a",
        Standard,
        &standard,
        "webhook-signature",
        sw.replacen("v1,", "v1a,", 1),
    );
    with(
        "standard nine v1 entries (one valid)",
        Standard,
        &standard,
        "webhook-signature",
        [sw.as_str(); 9].join(" "),
    );
    with(
        "standard seventeen v2 entries then a valid v1",
        Standard,
        &standard,
        "webhook-signature",
        format!("{} {sw}", vec![sw.replacen("v1,", "v2,", 1); 17].join(" ")),
    );
    with(
        "stripe `t=..,v1=` empty",
        Stripe,
        &stripe,
        "stripe-signature",
        format!("t={NOW},v1="),
    );
    with(
        "stripe truncated",
        Stripe,
        &stripe,
        "stripe-signature",
        format!("t={NOW},v1={}", &hex[..62]),
    );
    with(
        "stripe over-long",
        Stripe,
        &stripe,
        "stripe-signature",
        format!("t={NOW},v1={hex}00"),
    );
    with(
        "stripe bad hex",
        Stripe,
        &stripe,
        "stripe-signature",
        format!("t={NOW},v1={}", "x".repeat(64)),
    );
    with(
        "stripe only v0",
        Stripe,
        &stripe,
        "stripe-signature",
        format!("t={NOW},v0={hex}"),
    );
    with(
        "stripe item without =",
        Stripe,
        &stripe,
        "stripe-signature",
        format!("t={NOW},{hex}"),
    );
    with(
        "stripe nine v1 (first valid)",
        Stripe,
        &stripe,
        "stripe-signature",
        format!("t={NOW}{}", format!(",v1={hex}").repeat(9)),
    );
    with(
        "shopify hex",
        Shopify,
        &Shopify.signed(body),
        "x-shopify-hmac-sha256",
        hex.clone(),
    );

    // Non-ASCII bytes (obs-text) in the header value.
    let mut h = github.clone();
    let mut raw = format!("sha256={}", &gh[7..70]).into_bytes();
    raw.push(0xff);
    h.insert("x-hub-signature-256", HeaderValue::from_bytes(&raw).unwrap());
    cases.push(("github non-ASCII byte 0xff", GitHub, h));
    let mut h = stripe.clone();
    h.insert(
        "stripe-signature",
        HeaderValue::from_bytes(format!("t={NOW},v1={hex},v1=\u{e9}").as_bytes()).unwrap(),
    );
    cases.push(("stripe non-ASCII UTF-8", Stripe, h));

    // The same valid header on two lines.
    for (what, p, base, name) in [
        ("stripe duplicate lines", Stripe, &stripe, "stripe-signature"),
        ("github duplicate lines", GitHub, &github, "x-hub-signature-256"),
        (
            "standard duplicate lines",
            Standard,
            &standard,
            "webhook-signature",
        ),
        ("slack duplicate lines", Slack, &slack, "x-slack-signature"),
    ] {
        let mut h = base.clone();
        let v = h[name].clone();
        h.append(HeaderName::from_static(name), v);
        cases.push((what, p, h));
    }
    // Standard's two names disagreeing.
    let mut h = standard.clone();
    set(
        &mut h,
        "svix-signature",
        &format!("v1,{}", P::Standard.computed(b"{}")[2]),
    );
    cases.push(("webhook-signature and svix-signature disagree", Standard, h));
    // Shopify's two names disagreeing.
    let mut h = Shopify.signed(body);
    set(&mut h, "shopify-hmac-sha256", &P::Standard.computed(body)[2]);
    cases.push(("shopify names disagree", Shopify, h));

    assert!(cases.len() >= 30);
    for (what, p, h) in cases {
        reject_head(what, p, h, RejectionKind::MalformedSignature).await;
    }
}

#[tokio::test]
async fn signature_mismatch() {
    for p in P::ALL {
        // Signed by someone holding another secret.
        let other = match p {
            P::Standard => "whsec_b3RoZXItc2VjcmV0LW9mLTMyLWJ5dGVzLWxvbmchIQ==",
            _ => "someone else's secret",
        };
        let h = TestSigner::new(&p.scheme(), other)
            .unwrap()
            .timestamp(NOW)
            .id(STANDARD_ID)
            .headers(BODY.as_bytes());
        let what = format!("{p:?} signed with another secret");
        let (rejection, polls) = reject(
            &what,
            p,
            &p.verifier(),
            h,
            BODY.as_bytes(),
            RejectionKind::SignatureMismatch,
        )
        .await;
        assert!(polls >= 1, "{what}: the body must be read to compare");
        assert!(rejection.timestamp().is_none(), "{what}");

        // The right signature over other bytes.
        let h = p.signed(b"{\"id\":\"evt_other\"}");
        reject(
            &format!("{p:?} signature of another body"),
            p,
            &p.verifier(),
            h,
            BODY.as_bytes(),
            RejectionKind::SignatureMismatch,
        )
        .await;
    }
}

#[tokio::test]
async fn missing_timestamp() {
    let mut h = P::Stripe.signed(BODY.as_bytes());
    let hex = stripe_hex(&h);
    set(&mut h, "stripe-signature", &format!("v1={hex}"));
    reject_head("stripe without t", P::Stripe, h, RejectionKind::MissingTimestamp).await;

    let mut h = P::Slack.signed(BODY.as_bytes());
    h.remove("x-slack-request-timestamp");
    reject_head(
        "slack without timestamp",
        P::Slack,
        h,
        RejectionKind::MissingTimestamp,
    )
    .await;

    let mut h = P::Standard.signed(BODY.as_bytes());
    h.remove("webhook-timestamp");
    reject_head(
        "standard without timestamp",
        P::Standard,
        h,
        RejectionKind::MissingTimestamp,
    )
    .await;
}

#[tokio::test]
async fn malformed_timestamp() {
    let bad = [
        "+1700000000",
        "01700000000",
        "1.7e9",
        "-1",
        "1700000000000",
        "1700000000.5",
        "0170000000",
        "00",
        " 1700000000",
        "",
    ];
    let stripe = P::Stripe.signed(BODY.as_bytes());
    let hex = stripe_hex(&stripe);
    for ts in bad {
        let mut h = stripe.clone();
        set(&mut h, "stripe-signature", &format!("t={ts},v1={hex}"));
        reject_head(
            &format!("stripe t={ts:?}"),
            P::Stripe,
            h,
            RejectionKind::MalformedTimestamp,
        )
        .await;

        let mut h = P::Slack.signed(BODY.as_bytes());
        set(&mut h, "x-slack-request-timestamp", ts);
        reject_head(
            &format!("slack ts {ts:?}"),
            P::Slack,
            h,
            RejectionKind::MalformedTimestamp,
        )
        .await;

        let mut h = P::Standard.signed(BODY.as_bytes());
        set(&mut h, "webhook-timestamp", ts);
        reject_head(
            &format!("standard ts {ts:?}"),
            P::Standard,
            h,
            RejectionKind::MalformedTimestamp,
        )
        .await;
    }
    // Sent twice.
    let mut h = stripe.clone();
    set(&mut h, "stripe-signature", &format!("t={NOW},t={NOW},v1={hex}"));
    reject_head("stripe two t", P::Stripe, h, RejectionKind::MalformedTimestamp).await;
    let mut h = P::Slack.signed(BODY.as_bytes());
    h.append("x-slack-request-timestamp", HeaderValue::from(NOW));
    reject_head(
        "slack timestamp on two lines",
        P::Slack,
        h,
        RejectionKind::MalformedTimestamp,
    )
    .await;
}

#[tokio::test]
async fn timestamp_out_of_tolerance_both_directions() {
    for p in [P::Stripe, P::Standard, P::Slack] {
        for (clock, skew) in [(NOW + 301, 301), (NOW - 301, -301)] {
            let verifier = Verifier::builder(p.scheme())
                .secret(p.secret())
                .clock(FixedClock::new(clock))
                .build()
                .unwrap();
            let what = format!("{p:?} with the clock at {skew:+} s");
            let (rejection, polls) = reject(
                &what,
                p,
                &verifier,
                p.signed(BODY.as_bytes()),
                BODY.as_bytes(),
                RejectionKind::TimestampOutOfTolerance,
            )
            .await;
            assert_eq!(polls, 0, "{what}: the body was read for a stale request");
            let ctx = rejection
                .timestamp()
                .unwrap_or_else(|| panic!("{what}: no timestamp context"));
            assert_eq!(ctx.timestamp(), NOW, "{what}");
            assert_eq!(ctx.now(), clock, "{what}");
            assert_eq!(ctx.skew_secs(), skew, "{what}");
            assert_eq!(ctx.tolerance(), Duration::from_secs(300), "{what}");
            let direction = if skew > 0 { "in the past" } else { "in the future" };
            assert!(
                rejection.detail().contains(&format!("301 s {direction}")),
                "{what}: {}",
                rejection.detail()
            );
        }
    }
    // A configured tolerance is the one applied (and reported).
    let verifier = Verifier::builder(Scheme::stripe())
        .secret(STRIPE_SECRET)
        .tolerance(Duration::from_secs(60))
        .clock(FixedClock::new(NOW + 61))
        .build()
        .unwrap();
    let (rejection, _) = reject(
        "stripe 61 s late with a 60 s tolerance",
        P::Stripe,
        &verifier,
        P::Stripe.signed(BODY.as_bytes()),
        BODY.as_bytes(),
        RejectionKind::TimestampOutOfTolerance,
    )
    .await;
    assert_eq!(
        rejection.timestamp().map(|c| (c.skew_secs(), c.tolerance())),
        Some((61, Duration::from_secs(60)))
    );
}

#[tokio::test]
async fn missing_header() {
    let mut h = P::Standard.signed(BODY.as_bytes());
    h.remove("webhook-id");
    reject_head(
        "standard without webhook-id",
        P::Standard,
        h,
        RejectionKind::MissingHeader,
    )
    .await;

    // A custom scheme that signs a header the request does not carry.
    let account = HeaderName::from_static("x-acme-account");
    let scheme = CustomScheme::builder("acme", HeaderName::from_static("x-acme-signature"))
        .signed_content([
            SignedPiece::Header(account.clone()),
            SignedPiece::literal(":"),
            SignedPiece::Body,
        ])
        .build()
        .unwrap();
    let signer = TestSigner::new(&Scheme::custom(scheme.clone()), "acme-secret")
        .unwrap()
        .header(account.clone(), HeaderValue::from_static("acct_1"));
    let mut h = signer.headers(BODY.as_bytes());
    h.remove(&account);
    let verifier = Verifier::builder(Scheme::custom(scheme))
        .secret("acme-secret")
        .build()
        .unwrap();
    let (router, calls) = app(&verifier);
    let (spy, polls) = Spy::new(BODY);
    let response = send(router, post_request(h, spy)).await;
    assert_problem(
        "custom without its signed header",
        response,
        RejectionKind::MissingHeader,
        "acme",
        &["acme-secret"],
    )
    .await;
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    assert_eq!(polls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn malformed_header() {
    let signed = P::Standard.signed(BODY.as_bytes());

    let mut h = signed.clone();
    h.append("webhook-id", HeaderValue::from_static(STANDARD_ID));
    reject_head(
        "standard webhook-id on two lines",
        P::Standard,
        h,
        RejectionKind::MalformedHeader,
    )
    .await;

    let mut h = signed.clone();
    set(&mut h, "webhook-id", "");
    reject_head(
        "standard empty webhook-id",
        P::Standard,
        h,
        RejectionKind::MalformedHeader,
    )
    .await;

    let mut h = signed.clone();
    set(&mut h, "svix-id", "msg_someone_else");
    reject_head(
        "webhook-id and svix-id disagree",
        P::Standard,
        h,
        RejectionKind::MalformedHeader,
    )
    .await;

    let mut h = signed.clone();
    h.insert("webhook-id", HeaderValue::from_bytes(b"msg_\xff").unwrap());
    reject_head(
        "standard non-ASCII webhook-id",
        P::Standard,
        h,
        RejectionKind::MalformedHeader,
    )
    .await;
}

#[tokio::test]
async fn body_too_large_by_content_length_is_refused_before_reading() {
    let limit = NonZeroUsize::new(1024).unwrap();
    let verifier = Verifier::builder(Scheme::stripe())
        .secret(STRIPE_SECRET)
        .clock(FixedClock::new(NOW))
        .max_body_bytes(limit)
        .build()
        .unwrap();
    let big = vec![b'x'; 2048];
    let mut h = P::Stripe.signed(&big);
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(big.len()));
    let (rejection, polls) = reject(
        "content-length 2048 over a 1024 limit",
        P::Stripe,
        &verifier,
        h,
        &big,
        RejectionKind::BodyTooLarge,
    )
    .await;
    assert_eq!(
        polls, 0,
        "the body was polled although Content-Length was over the limit"
    );
    assert_eq!(rejection.body_limit(), Some(1024));

    // The document reports the limit.
    let (router, _) = app(&verifier);
    let mut h = P::Stripe.signed(&big);
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(big.len()));
    let response = send(router, post_request(h, support::body(big.clone()))).await;
    let doc = support::body_json(response).await;
    assert_eq!(doc["limit"], 1024);

    // One byte over is enough.
    let over = vec![b'z'; 1025];
    let mut h = P::Stripe.signed(&over);
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(over.len()));
    let (_, polls) = reject(
        "content-length one over the limit",
        P::Stripe,
        &verifier,
        h,
        &over,
        RejectionKind::BodyTooLarge,
    )
    .await;
    assert_eq!(
        polls, 0,
        "the body was polled although Content-Length was over the limit"
    );

    // Control: exactly at the limit passes.
    let exact = vec![b'y'; 1024];
    let mut h = P::Stripe.signed(&exact);
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(exact.len()));
    let (router, calls) = app(&verifier);
    assert_ok(
        "body at the limit",
        send(router, post_request(h, support::body(exact))).await,
    )
    .await;
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn body_too_large_without_content_length_stops_the_stream() {
    let verifier = Verifier::builder(Scheme::github())
        .secret(GITHUB_SECRET)
        .max_body_bytes(NonZeroUsize::new(4096).unwrap())
        .build()
        .unwrap();
    // A well-formed signature header, so the stream is the only problem.
    let h = P::GitHub.signed(BODY.as_bytes());
    for lie in [None, Some(10u64)] {
        let mut h = h.clone();
        if let Some(len) = lie {
            h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
        }
        let (router, calls) = app(&verifier);
        let (endless, pulled) = Endless::new();
        let response = send(router, post_request(h, endless)).await;
        let what = format!("endless chunked body, Content-Length {lie:?}");
        let (rejection, _) = assert_problem(
            &what,
            response,
            RejectionKind::BodyTooLarge,
            "github",
            &[GITHUB_SECRET],
        )
        .await;
        assert_eq!(rejection.body_limit(), Some(4096), "{what}");
        assert_eq!(calls.load(Ordering::SeqCst), 0, "{what}");
        // Four 1 KiB chunks fill the limit; the fifth crosses it and is the
        // last one pulled.
        assert_eq!(pulled.load(Ordering::SeqCst), 5, "{what}: chunks pulled");
    }
}

#[tokio::test]
async fn compressed_bodies_are_refused_with_415() {
    for encoding in ["gzip", "br", "deflate", "gzip, identity", "identity, gzip", ""] {
        let mut h = P::GitHub.signed(BODY.as_bytes());
        set(&mut h, "content-encoding", encoding);
        reject_head(
            &format!("Content-Encoding {encoding:?}"),
            P::GitHub,
            h,
            RejectionKind::UnsupportedContentEncoding,
        )
        .await;
    }
    // A second line saying gzip is not hidden behind a first `identity`.
    let mut h = P::GitHub.signed(BODY.as_bytes());
    h.append(header::CONTENT_ENCODING, HeaderValue::from_static("identity"));
    h.append(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    reject_head(
        "identity then gzip lines",
        P::GitHub,
        h,
        RejectionKind::UnsupportedContentEncoding,
    )
    .await;

    // Control: identity is fine.
    let mut h = P::GitHub.signed(BODY.as_bytes());
    set(&mut h, "content-encoding", "Identity");
    let (router, _) = app(&P::GitHub.verifier());
    assert_ok(
        "identity",
        send(router, post_request(h, support::body(BODY))).await,
    )
    .await;
}

#[tokio::test]
async fn other_methods_get_405_with_allow_post() {
    for method in [Method::GET, Method::PUT, Method::DELETE, Method::PATCH] {
        let (router, calls) = app(&P::GitHub.verifier());
        let (spy, polls) = Spy::new(BODY);
        let mut request = post_request(P::GitHub.signed(BODY.as_bytes()), spy);
        *request.method_mut() = method.clone();
        let response = send(router, request).await;
        assert_eq!(
            response
                .headers()
                .get_all(header::ALLOW)
                .iter()
                .collect::<Vec<_>>(),
            [HeaderValue::from_static("POST")],
            "{method}"
        );
        assert_problem(
            &format!("{method}"),
            response,
            RejectionKind::MethodNotAllowed,
            "github",
            &[GITHUB_SECRET],
        )
        .await;
        assert_eq!(calls.load(Ordering::SeqCst), 0, "{method}");
        assert_eq!(polls.load(Ordering::SeqCst), 0, "{method}");
    }
}

/// The 405 carries `Allow: POST` on its own, without axum's method router
/// adding one (here the layer wraps a plain service).
#[tokio::test]
async fn the_405_sets_allow_itself() {
    let service = tower::Layer::layer(
        &P::GitHub.verifier().layer(),
        tower::service_fn(|_req: Request<axum::body::Body>| async {
            Ok::<_, std::convert::Infallible>(Response::new(axum::body::Body::from("handler")))
        }),
    );
    let router = Router::new().route_service("/hook", service);
    let mut request = post_request(P::GitHub.signed(BODY.as_bytes()), support::body(BODY));
    *request.method_mut() = Method::GET;
    let response = send(router, request).await;
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(
        response
            .headers()
            .get_all(header::ALLOW)
            .iter()
            .collect::<Vec<_>>(),
        [HeaderValue::from_static("POST")]
    );
    assert_problem(
        "GET to a plain service",
        response,
        RejectionKind::MethodNotAllowed,
        "github",
        &[GITHUB_SECRET],
    )
    .await;
}

#[tokio::test]
async fn a_broken_body_is_400() {
    let (router, calls) = app(&P::GitHub.verifier());
    let (broken, failed) = Broken::new(&b"{\"partial\":"[..]);
    let response = send(router, post_request(P::GitHub.signed(BODY.as_bytes()), broken)).await;
    assert_problem(
        "body stream error",
        response,
        RejectionKind::BodyReadFailed,
        "github",
        &[GITHUB_SECRET, "client went away"],
    )
    .await;
    assert!(
        failed.load(Ordering::SeqCst),
        "the body's error was never reached"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

/// `VerifiedWebhook::json` on a verified non-JSON body: a 400 problem
/// document that does not echo the body (this one comes from the handler,
/// after verification).
#[tokio::test]
async fn invalid_json_from_the_handler() {
    let verifier = P::GitHub.verifier();
    let router = Router::new().route(
        "/hook",
        post(|hook: VerifiedWebhook| async move { hook.json::<serde_json::Value>().map(|_| "parsed") })
            .layer(verifier.layer()),
    );
    let body = b"not json: attacker-chosen-bytes";
    let response = send(
        router,
        post_request(P::GitHub.signed(body), support::body(&body[..])),
    )
    .await;
    assert_problem(
        "non-JSON body",
        response,
        RejectionKind::InvalidJson,
        "github",
        &[GITHUB_SECRET, "attacker-chosen-bytes"],
    )
    .await;
}

/// Nothing copied from the request shows up in the answer.
#[tokio::test]
async fn rejections_do_not_echo_request_bytes() {
    let marker = "attacker-marker-4f1d";
    let mut h = P::Stripe.signed(BODY.as_bytes());
    set(&mut h, "stripe-signature", &format!("t={NOW},v1={marker}"));
    let (router, _) = app(&P::Stripe.verifier());
    let response = send(router, post_request(h, support::body(BODY))).await;
    assert_problem(
        "marker in v1",
        response,
        RejectionKind::MalformedSignature,
        "stripe",
        &[marker],
    )
    .await;

    let mut h = P::Stripe.signed(BODY.as_bytes());
    let hex = stripe_hex(&h);
    set(&mut h, "stripe-signature", &format!("t=17{marker},v1={hex}"));
    let (router, _) = app(&P::Stripe.verifier());
    let response = send(router, post_request(h, support::body(BODY))).await;
    assert_problem(
        "marker in t",
        response,
        RejectionKind::MalformedTimestamp,
        "stripe",
        &[marker],
    )
    .await;

    let mut h = P::Standard.signed(BODY.as_bytes());
    set(&mut h, "webhook-id", marker);
    let (router, _) = app(&P::Standard.verifier());
    let body = format!("{{\"type\":\"{marker}\"}}");
    let response = send(router, post_request(h, support::body(body))).await;
    assert_problem(
        "marker in id and body",
        response,
        RejectionKind::SignatureMismatch,
        "standard",
        &[marker],
    )
    .await;
}

#[tokio::test]
async fn on_rejection_replaces_the_response_and_keeps_the_rejection() {
    let verifier = Verifier::builder(Scheme::github())
        .secret(GITHUB_SECRET)
        .on_rejection(|r: &Rejection| -> Response {
            (StatusCode::IM_A_TEAPOT, format!("custom: {}", r.reason())).into_response()
        })
        .build()
        .unwrap();
    let (router, calls) = app(&verifier);
    let mut h = P::GitHub.signed(BODY.as_bytes());
    h.remove("x-hub-signature-256");
    let response = send(router, post_request(h, support::body(BODY))).await;
    assert_eq!(response.status(), StatusCode::IM_A_TEAPOT);
    assert_ne!(
        response
            .headers()
            .get(header::CONTENT_TYPE)
            .map(HeaderValue::as_bytes),
        Some(&b"application/problem+json"[..])
    );
    let kind = response.extensions().get::<Rejection>().map(Rejection::kind);
    assert_eq!(kind, Some(RejectionKind::MissingSignature));
    assert_eq!(
        &support::body_bytes(response).await[..],
        b"custom: missing_signature"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 0);

    // Verified requests are untouched by the handler.
    let (router, calls) = app(&verifier);
    let response = send(
        router,
        post_request(P::GitHub.signed(BODY.as_bytes()), support::body(BODY)),
    )
    .await;
    assert_ok("verified with on_rejection set", response).await;
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

fn build(scheme: Scheme, secrets: &[&str]) -> Result<Verifier, ConfigError> {
    Verifier::builder(scheme).secrets(secrets.iter().copied()).build()
}

#[test]
fn config_errors() {
    let err = |scheme: Scheme, secrets: &[&str]| build(scheme, secrets).err();

    assert_eq!(err(Scheme::stripe(), &[]), Some(ConfigError::NoSecrets));
    assert_eq!(
        err(Scheme::stripe(), &[""]),
        Some(ConfigError::EmptySecret { index: 0 })
    );
    assert_eq!(
        err(Scheme::github(), &[" \t\n "]),
        Some(ConfigError::EmptySecret { index: 0 })
    );
    assert_eq!(
        err(Scheme::github(), &["fine", "   "]),
        Some(ConfigError::EmptySecret { index: 1 })
    );
    for padded in [" secret", "secret ", "secret\n", "\tsecret", "whsec_abc\r\n"] {
        assert_eq!(
            err(Scheme::stripe(), &["fine", padded]),
            Some(ConfigError::SecretHasSurroundingWhitespace { index: 1 }),
            "{padded:?}"
        );
    }
    for bad in [
        "whsec_not base64!",
        "whsec_@@@@",
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaS",
    ] {
        assert!(
            matches!(
                err(Scheme::standard_webhooks(), &[bad]),
                Some(ConfigError::InvalidSecretEncoding { index: 0, .. })
            ),
            "{bad:?}"
        );
    }
    assert_eq!(
        err(Scheme::standard_webhooks(), &["whsec_"]),
        Some(ConfigError::EmptySecret { index: 0 })
    );
    // The same text is a fine Stripe secret: only Standard Webhooks decodes.
    assert!(build(Scheme::stripe(), &["whsec_not base64!"]).is_ok());

    for tolerance in [
        Duration::ZERO,
        Duration::from_millis(1),
        Duration::from_millis(999),
    ] {
        let r = Verifier::builder(Scheme::stripe())
            .secret("s")
            .tolerance(tolerance)
            .build()
            .err();
        assert_eq!(r, Some(ConfigError::ZeroTolerance), "{tolerance:?}");
    }
    assert!(Verifier::builder(Scheme::stripe())
        .secret("s")
        .tolerance(Duration::from_secs(1))
        .build()
        .is_ok());

    // TestSigner refuses the same secrets.
    assert_eq!(
        TestSigner::new(&Scheme::github(), " x").err(),
        Some(ConfigError::SecretHasSurroundingWhitespace { index: 0 })
    );

    // Messages name secrets by position, never by value.
    let e = err(Scheme::standard_webhooks(), &["whsec_super-secret-value!"]).unwrap();
    assert!(!e.to_string().contains("super-secret-value"), "{e}");
    assert!(!format!("{e:?}").contains("super-secret-value"), "{e:?}");
    let e = err(Scheme::stripe(), &["ok", " padded-secret-value"]).unwrap();
    assert!(!e.to_string().contains("padded-secret-value"), "{e}");
    assert!(e.to_string().contains("#1"), "{e}");

    // Secrets given as `Secret` values behave the same.
    let r = Verifier::builder(Scheme::github())
        .secret(Secret::labeled("old", "  "))
        .build()
        .err();
    assert_eq!(r, Some(ConfigError::EmptySecret { index: 0 }));
}

/// Custom schemes that cannot be verified safely are refused at build time.
#[test]
fn custom_scheme_config_errors() {
    let sig = HeaderName::from_static("x-sig");
    let ts = HeaderName::from_static("x-ts");
    let invalid = |r: Result<CustomScheme, ConfigError>| matches!(r, Err(ConfigError::InvalidScheme { .. }));
    assert!(invalid(CustomScheme::builder("", sig.clone()).build()));
    assert!(invalid(
        CustomScheme::builder("a", sig.clone()).signed_content([]).build()
    ));
    assert!(invalid(
        CustomScheme::builder("a", sig.clone())
            .signed_content([SignedPiece::Body, SignedPiece::literal("."), SignedPiece::Body])
            .build()
    ));
    assert!(invalid(
        CustomScheme::builder("a", sig.clone())
            .signed_content((0..9).map(|i| if i == 0 {
                SignedPiece::Body
            } else {
                SignedPiece::literal(".")
            }))
            .build()
    ));
    // A timestamp that is checked but not signed would be worthless.
    assert!(invalid(
        CustomScheme::builder("a", sig.clone())
            .timestamp_header(ts)
            .build()
    ));
    assert!(invalid(
        CustomScheme::builder("a", sig.clone())
            .prefix("v1,")
            .separator(b',')
            .build()
    ));
    assert!(CustomScheme::builder("a", sig)
        .encoding(SignatureEncoding::Base64)
        .build()
        .is_ok());
}

/// A request without any body at all is still checked (an empty body is a
/// body like any other).
#[tokio::test]
async fn empty_body_is_verified_not_skipped() {
    let (router, calls) = app(&P::GitHub.verifier());
    let h = P::GitHub.signed(BODY.as_bytes());
    let response = send(router, post_request(h, axum::body::Body::empty())).await;
    assert_problem(
        "empty body",
        response,
        RejectionKind::SignatureMismatch,
        "github",
        &[GITHUB_SECRET],
    )
    .await;
    assert_eq!(calls.load(Ordering::SeqCst), 0);

    let (router, calls) = app(&P::GitHub.verifier());
    let h = P::GitHub.signed(b"");
    let request = Request::builder()
        .method(Method::POST)
        .uri("/hook")
        .body(axum::body::Body::empty())
        .map(|mut r| {
            *r.headers_mut() = h;
            r
        })
        .unwrap();
    assert_ok("signed empty body", send(router, request).await).await;
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

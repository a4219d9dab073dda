//! PayPal: the published sandbox delivery (with its real certificate and a
//! fixed clock), the certificate-URL check that runs before any lookup,
//! certificates that are not to be trusted, an unavailable certificate,
//! chain validation to a test root, and the test signer.
//!
//! The test CA, intermediate and leaves under `tests/data/paypal/` were
//! made with Python `cryptography` for these tests (RSA-2048, valid
//! 2026-2046 except `leaf-expired.pem`, 2020-2021): `leaf.pem` is issued
//! to `messageverificationcerts.paypal.com` by the intermediate, which the
//! root signs; `leaf-unknown-root.pem` has the same name and key under
//! another root; `leaf-wrong-name.pem` another name.

#![cfg(feature = "paypal")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use http::{HeaderMap, HeaderName, HeaderValue};
use serde_json::Value;
use webhook_guard::paypal::{
    CertUrl, CertificateError, CertificateFuture, CertificateSource, Environment, PayPal, PayPalCertificate,
    PinnedCertificates, TrustAnchors,
};
use webhook_guard::test_util::TestSigner;
use webhook_guard::{ConfigError, FixedClock, RejectionKind, Scheme, Verifier};

use support::{app, assert_ok, assert_problem, kind_of, post_request, send};

const NOW: i64 = 1_780_000_000; // 2026-05-28, inside the test certificates' validity.

fn data(file: &str) -> String {
    let path = format!("{}/tests/data/paypal/{file}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn der(file: &str) -> Vec<u8> {
    use base64::Engine as _;
    let pem = data(file);
    let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD.decode(b64).unwrap()
}

fn verifier(paypal: PayPal, now: i64) -> Verifier {
    Verifier::builder(Scheme::paypal(paypal))
        .clock(FixedClock::new(now))
        .build()
        .unwrap()
}

fn pinned(file: &str) -> PayPal {
    PayPal::builder("WH-TEST-1")
        .certificates(PinnedCertificates::from_pem(&data(file)).unwrap())
        .build()
        .unwrap()
}

#[tokio::test]
async fn published_vectors() {
    let path = format!("{}/tests/vectors/paypal.json", env!("CARGO_MANIFEST_DIR"));
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let pem = data("sandbox-2015.pem");
    let (mut ok, mut rejected) = (0, 0);
    for v in doc["vectors"].as_array().unwrap() {
        let name = v["name"].as_str().unwrap();
        assert!(!v["source"].as_str().unwrap().is_empty(), "{name}: no source");
        let paypal = PayPal::builder(v["webhook_id"].as_str().unwrap())
            .sandbox(v["sandbox"].as_bool().unwrap())
            .certificates(PinnedCertificates::from_pem(&pem).unwrap())
            .build()
            .unwrap();
        let verifier = verifier(paypal, v["now"].as_i64().unwrap());
        let mut headers = HeaderMap::new();
        for (k, val) in v["headers"].as_object().unwrap() {
            headers.insert(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(val.as_str().unwrap()).unwrap(),
            );
        }
        let body = v["body"].as_str().unwrap().to_owned();
        let (router, calls) = app(&verifier);
        let response = send(router, post_request(headers, support::body(body.clone()))).await;
        let expect = v["expect"].as_str().unwrap();
        if expect == "ok" {
            let echo = assert_ok(name, response).await;
            for field in ["delivery_id", "event_type", "timestamp"] {
                assert_eq!(echo[field], v[field], "{name}: {field}");
            }
            assert_eq!(echo["provider"], "paypal");
            assert_eq!(echo["hook_body_hex"], hex::encode(body.as_bytes()));
            ok += 1;
        } else {
            let (rejection, _) = assert_problem(name, response, kind_of(expect), "paypal", &[]).await;
            assert_eq!(rejection.reason(), expect, "{name}");
            assert_eq!(calls.load(Ordering::SeqCst), 0, "{name}: the handler ran");
            rejected += 1;
        }
    }
    assert!(ok >= 1 && rejected >= 3);
}

/// The test signer signs as PayPal would with the test leaf's key; the
/// route pinned to the test leaf takes it, also through `Verifier::verify`.
#[tokio::test]
async fn test_signer_round_trip() {
    let paypal = pinned("leaf.pem");
    let signer = TestSigner::new(&Scheme::paypal(paypal.clone()), data("leaf-key.pk8.pem"))
        .unwrap()
        .id("8f1a2b3c-0000-4000-8000-000000000001")
        .timestamp(NOW);
    let body = r#"{"id":"WH-1","event_type":"CHECKOUT.ORDER.APPROVED","resource":{}}"#;
    let verifier = verifier(paypal, NOW + 5);
    let (router, calls) = app(&verifier);
    let echo = assert_ok("signed", send(router, signer.request("/hook", body)).await).await;
    assert_eq!(echo["delivery_id"], "8f1a2b3c-0000-4000-8000-000000000001");
    assert_eq!(echo["event_type"], "CHECKOUT.ORDER.APPROVED");
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    let headers = signer.headers(body.as_bytes());
    assert_eq!(headers["paypal-auth-algo"], "SHA256withRSA");
    let hook = verifier.verify(&headers, body.into()).unwrap();
    assert_eq!(hook.delivery_id(), Some("8f1a2b3c-0000-4000-8000-000000000001"));
    let err = verifier.verify(&headers, "{}".into()).unwrap_err();
    assert_eq!(err.kind(), RejectionKind::SignatureMismatch);
}

/// A valid RSA signature by a key that is not the certificate's is a
/// mismatch; so is the right key over another webhook id.
#[tokio::test]
async fn signatures_by_other_keys_or_for_other_subscriptions_fail() {
    let body = r#"{"event_type":"PAYMENT.CAPTURE.COMPLETED"}"#;
    let other = TestSigner::new(&Scheme::paypal(pinned("leaf.pem")), data("other-key.pk8.pem"))
        .unwrap()
        .timestamp(NOW);
    let verifier = verifier(pinned("leaf.pem"), NOW);
    let (router, _) = app(&verifier);
    let response = send(router, other.request("/hook", body)).await;
    assert_problem(
        "other key",
        response,
        RejectionKind::SignatureMismatch,
        "paypal",
        &[],
    )
    .await;

    let elsewhere = PayPal::builder("WH-OTHER")
        .certificates(PinnedCertificates::from_pem(&data("leaf.pem")).unwrap())
        .build()
        .unwrap();
    let signer = TestSigner::new(&Scheme::paypal(elsewhere), data("leaf-key.pk8.pem"))
        .unwrap()
        .timestamp(NOW);
    let (router, _) = app(&verifier);
    let response = send(router, signer.request("/hook", body)).await;
    assert_problem(
        "other webhook id",
        response,
        RejectionKind::SignatureMismatch,
        "paypal",
        &[],
    )
    .await;
}

/// A pinned certificate past its validity is not used: 401
/// `untrusted_certificate`, though the signature is right.
#[tokio::test]
async fn an_expired_certificate_is_untrusted() {
    let paypal = pinned("leaf-expired.pem");
    let signer = TestSigner::new(&Scheme::paypal(paypal.clone()), data("leaf-key.pk8.pem"))
        .unwrap()
        .timestamp(NOW);
    let (router, calls) = app(&verifier(paypal.clone(), NOW));
    let response = send(router, signer.request("/hook", "{}")).await;
    assert_problem(
        "expired",
        response,
        RejectionKind::UntrustedCertificate,
        "paypal",
        &[],
    )
    .await;
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    // Inside its validity it verifies.
    let then = 1_600_000_000; // 2020-09-13
    let signer = signer.timestamp(then);
    let (router, _) = app(&verifier(paypal, then));
    assert_ok("in its time", send(router, signer.request("/hook", "{}")).await).await;
}

#[test]
fn pinned_certificates_must_be_paypals() {
    for (pem, what) in [
        (data("leaf-wrong-name.pem"), "another name"),
        (String::new(), "nothing"),
        (
            "-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n".to_owned(),
            "not base64",
        ),
        (
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n".to_owned(),
            "not X.509",
        ),
    ] {
        assert!(
            matches!(
                PinnedCertificates::from_pem(&pem),
                Err(ConfigError::InvalidCertificate { .. })
            ),
            "{what}"
        );
    }
    assert!(PinnedCertificates::from_pem(&data("leaf-sandbox.pem")).is_ok());
}

#[test]
fn a_paypal_route_takes_no_secret_and_needs_a_source() {
    let err = Verifier::builder(Scheme::paypal(pinned("leaf.pem")))
        .secret("whsec_anything")
        .build();
    assert!(matches!(
        err,
        Err(ConfigError::InvalidSecretEncoding { index: 0, .. })
    ));
    assert!(matches!(
        PayPal::builder("WH-1").build(),
        Err(ConfigError::InvalidPayPal { .. })
    ));
    for id in ["", "has space", "a|b"] {
        let pem = PinnedCertificates::from_pem(&data("leaf.pem")).unwrap();
        assert!(
            matches!(
                PayPal::builder(id).certificates(pem).build(),
                Err(ConfigError::InvalidPayPal { .. })
            ),
            "{id:?}"
        );
    }
    for host in [
        "64.4.250.36",
        "api.paypal.com.",
        "API.paypal.com",
        "api.paypal.com:443",
        "",
    ] {
        let pem = PinnedCertificates::from_pem(&data("leaf.pem")).unwrap();
        let built = PayPal::builder("WH-1")
            .hosts([(host, Environment::Live)])
            .certificates(pem)
            .build();
        assert!(
            matches!(built, Err(ConfigError::InvalidPayPal { .. })),
            "{host:?}"
        );
    }
}

/// Counts lookups; answers with the pinned leaf, or with `Unavailable`.
struct Counting {
    calls: Arc<AtomicUsize>,
    answer: Result<Arc<[PayPalCertificate]>, CertificateError>,
    seen: Arc<std::sync::Mutex<Vec<(String, Environment)>>>,
}

impl CertificateSource for Counting {
    fn certificates<'a>(&'a self, url: CertUrl<'a>) -> CertificateFuture<'a> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.seen
            .lock()
            .unwrap()
            .push((url.as_str().to_owned(), url.environment()));
        let answer = self.answer.clone();
        Box::pin(async move { answer })
    }
}

fn counting(answer: Result<Arc<[PayPalCertificate]>, CertificateError>) -> (PayPal, Counting) {
    let make = || Counting {
        calls: Arc::new(AtomicUsize::new(0)),
        answer: answer.clone(),
        seen: Arc::default(),
    };
    let source = make();
    let probe = Counting {
        calls: Arc::clone(&source.calls),
        answer: answer.clone(),
        seen: Arc::clone(&source.seen),
    };
    let paypal = PayPal::builder("WH-TEST-1")
        .sandbox(true)
        .certificates(source)
        .build()
        .unwrap();
    (paypal, probe)
}

fn leaf() -> Arc<[PayPalCertificate]> {
    Arc::from(vec![PayPalCertificate::for_environment(
        der("leaf.pem"),
        Environment::Live,
    )
    .unwrap()])
}

/// Every trick in `PAYPAL-CERT-URL` is refused before the source is asked;
/// the real shapes reach it with their environment.
#[tokio::test]
async fn no_url_trick_reaches_the_certificate_source() {
    let (paypal, probe) = counting(Ok(leaf()));
    let signer = TestSigner::new(&Scheme::paypal(paypal.clone()), data("leaf-key.pk8.pem"))
        .unwrap()
        .timestamp(NOW);
    let verifier = verifier(paypal, NOW);
    for url in [
        "http://api.paypal.com/v1/notifications/certs/CERT-1",
        "https://api.paypal.com:443/v1/notifications/certs/CERT-1",
        "https://api.paypal.com:8443/v1/notifications/certs/CERT-1",
        "https://user:pass@api.paypal.com/v1/notifications/certs/CERT-1",
        "https://api.paypal.com@127.0.0.1/v1/notifications/certs/CERT-1",
        "https://api.paypal.com./v1/notifications/certs/CERT-1",
        "https://api%2Epaypal.com/v1/notifications/certs/CERT-1",
        "https://Api.PayPal.com/v1/notifications/certs/CERT-1",
        "https://xn--api-paypal-9xb.com/v1/notifications/certs/CERT-1",
        "https://127.0.0.1/v1/notifications/certs/CERT-1",
        "https://[::1]/v1/notifications/certs/CERT-1",
        "https://2130706433/v1/notifications/certs/CERT-1",
        "https://api.paypal.com.attacker.example/v1/notifications/certs/CERT-1",
        "https://attacker.example/v1/notifications/certs/CERT-1",
        "https://api.paypal.com/v1/oauth2/token",
        "https://api.paypal.com/v1/notifications/certs/../../oauth2/token",
        "https://api.paypal.com/v1/notifications/certs/CERT-1?redirect=https://attacker.example",
        "https://api.paypal.com/v1/notifications/certs/CERT-1#frag",
        "file:///etc/passwd",
        "https://api.paypal.com",
    ] {
        let mut headers = signer.headers(b"{}");
        headers.insert("paypal-cert-url", HeaderValue::from_str(url).unwrap());
        let (router, calls) = app(&verifier);
        let response = send(router, post_request(headers, support::body("{}"))).await;
        assert_problem(url, response, RejectionKind::UntrustedCertificate, "paypal", &[]).await;
        assert_eq!(calls.load(Ordering::SeqCst), 0);
    }
    assert_eq!(
        probe.calls.load(Ordering::SeqCst),
        0,
        "a tricked URL reached the source"
    );

    for (url, env) in [
        (
            "https://api.paypal.com/v1/notifications/certs/CERT-360caa42-fca2a594-a5cafa77",
            Environment::Live,
        ),
        (
            "https://api-m.paypal.com/v1/notifications/certs/CERT-1",
            Environment::Live,
        ),
        (
            "https://api.sandbox.paypal.com/v1/notifications/certs/CERT-2",
            Environment::Sandbox,
        ),
        (
            "https://api-m.sandbox.paypal.com/v1/notifications/certs/CERT-3",
            Environment::Sandbox,
        ),
    ] {
        let mut headers = signer.headers(b"{}");
        headers.insert("paypal-cert-url", HeaderValue::from_str(url).unwrap());
        let (router, _) = app(&verifier);
        let response = send(router, post_request(headers, support::body("{}"))).await;
        if env == Environment::Live {
            assert_ok(url, response).await;
        } else {
            // The source gave a live certificate: not usable for a sandbox
            // address.
            assert_problem(url, response, RejectionKind::UntrustedCertificate, "paypal", &[]).await;
        }
        assert_eq!(probe.seen.lock().unwrap().last(), Some(&(url.to_owned(), env)));
    }
    assert_eq!(probe.calls.load(Ordering::SeqCst), 4);
}

/// A certificate that cannot be had is 503 with `Retry-After` (PayPal
/// retries), and one the source distrusts is 401.
#[tokio::test]
async fn an_unavailable_certificate_is_503_and_an_untrusted_one_401() {
    let (paypal, _) = counting(Err(CertificateError::Unavailable("connect timed out".into())));
    let signer = TestSigner::new(&Scheme::paypal(paypal.clone()), data("leaf-key.pk8.pem"))
        .unwrap()
        .timestamp(NOW);
    let (router, calls) = app(&verifier(paypal, NOW));
    let response = send(router, signer.request("/hook", "{}")).await;
    let retry = response.headers().get("retry-after").cloned();
    let (rejection, doc) = assert_problem(
        "unavailable",
        response,
        RejectionKind::CertificateUnavailable,
        "paypal",
        &["timed out"],
    )
    .await;
    assert_eq!(rejection.kind().status(), 503);
    assert!(retry.is_some(), "no Retry-After");
    assert!(doc.to_string().contains("certificate_unavailable"));
    assert_eq!(calls.load(Ordering::SeqCst), 0);

    let (paypal, _) = counting(Err(CertificateError::Untrusted("no chain".into())));
    let (router, _) = app(&verifier(paypal, NOW));
    let response = send(router, signer.request("/hook", "{}")).await;
    assert_problem(
        "untrusted",
        response,
        RejectionKind::UntrustedCertificate,
        "paypal",
        &[],
    )
    .await;
}

/// Chain validation with rustls-webpki to the test root.
#[test]
fn chains_are_validated_to_a_trust_anchor() {
    let anchors = TrustAnchors::from_pem(&data("root-ca.pem")).unwrap();
    let intermediate = der("intermediate-ca.pem");
    let ok = anchors.validate(&[der("leaf.pem"), intermediate.clone()], Environment::Live, NOW);
    assert!(ok.is_ok(), "{ok:?}");
    let sandbox = anchors.validate(
        &[der("leaf-sandbox.pem"), intermediate.clone()],
        Environment::Sandbox,
        NOW,
    );
    assert!(sandbox.is_ok(), "{sandbox:?}");
    for (chain, env, now, what) in [
        (vec![der("leaf.pem")], Environment::Live, NOW, "no intermediate"),
        (
            vec![der("leaf-unknown-root.pem")],
            Environment::Live,
            NOW,
            "unknown root",
        ),
        (
            vec![der("leaf-unknown-root.pem"), intermediate.clone()],
            Environment::Live,
            NOW,
            "unknown root with our intermediate",
        ),
        (
            vec![der("leaf-expired.pem"), intermediate.clone()],
            Environment::Live,
            NOW,
            "expired",
        ),
        (
            vec![der("leaf-wrong-name.pem"), intermediate.clone()],
            Environment::Live,
            NOW,
            "wrong name",
        ),
        (
            vec![der("leaf-sandbox.pem"), intermediate.clone()],
            Environment::Live,
            NOW,
            "sandbox leaf for live",
        ),
        (
            vec![der("leaf.pem"), intermediate.clone()],
            Environment::Sandbox,
            NOW,
            "live leaf for sandbox",
        ),
        (
            vec![der("leaf.pem"), intermediate.clone()],
            Environment::Live,
            1_700_000_000,
            "before its validity",
        ),
        (
            vec![der("intermediate-ca.pem")],
            Environment::Live,
            NOW,
            "a CA as the leaf",
        ),
        (vec![], Environment::Live, NOW, "empty"),
        (
            vec![b"not a certificate".to_vec()],
            Environment::Live,
            NOW,
            "garbage",
        ),
    ] {
        assert!(
            matches!(
                anchors.validate(&chain, env, now),
                Err(CertificateError::Untrusted(_))
            ),
            "{what}"
        );
    }
    assert!(TrustAnchors::from_pem("").is_err());
}

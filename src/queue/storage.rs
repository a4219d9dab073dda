//! Queue storage: the trait and the stored delivery.

use std::fmt;
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Request, Uri};

use crate::dedupe::{DedupeKey, LeaseToken, Retention, StoreError, StoreFuture};
use crate::delivery::read_action;
use crate::scheme::BodyFieldsFn;
use crate::{Provider, Scheme, VerifiedWebhook};

/// Identifies a delivery inside its storage.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct JobId(pub i64);

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A delivery handed to a worker by [`QueueStorage::take`].
#[derive(Clone, Debug)]
pub struct Job {
    /// Its id in the storage.
    pub id: JobId,
    /// Which run this is: 1 for the first, counted by `take`.
    pub attempt: u32,
    /// What was stored.
    pub delivery: Delivery,
}

/// What [`QueueStorage::take`] found.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // short-lived; boxing would cost an allocation per take
pub enum Taken {
    /// A delivery to run now.
    Job(Job),
    /// Nothing is ready; the earliest delayed delivery (a retry waiting
    /// for its backoff) becomes ready in `next_due`, if there is one.
    Idle {
        /// When to look again at the latest (a new enqueue wakes the
        /// workers sooner).
        next_due: Option<Duration>,
    },
}

/// A delivery that ran out of attempts.
#[derive(Clone, Debug)]
pub struct DeadLetter {
    /// Its id in the storage ([`QueueStorage::requeue_dead`] takes it).
    pub id: JobId,
    /// How many times it ran.
    pub attempts: u32,
    /// The last failure, as the handler's response described it.
    pub last_error: String,
    /// When it was buried, Unix seconds.
    pub buried_at_unix: i64,
    /// What was stored.
    pub delivery: Delivery,
}

/// A dedupe claim the queue settles in the same transaction as the
/// enqueue, when the dedupe store and the queue share a storage (see
/// [`QueueStorage::transaction_scope`]): the key is marked processed with
/// the retention times, if `token` still holds it or nobody does, exactly
/// as [`DedupeStore::complete`](crate::dedupe::DedupeStore::complete)
/// would.
#[derive(Clone, Copy, Debug)]
pub struct ClaimSettlement {
    /// The delivery's dedupe key.
    pub key: DedupeKey,
    /// The token that holds it.
    pub token: LeaseToken,
    /// How long to remember it.
    pub times: Retention,
}

/// Where an [`AckQueue`](super::AckQueue) keeps its deliveries.
///
/// A [`QueueStorage`] holds every accepted delivery from the moment it is
/// stored (before the 202 is sent) until a worker has run the handler and
/// marked it done. Two come with the crate:
///
/// | storage | survives a crash | shared by replicas |
/// |---|---|---|
/// | [`MemoryQueue`](super::MemoryQueue) | no: a crash or a deploy loses what was accepted and not yet run | no |
/// | `SqliteState::queue` (feature `sqlite`) | yes: committed (fsync) before the 202 | no (one file, one process) |
///
/// # Contract
///
/// 1. [`enqueue`](QueueStorage::enqueue) returns only once the delivery is
///    stored as durably as the storage promises; an error means nothing
///    was stored (the request is answered 503 and the sender retries).
/// 2. [`take`](QueueStorage::take) hands each ready delivery to one worker
///    at a time and counts the attempt; a delivery taken and never
///    settled (the process died) is handed out again after
///    [`recover`](QueueStorage::recover), which the queue calls once when
///    it starts.
/// 3. [`complete`](QueueStorage::complete), [`retry`](QueueStorage::retry)
///    and [`bury`](QueueStorage::bury) settle a taken delivery: done,
///    ready again after a delay, or moved to the dead letters.
/// 4. Failures are [`StoreError`]s: [`StoreErrorKind::Full`](crate::dedupe::StoreErrorKind::Full) is answered
///    503 `queue_full`, anything else 503 `queue_unavailable`.
#[allow(clippy::len_without_is_empty)] // `len` is an async count, not a collection's size
pub trait QueueStorage: Send + Sync + 'static {
    /// Stores `delivery`, ready to run now; with `claim`, also marks that
    /// dedupe key processed in the same transaction. Returns when stored.
    fn enqueue<'a>(
        &'a self,
        delivery: &'a Delivery,
        claim: Option<ClaimSettlement>,
    ) -> StoreFuture<'a, JobId>;

    /// Takes the oldest ready delivery for one worker and counts the
    /// attempt.
    fn take(&self) -> StoreFuture<'_, Taken>;

    /// The handler succeeded: forget the delivery.
    fn complete(&self, id: JobId) -> StoreFuture<'_, ()>;

    /// [`complete`](Self::complete) then [`take`](Self::take), which a
    /// storage may do in one trip (the default runs one after the other).
    /// Workers call it after each successful run. An error means the
    /// completion may or may not be recorded (if not, the delivery runs
    /// again after the next start) and nothing was taken.
    fn complete_and_take(&self, id: JobId) -> StoreFuture<'_, Taken> {
        Box::pin(async move {
            self.complete(id).await?;
            self.take().await
        })
    }

    /// The handler failed: ready again after `after`.
    fn retry<'a>(&'a self, id: JobId, after: Duration, error: &'a str) -> StoreFuture<'a, ()>;

    /// The handler failed for the last time: move the delivery to the
    /// dead letters.
    fn bury<'a>(&'a self, id: JobId, error: &'a str) -> StoreFuture<'a, ()>;

    /// Up to `limit` dead letters, oldest first.
    fn dead_letters(&self, limit: usize) -> StoreFuture<'_, Vec<DeadLetter>>;

    /// Puts dead letters back in the queue, ready now with a fresh count
    /// of attempts: those named, or all of them with `None`. Returns how
    /// many were put back.
    fn requeue_dead<'a>(&'a self, ids: Option<&'a [JobId]>) -> StoreFuture<'a, usize>;

    /// Called once when a queue starts on this storage: deliveries a
    /// previous process took and never settled become ready again.
    /// Returns how many.
    fn recover(&self) -> StoreFuture<'_, usize>;

    /// Deliveries stored and not yet done (waiting, delayed or running),
    /// dead letters excluded.
    fn len(&self) -> StoreFuture<'_, usize>;

    /// Whether a stored delivery survives the process being killed.
    fn is_durable(&self) -> bool;

    /// For storages that hand a taken delivery to another consumer once a
    /// lease has run out ([`RedisQueue`](super::RedisQueue)): how often a
    /// worker renews its hold with [`keep`](Self::keep) while the handler
    /// runs, so that a long run is not taken over and run twice. `None`
    /// (the default): deliveries are held until settled.
    fn renew_every(&self) -> Option<Duration> {
        None
    }

    /// Renews the hold on delivery `id`, still running here (see
    /// [`renew_every`](Self::renew_every)). The default does nothing.
    fn keep(&self, id: JobId) -> StoreFuture<'_, ()> {
        let _ = id;
        Box::pin(async { Ok(()) })
    }

    /// An identity shared with a [`DedupeStore`](crate::dedupe::DedupeStore)
    /// whose claims this storage can settle inside
    /// [`enqueue`](Self::enqueue)'s transaction (the same SQLite file).
    /// `None` (the default): claims are settled separately, after the
    /// enqueue.
    fn transaction_scope(&self) -> Option<usize> {
        None
    }
}

impl<S: QueueStorage + ?Sized> QueueStorage for std::sync::Arc<S> {
    fn enqueue<'a>(
        &'a self,
        delivery: &'a Delivery,
        claim: Option<ClaimSettlement>,
    ) -> StoreFuture<'a, JobId> {
        (**self).enqueue(delivery, claim)
    }
    fn take(&self) -> StoreFuture<'_, Taken> {
        (**self).take()
    }
    fn complete(&self, id: JobId) -> StoreFuture<'_, ()> {
        (**self).complete(id)
    }
    fn complete_and_take(&self, id: JobId) -> StoreFuture<'_, Taken> {
        (**self).complete_and_take(id)
    }
    fn retry<'a>(&'a self, id: JobId, after: Duration, error: &'a str) -> StoreFuture<'a, ()> {
        (**self).retry(id, after, error)
    }
    fn bury<'a>(&'a self, id: JobId, error: &'a str) -> StoreFuture<'a, ()> {
        (**self).bury(id, error)
    }
    fn dead_letters(&self, limit: usize) -> StoreFuture<'_, Vec<DeadLetter>> {
        (**self).dead_letters(limit)
    }
    fn requeue_dead<'a>(&'a self, ids: Option<&'a [JobId]>) -> StoreFuture<'a, usize> {
        (**self).requeue_dead(ids)
    }
    fn recover(&self) -> StoreFuture<'_, usize> {
        (**self).recover()
    }
    fn len(&self) -> StoreFuture<'_, usize> {
        (**self).len()
    }
    fn is_durable(&self) -> bool {
        (**self).is_durable()
    }
    fn renew_every(&self) -> Option<Duration> {
        (**self).renew_every()
    }
    fn keep(&self, id: JobId) -> StoreFuture<'_, ()> {
        (**self).keep(id)
    }
    fn transaction_scope(&self) -> Option<usize> {
        (**self).transaction_scope()
    }
}

/// Headers not worth storing: they describe the connection, not the
/// delivery.
const HOP_BY_HOP: [&str; 7] = [
    "connection",
    "keep-alive",
    "transfer-encoding",
    "te",
    "upgrade",
    "proxy-connection",
    "content-length",
];

/// A verified delivery as a queue stores it: the request's path, its
/// headers and exact body bytes, and what verification established
/// (provider, delivery id, event type, signed timestamp, matched secret).
/// A worker rebuilds the request from it, with a [`VerifiedWebhook`] in
/// its extensions, so the handler sees what it would have seen without
/// the queue.
#[derive(Clone)]
pub struct Delivery {
    uri: String,
    headers: HeaderMap,
    body: Bytes,
    provider: Provider,
    delivery_id: Option<String>,
    event_type: Option<String>,
    action: Option<String>,
    /// Set while `action` has not been read: the scheme's reader, which
    /// finds it in the body when the handler asks (so queuing a delivery
    /// never parses its body only for that).
    action_from: Option<BodyFieldsFn>,
    timestamp: Option<i64>,
    secret_index: u32,
    secret_label: Option<String>,
    form: bool,
    received_at_unix: i64,
}

impl Delivery {
    /// Captures a verified request (its head and the verified delivery in
    /// its extensions).
    pub(crate) fn capture(uri: &Uri, headers: &HeaderMap, hook: &VerifiedWebhook, now_unix: i64) -> Self {
        let (action, action_from) = match hook.action_or_reader() {
            Ok(action) => (action.map(str::to_owned), None),
            Err(read) => (None, Some(read)),
        };
        let mut kept = HeaderMap::with_capacity(headers.len());
        for (name, value) in headers {
            if !HOP_BY_HOP.contains(&name.as_str()) {
                kept.append(name.clone(), value.clone());
            }
        }
        Self {
            uri: uri
                .path_and_query()
                .map_or_else(|| uri.path().to_owned(), |p| p.as_str().to_owned()),
            headers: kept,
            body: hook.body().clone(),
            provider: hook.provider().clone(),
            delivery_id: hook.delivery_id().map(str::to_owned),
            event_type: hook.event_type().map(str::to_owned),
            action,
            action_from,
            timestamp: hook.timestamp_unix(),
            secret_index: u32::try_from(hook.secret_index()).unwrap_or(u32::MAX),
            secret_label: hook.secret_label().map(str::to_owned),
            form: hook.is_form_encoded(),
            received_at_unix: now_unix,
        }
    }

    /// The request's path and query.
    pub fn uri(&self) -> &str {
        &self.uri
    }

    /// The request's headers (connection-level ones left out).
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// The exact verified body bytes.
    pub fn body(&self) -> &Bytes {
        &self.body
    }

    /// Who sent it.
    pub fn provider(&self) -> &Provider {
        &self.provider
    }

    /// The delivery id the provider shows (see
    /// [`VerifiedWebhook::delivery_id`]).
    pub fn delivery_id(&self) -> Option<&str> {
        self.delivery_id.as_deref()
    }

    /// The event type (see [`VerifiedWebhook::event_type`]).
    pub fn event_type(&self) -> Option<&str> {
        self.event_type.as_deref()
    }

    /// When it was accepted, Unix seconds.
    pub fn received_at_unix(&self) -> i64 {
        self.received_at_unix
    }

    /// The request a worker hands the handler: `POST`, the stored path,
    /// headers and body, and the [`VerifiedWebhook`] in its extensions.
    pub(crate) fn to_request(&self, attempt: u32) -> Request<Body> {
        let hook = VerifiedWebhook::restore(
            self.provider.clone(),
            self.delivery_id.clone(),
            self.event_type.clone(),
            self.action.clone(),
            self.timestamp,
            usize::try_from(self.secret_index).unwrap_or(usize::MAX),
            self.secret_label.as_deref().map(std::sync::Arc::from),
            self.form,
            attempt,
            self.body.clone(),
            self.action_from,
        );
        let mut req = Request::new(Body::from(self.body.clone()));
        *req.method_mut() = http::Method::POST;
        if let Ok(uri) = self.uri.parse::<Uri>() {
            *req.uri_mut() = uri;
        }
        *req.headers_mut() = self.headers.clone();
        req.extensions_mut().insert(hook);
        req
    }

    /// The delivery as bytes, for storages that keep a blob. Read back with
    /// [`decode`](Self::decode).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.body.len() + 256 + 64 * self.headers.len());
        out.extend_from_slice(MAGIC);
        put(&mut out, self.uri.as_bytes());
        put(&mut out, self.provider.name().as_bytes());
        put(
            &mut out,
            &[u8::from(matches!(self.provider, Provider::Custom(_)))],
        );
        put_opt(&mut out, self.delivery_id.as_deref());
        put_opt(&mut out, self.event_type.as_deref());
        // An action not read yet is stored as none when `decode` finds the
        // same reader by the provider's name (a built-in scheme), so it is
        // read from the body when asked for, after the 202; otherwise it
        // is read now.
        let action = match self.action_from {
            Some(_) if self.action_reader_by_name().is_some() => None,
            Some(read) => read_action(read, &self.body, self.form),
            None => self.action.clone(),
        };
        put_opt(&mut out, action.as_deref());
        match self.timestamp {
            Some(t) => {
                out.push(1);
                out.extend_from_slice(&t.to_be_bytes());
            }
            None => out.push(0),
        }
        out.extend_from_slice(&self.secret_index.to_be_bytes());
        put_opt(&mut out, self.secret_label.as_deref());
        out.push(u8::from(self.form));
        out.extend_from_slice(&self.received_at_unix.to_be_bytes());
        out.extend_from_slice(
            &u32::try_from(self.headers.len())
                .unwrap_or(u32::MAX)
                .to_be_bytes(),
        );
        for (name, value) in &self.headers {
            put(&mut out, name.as_str().as_bytes());
            put(&mut out, value.as_bytes());
        }
        put(&mut out, &self.body);
        out
    }

    /// Reads a delivery written by [`encode`](Self::encode).
    ///
    /// # Errors
    ///
    /// [`StoreError`] (unavailable) if the bytes are not an encoded
    /// delivery.
    pub fn decode(bytes: &[u8]) -> Result<Self, StoreError> {
        let bad =
            || StoreError::unavailable("a stored delivery could not be decoded", Duration::from_secs(5));
        let mut r = Reader { rest: bytes };
        if r.take(MAGIC.len()).ok_or_else(bad)? != MAGIC {
            return Err(bad());
        }
        let uri = r.string().ok_or_else(bad)?;
        let provider_name = r.string().ok_or_else(bad)?;
        let custom = r.bytes().ok_or_else(bad)? == [1];
        let provider = provider_from(&provider_name, custom);
        let delivery_id = r.opt().ok_or_else(bad)?;
        let event_type = r.opt().ok_or_else(bad)?;
        let action = r.opt().ok_or_else(bad)?;
        let timestamp = match r.take(1).ok_or_else(bad)? {
            [0] => None,
            _ => Some(i64::from_be_bytes(r.array().ok_or_else(bad)?)),
        };
        let secret_index = u32::from_be_bytes(r.array().ok_or_else(bad)?);
        let secret_label = r.opt().ok_or_else(bad)?;
        let form = r.take(1).ok_or_else(bad)? == [1];
        let received_at_unix = i64::from_be_bytes(r.array().ok_or_else(bad)?);
        let count = u32::from_be_bytes(r.array().ok_or_else(bad)?);
        let mut headers = HeaderMap::new();
        for _ in 0..count {
            let name = HeaderName::from_bytes(r.bytes().ok_or_else(bad)?).map_err(|_| bad())?;
            let value = HeaderValue::from_bytes(r.bytes().ok_or_else(bad)?).map_err(|_| bad())?;
            headers.append(name, value);
        }
        let body = Bytes::copy_from_slice(r.bytes().ok_or_else(bad)?);
        if !r.rest.is_empty() {
            return Err(bad());
        }
        let mut delivery = Self {
            uri,
            headers,
            body,
            provider,
            delivery_id,
            event_type,
            action,
            action_from: None,
            timestamp,
            secret_index,
            secret_label,
            form,
            received_at_unix,
        };
        if delivery.action.is_none() {
            // Stored as none: absent, or not read yet (see `encode`); the
            // body answers either way.
            delivery.action_from = delivery.action_reader_by_name();
        }
        Ok(delivery)
    }

    /// The body-field reader of the built-in scheme this delivery's
    /// provider names (none for custom schemes and for built-ins that
    /// need configuration to be built).
    fn action_reader_by_name(&self) -> Option<BodyFieldsFn> {
        match self.provider {
            Provider::Custom(_) => None,
            _ => Scheme::body_fields_named(self.provider.name()),
        }
    }
}

impl fmt::Debug for Delivery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Delivery")
            .field("uri", &self.uri)
            .field("provider", &self.provider)
            .field("delivery_id", &self.delivery_id)
            .field("event_type", &self.event_type)
            .field("body_len", &self.body.len())
            .finish_non_exhaustive()
    }
}

const MAGIC: &[u8] = b"wgq1";

fn put(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&u32::try_from(bytes.len()).unwrap_or(u32::MAX).to_be_bytes());
    out.extend_from_slice(bytes);
}

fn put_opt(out: &mut Vec<u8>, value: Option<&str>) {
    match value {
        Some(v) => {
            out.push(1);
            put(out, v.as_bytes());
        }
        None => out.push(0),
    }
}

struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.rest.len() < n {
            return None;
        }
        let (head, rest) = self.rest.split_at(n);
        self.rest = rest;
        Some(head)
    }

    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }

    fn bytes(&mut self) -> Option<&'a [u8]> {
        let len = u32::from_be_bytes(self.array()?);
        self.take(usize::try_from(len).ok()?)
    }

    fn string(&mut self) -> Option<String> {
        String::from_utf8(self.bytes()?.to_vec()).ok()
    }

    fn opt(&mut self) -> Option<Option<String>> {
        match self.take(1)? {
            [0] => Some(None),
            _ => Some(Some(self.string()?)),
        }
    }
}

fn provider_from(name: &str, custom: bool) -> Provider {
    if custom {
        return Provider::Custom(std::sync::Arc::from(name));
    }
    match name {
        "stripe" => Provider::Stripe,
        "github" => Provider::GitHub,
        "standard" => Provider::StandardWebhooks,
        "slack" => Provider::Slack,
        "shopify" => Provider::Shopify,
        "meta" => Provider::Meta,
        "x" => Provider::X,
        "discord" => Provider::Discord,
        "sendgrid" => Provider::SendGrid,
        other => match crate::scheme::providers::find(other) {
            Some((name, _)) => Provider::Named(name),
            None => Provider::Custom(std::sync::Arc::from(other)),
        },
    }
}

#[cfg(test)]
#[allow(clippy::expect_used)]
mod tests {
    use super::*;

    fn sample() -> Delivery {
        let mut headers = HeaderMap::new();
        headers.insert("x-github-event", HeaderValue::from_static("push"));
        headers.append("x-multi", HeaderValue::from_static("a"));
        headers.append("x-multi", HeaderValue::from_static("b"));
        Delivery {
            uri: "/webhooks/github?x=1".into(),
            headers,
            body: Bytes::from_static(b"{\"a\":1}"),
            provider: Provider::GitHub,
            delivery_id: Some("d-1".into()),
            event_type: Some("push".into()),
            action: None,
            action_from: None,
            timestamp: Some(-5),
            secret_index: 1,
            secret_label: Some("new".into()),
            form: false,
            received_at_unix: 1_700_000_000,
        }
    }

    #[test]
    fn round_trip() {
        let d = sample();
        let back = Delivery::decode(&d.encode()).expect("decodes");
        assert_eq!(back.uri, d.uri);
        assert_eq!(back.headers, d.headers);
        assert_eq!(back.body, d.body);
        assert_eq!(back.provider, d.provider);
        assert_eq!(back.delivery_id, d.delivery_id);
        assert_eq!(back.event_type, d.event_type);
        assert_eq!(back.timestamp, d.timestamp);
        assert_eq!(back.secret_index, d.secret_index);
        assert_eq!(back.secret_label, d.secret_label);
        assert_eq!(back.received_at_unix, d.received_at_unix);
        let custom = Delivery {
            provider: Provider::Custom("stripe".into()),
            ..sample()
        };
        assert_eq!(
            Delivery::decode(&custom.encode()).expect("decodes").provider,
            Provider::Custom("stripe".into())
        );
    }

    #[test]
    fn truncated_or_garbage_is_an_error() {
        let bytes = sample().encode();
        for cut in 0..bytes.len() {
            assert!(Delivery::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(Delivery::decode(&longer).is_err());
        assert!(Delivery::decode(b"garbage").is_err());
    }

    #[test]
    fn an_action_not_read_before_queuing_is_read_from_the_body_after() {
        let scheme = Scheme::github();
        let secret = "It's a Secret to Everybody";
        let body = Bytes::from_static(br#"{"action":"opened","n":1}"#);
        let headers = crate::test_util::TestSigner::new(&scheme, secret)
            .expect("signer")
            .headers(&body);
        let verifier = crate::Verifier::builder(scheme)
            .secret(secret)
            .build()
            .expect("verifier");
        let hook = verifier.verify(&headers, body).expect("verified");
        let uri: Uri = "/webhooks/github".parse().expect("uri");
        let action = |d: &Delivery| {
            let req = d.to_request(1);
            let hook = req.extensions().get::<VerifiedWebhook>().expect("hook");
            hook.action().map(str::to_owned)
        };

        let queued = Delivery::capture(&uri, &headers, &hook, 0);
        assert_eq!(queued.action, None, "queuing parsed the body");
        assert!(queued.action_from.is_some());
        assert_eq!(action(&queued).as_deref(), Some("opened"), "in memory");
        // Stored as none (a built-in scheme), read from the body after.
        let stored = Delivery::decode(&queued.encode()).expect("decodes");
        assert_eq!(stored.action, None);
        assert_eq!(action(&stored).as_deref(), Some("opened"), "stored");
        // A provider whose reader cannot be found by name: read when stored.
        let custom = Delivery {
            provider: Provider::Custom("hooks".into()),
            ..queued
        };
        let stored = Delivery::decode(&custom.encode()).expect("decodes");
        assert_eq!(stored.action.as_deref(), Some("opened"));
        assert!(stored.action_from.is_none());
        assert_eq!(action(&stored).as_deref(), Some("opened"));

        // Already read before queuing: kept as it is.
        assert_eq!(hook.action(), Some("opened"));
        let read = Delivery::capture(&uri, &headers, &hook, 0);
        assert_eq!(read.action.as_deref(), Some("opened"));
        assert!(read.action_from.is_none());
        assert_eq!(action(&read).as_deref(), Some("opened"));
    }

    #[test]
    fn rebuilt_request_carries_the_verified_delivery() {
        let req = sample().to_request(3);
        assert_eq!(req.method(), http::Method::POST);
        assert_eq!(req.uri().path(), "/webhooks/github");
        let hook = req.extensions().get::<VerifiedWebhook>().expect("hook");
        assert_eq!(hook.delivery_id(), Some("d-1"));
        assert_eq!(hook.event_type(), Some("push"));
        assert_eq!(hook.secret_label(), Some("new"));
        assert_eq!(hook.attempt(), Some(3));
        assert_eq!(hook.body().as_ref(), b"{\"a\":1}");
    }
}

//! `simulate`: a real sender's peak against the demo receiver, with an
//! attacker and a password guesser alongside (`scripts/capacity.sh`).
//!
//! Four tasks run at once against `--target` (the receiver's address):
//!
//! - **provider**: `--rate` distinct, validly signed deliveries a second
//!   (default 2 000) for `--seconds`, paced by one ticker and spread
//!   round-robin over the `--senders` source addresses (default
//!   `127.0.0.2,127.0.0.3,127.0.0.4`), each with a pool of
//!   `--connections` keep-alive connections (default 16). The routes
//!   alternate stripe, standard, slack, github, shopify; every delivery
//!   has its own id and body, and its timestamp is the time it is sent.
//!   Every answer must be 200 `processed`.
//! - **attacker** (`--attacker`, default `127.0.0.9`; `off` disables it):
//!   unsigned POSTs to `/webhooks/github` as fast as its
//!   `--attacker-connections` connections (default 2) allow. It must be
//!   cut off at its quota: at most `burst + rate × seconds` (the
//!   receiver's `WEBHOOK_RATE_BURST` / `WEBHOOK_RATE_PER_SEC`, defaults
//!   100 and 50) answers other than 429, plus a 5% margin, while it sent
//!   more than that.
//! - **flooder** (`--flooder`, default `127.0.0.11`; `off` disables it):
//!   distinct, validly signed provider deliveries from an address that is
//!   not a declared sender, as fast as its `--attacker-connections`
//!   connections allow. The default quota applies to it: at most
//!   `burst + rate × seconds` (plus the same margin) answers other than
//!   429, each of them 200 `processed`, and every 429 `rate_limited`. (The
//!   attacker's unsigned requests are 401s, so the failed-authentication
//!   lockout stops it first; the flooder shows the request quota itself.)
//! - **guesser** (`--guesser`, default `127.0.0.10`; `off` disables it):
//!   Stripe deliveries signed with a wrong secret, `--guess-rate` a second
//!   (default 5). Its first `WEBHOOK_FAILED_AUTH_PER_MIN` (default 20)
//!   answers must be 401 `signature_mismatch`, and 429
//!   `too_many_failed_authentications` must follow within the minute,
//!   after at most the room that accrued meanwhile (the quota is a rate
//!   with a burst: one more failure every `60 / quota` seconds, so at 5 a
//!   second the lockout starts at the 22nd guess). Over the whole run it
//!   may not get more 401s than that rate allows, and no other answer.
//! - **replay**: every processed delivery is remembered with a
//!   probability that keeps about 4 000 of them; at the end `--replay`
//!   of them (default 200) still inside their window, spread over the
//!   run, are sent again, byte for byte, from the first sender address,
//!   and every answer must be 200 `duplicate`. A timestamped delivery
//!   (stripe, standard, slack) is in its window while its timestamp is
//!   within `WEBHOOK_TOLERANCE_SECS` (default 300) less 30 s; a body-hash
//!   one (github, shopify) for twice that, the dedupe store's guaranteed
//!   replay window.
//!
//! Secrets come from the same variables as the receiver's
//! (`STRIPE_WEBHOOK_SECRET`, …, the first of a comma-separated list), or
//! the receiver's public development secrets when unset.
//!
//! The report gives the answers of each task by status and reason, the
//! provider's achieved rate and its latency (p50, p99, max, from sending
//! the request to the end of the answer's body), then one line per check
//! and a final `N passed, N failed`. The exit status is non-zero when any
//! check failed: a provider delivery answered other than 200 `processed`
//! (or not answered), an achieved rate under 95% of `--rate`, or any of
//! the attacker, guesser and replay checks above.
//!
//! Every source address must be one this host may bind (on Linux, all of
//! `127.0.0.0/8` is loopback). The receiver must declare the sender
//! addresses in `WEBHOOK_SENDER_NETWORKS`, and not the attacker's or the
//! guesser's.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Method, Request, StatusCode};
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::TcpSocket;
use tokio::sync::mpsc;
use webhook_guard::test_util::TestSigner;
use webhook_guard::Scheme;

/// The usage of the subcommand's options.
pub(crate) const OPTIONS: &str = "\
simulate options (all optional):
  --target ADDR              the receiver (default 127.0.0.1:3000)
  --senders IP,IP,...        provider source addresses (default 127.0.0.2,127.0.0.3,127.0.0.4)
  --rate N                   provider deliveries a second, all sources together (default 2000)
  --seconds N                how long the provider sends (default 600)
  --connections N            keep-alive connections per sender address (default 16)
  --attacker IP|off          unsigned flood source (default 127.0.0.9)
  --attacker-connections N   the attacker's connections, and the flooder's (default 2)
  --flooder IP|off           source of validly signed deliveries from an undeclared address (default 127.0.0.11)
  --guesser IP|off           wrong-signature source (default 127.0.0.10)
  --guess-rate N             the guesser's attempts a second (default 5)
  --replay N                 processed deliveries replayed at the end (default 200)";

/// The provider's routes, in the order deliveries cycle through them.
const ROUTES: [RouteKind; 5] = [
    RouteKind::Stripe,
    RouteKind::Standard,
    RouteKind::Slack,
    RouteKind::Github,
    RouteKind::Shopify,
];

/// About how many processed deliveries are kept for the replay check.
const SAMPLE_TARGET: u64 = 4_000;
/// How far inside its window a replayed delivery must be.
const WINDOW_MARGIN_SECS: i64 = 30;

/// The command line.
#[derive(Debug, Clone)]
struct Options {
    target: SocketAddr,
    senders: Vec<IpAddr>,
    rate: u32,
    seconds: u64,
    connections: usize,
    attacker: Option<IpAddr>,
    attacker_connections: usize,
    flooder: Option<IpAddr>,
    guesser: Option<IpAddr>,
    guess_rate: u32,
    replay: usize,
}

impl Options {
    fn parse(args: &[&str]) -> Result<Self, String> {
        let mut o = Options {
            target: SocketAddr::from(([127, 0, 0, 1], 3000)),
            senders: vec![
                IpAddr::from([127, 0, 0, 2]),
                IpAddr::from([127, 0, 0, 3]),
                IpAddr::from([127, 0, 0, 4]),
            ],
            rate: 2000,
            seconds: 600,
            connections: 16,
            attacker: Some(IpAddr::from([127, 0, 0, 9])),
            attacker_connections: 2,
            flooder: Some(IpAddr::from([127, 0, 0, 11])),
            guesser: Some(IpAddr::from([127, 0, 0, 10])),
            guess_rate: 5,
            replay: 200,
        };
        let mut it = args.iter();
        while let Some(&flag) = it.next() {
            let value = *it.next().ok_or_else(|| format!("{flag} needs a value"))?;
            let bad = |what: &str| format!("{flag}: {value:?} is not {what}");
            let ip = |v: &str| v.trim().parse::<IpAddr>().map_err(|_| bad("an IP address"));
            let optional_ip = |v: &str| if v == "off" { Ok(None) } else { ip(v).map(Some) };
            let positive = |v: &str| match v.parse::<u64>() {
                Ok(n) if n > 0 => Ok(n),
                _ => Err(bad("a positive whole number")),
            };
            let small =
                |v: &str| positive(v).and_then(|n| u32::try_from(n).map_err(|_| bad("a reasonable number")));
            match flag {
                "--target" => {
                    o.target = value
                        .parse()
                        .map_err(|_| bad("an address such as 127.0.0.1:3000"))?
                }
                "--senders" => {
                    o.senders = value.split(',').map(ip).collect::<Result<_, _>>()?;
                }
                "--rate" => o.rate = small(value)?,
                "--seconds" => o.seconds = positive(value)?,
                "--connections" => o.connections = small(value)? as usize,
                "--attacker" => o.attacker = optional_ip(value)?,
                "--attacker-connections" => o.attacker_connections = small(value)? as usize,
                "--flooder" => o.flooder = optional_ip(value)?,
                "--guesser" => o.guesser = optional_ip(value)?,
                "--guess-rate" => o.guess_rate = small(value)?,
                "--replay" => {
                    o.replay = value.parse().map_err(|_| bad("a whole number"))?;
                }
                _ => return Err(format!("unknown option {flag:?}")),
            }
        }
        Ok(o)
    }
}

/// The receiver's settings the checks depend on, read from the same
/// variables (and with the same defaults) as the receiver.
#[derive(Debug, Clone, Copy)]
struct Limits {
    rate_per_sec: u64,
    burst: u64,
    failed_auth_per_min: u64,
    tolerance_secs: i64,
}

impl Limits {
    fn from_env() -> Result<Self, String> {
        let num = |var: &str, default: u64| -> Result<u64, String> {
            match std::env::var(var) {
                Ok(v) => v
                    .trim()
                    .parse()
                    .map_err(|_| format!("{var}: {v:?} is not a whole number")),
                Err(_) => Ok(default),
            }
        };
        Ok(Self {
            rate_per_sec: num("WEBHOOK_RATE_PER_SEC", 50)?,
            burst: num("WEBHOOK_RATE_BURST", 100)?,
            failed_auth_per_min: num("WEBHOOK_FAILED_AUTH_PER_MIN", 20)?,
            tolerance_secs: i64::try_from(num("WEBHOOK_TOLERANCE_SECS", 300)?)
                .map_err(|_| "WEBHOOK_TOLERANCE_SECS is too large".to_owned())?,
        })
    }
}

/// A provider route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RouteKind {
    Stripe,
    Standard,
    Slack,
    Github,
    Shopify,
}

impl RouteKind {
    fn name(self) -> &'static str {
        match self {
            Self::Stripe => "stripe",
            Self::Standard => "standard",
            Self::Slack => "slack",
            Self::Github => "github",
            Self::Shopify => "shopify",
        }
    }

    fn path(self) -> &'static str {
        match self {
            Self::Stripe => "/webhooks/stripe",
            Self::Standard => "/webhooks/standard",
            Self::Slack => "/webhooks/slack",
            Self::Github => "/webhooks/github",
            Self::Shopify => "/webhooks/shopify",
        }
    }

    /// Whether the scheme signs a timestamp (so a replay is only accepted
    /// within the tolerance).
    fn timestamped(self) -> bool {
        matches!(self, Self::Stripe | Self::Standard | Self::Slack)
    }

    /// The receiver's variable and development secret.
    fn secret_source(self) -> (&'static str, &'static str) {
        match self {
            Self::Stripe => ("STRIPE_WEBHOOK_SECRET", "whsec_webhook_guard_dev_stripe_secret"),
            Self::Standard => (
                "STANDARD_WEBHOOK_SECRET",
                "whsec_d2ViaG9vay1ndWFyZC1kZXYtc3RhbmRhcmQta2V5ISE=",
            ),
            Self::Slack => ("SLACK_SIGNING_SECRET", "webhook-guard-dev-slack-signing-secret"),
            Self::Github => ("GITHUB_WEBHOOK_SECRET", "webhook-guard-dev-github-secret"),
            Self::Shopify => ("SHOPIFY_WEBHOOK_SECRET", "webhook-guard-dev-shopify-secret"),
        }
    }

    fn scheme(self) -> Scheme {
        match self {
            Self::Stripe => Scheme::stripe(),
            Self::Standard => Scheme::standard_webhooks(),
            Self::Slack => Scheme::slack(),
            Self::Github => Scheme::github(),
            Self::Shopify => Scheme::shopify(),
        }
    }

    fn event_type(self) -> &'static str {
        match self {
            Self::Github => "push",
            Self::Shopify => "orders/create",
            _ => "invoice.paid",
        }
    }
}

/// One request, kept whole so it can be sent again byte for byte.
#[derive(Debug, Clone)]
struct Delivery {
    route: RouteKind,
    path: &'static str,
    headers: HeaderMap,
    body: Bytes,
    /// The signed timestamp (or the time of signing, for schemes without one).
    signed_at: i64,
}

impl Delivery {
    fn request(&self, host: &HeaderValue) -> Request<Full<Bytes>> {
        let mut request = Request::new(Full::new(self.body.clone()));
        *request.method_mut() = Method::POST;
        *request.uri_mut() = http::Uri::from_static(self.path);
        let headers = request.headers_mut();
        headers.clone_from(&self.headers);
        headers.insert(header::HOST, host.clone());
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        request
    }
}

/// Everything the tasks share.
struct Ctx {
    target: SocketAddr,
    host: HeaderValue,
    /// One signer per provider route, in [`ROUTES`] order.
    signers: Vec<TestSigner>,
    /// Signs with a secret the receiver does not know.
    wrong_stripe: TestSigner,
    /// Makes ids and bodies distinct from any earlier run's.
    run: u64,
}

impl Ctx {
    /// Provider delivery number `seq`, signed at `now`.
    fn delivery(&self, seq: u64, now: i64) -> Delivery {
        let index = (seq % ROUTES.len() as u64) as usize;
        let route = ROUTES[index];
        let run = self.run;
        let (id, body) = match route {
            RouteKind::Stripe => {
                let id = format!("evt_sim_{run:x}_{seq}");
                let body = json!({
                    "id": id, "object": "event", "type": "invoice.paid", "created": now,
                    "livemode": false,
                    "data": {"object": {"id": format!("in_sim_{seq}"), "object": "invoice",
                        "amount_paid": 1000 + seq % 9000, "currency": "usd"}},
                });
                (id, body)
            }
            RouteKind::Standard => {
                let id = format!("msg_sim_{run:x}_{seq}");
                let body = json!({
                    "type": "invoice.paid", "timestamp": now.to_string(),
                    "data": {"invoice": format!("inv_{seq}"), "amount": 1000 + seq % 9000},
                });
                (id, body)
            }
            RouteKind::Slack => {
                let id = format!("Ev{run:X}S{seq}");
                let body = json!({
                    "token": "simulated", "team_id": "T0SIM", "api_app_id": "A0SIM",
                    "type": "event_callback", "event_id": id, "event_time": now,
                    "event": {"type": "message", "channel": "C0SIM", "user": "U0SIM",
                        "text": format!("simulated message {seq}"), "ts": format!("{now}.{seq:06}")},
                });
                (id, body)
            }
            RouteKind::Github => {
                let id = format!("00000000-{:04x}-4000-8000-{seq:012x}", run & 0xffff);
                let body = json!({
                    "ref": "refs/heads/main", "before": format!("{:040x}", seq),
                    "after": format!("{:040x}", seq + 1),
                    "repository": {"id": 1296269, "full_name": "octocat/simulated"},
                    "pusher": {"name": "octocat"}, "run": format!("{run:x}"), "seq": seq,
                });
                (id, body)
            }
            RouteKind::Shopify => {
                let id = format!("b54557e4-{:04x}-4000-8000-{seq:012x}", run & 0xffff);
                let body = json!({
                    "id": seq, "email": "buyer@example.com", "total_price": "10.00",
                    "currency": "USD", "run": format!("{run:x}"),
                });
                (id, body)
            }
        };
        let body = Bytes::from(body.to_string());
        let headers = self.signers[index].clone().timestamp(now).id(id).headers(&body);
        Delivery {
            route,
            path: route.path(),
            headers,
            body,
            signed_at: now,
        }
    }

    /// A Stripe delivery signed with the wrong secret.
    fn guess(&self, n: u64, now: i64) -> Delivery {
        let body = json!({
            "id": format!("evt_guess_{:x}_{n}", self.run), "object": "event",
            "type": "invoice.paid", "created": now, "data": {"object": {}},
        });
        let body = Bytes::from(body.to_string());
        let headers = self.wrong_stripe.clone().timestamp(now).headers(&body);
        Delivery {
            route: RouteKind::Stripe,
            path: RouteKind::Stripe.path(),
            headers,
            body,
            signed_at: now,
        }
    }

    /// An unsigned GitHub-looking delivery.
    fn unsigned(&self, n: u64, now: i64) -> Delivery {
        let mut headers = HeaderMap::new();
        headers.insert("x-github-event", HeaderValue::from_static("push"));
        Delivery {
            route: RouteKind::Github,
            path: RouteKind::Github.path(),
            headers,
            body: Bytes::from(format!("{{\"zen\":\"flood\",\"n\":{n}}}")),
            signed_at: now,
        }
    }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// One keep-alive HTTP/1.1 connection from a fixed source address,
/// reopened when the server closes it.
struct Conn {
    source: IpAddr,
    target: SocketAddr,
    sender: Option<SendRequest<Full<Bytes>>>,
    /// Connections opened so far.
    opened: u64,
}

impl Conn {
    fn new(source: IpAddr, target: SocketAddr) -> Self {
        Self {
            source,
            target,
            sender: None,
            opened: 0,
        }
    }

    async fn connect(&mut self) -> Result<(), String> {
        let socket = if self.target.is_ipv4() {
            TcpSocket::new_v4()
        } else {
            TcpSocket::new_v6()
        }
        .map_err(|e| format!("socket: {e}"))?;
        socket
            .bind(SocketAddr::new(self.source, 0))
            .map_err(|e| format!("bind {}: {e}", self.source))?;
        let stream = socket
            .connect(self.target)
            .await
            .map_err(|e| format!("connect from {}: {e}", self.source))?;
        stream.set_nodelay(true).map_err(|e| format!("nodelay: {e}"))?;
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        tokio::spawn(async move {
            // Ends when the server closes the connection or the sender is
            // dropped; a failure shows up on the next request.
            let _ = connection.await;
        });
        self.sender = Some(sender);
        self.opened += 1;
        Ok(())
    }

    /// Sends `request`; the status and the `status` (2xx) or `reason`
    /// (other) field of the JSON answer.
    async fn send(&mut self, request: Request<Full<Bytes>>) -> Answer {
        // A connection the server closed is replaced before the request is
        // written, never after: a request is sent at most once.
        let usable = match self.sender.as_mut() {
            Some(s) if !s.is_closed() => s.ready().await.is_ok(),
            _ => false,
        };
        if !usable {
            self.sender = None;
            self.connect().await?;
        }
        let sender = self.sender.as_mut().ok_or("no connection")?;
        let response = match sender.send_request(request).await {
            Ok(r) => r,
            Err(e) => {
                self.sender = None;
                return Err(format!("request: {e}"));
            }
        };
        let status = response.status();
        let body = match response.into_body().collect().await {
            Ok(b) => b.to_bytes(),
            Err(e) => {
                self.sender = None;
                return Err(format!("body: {e}"));
            }
        };
        let field = if status.is_success() { "status" } else { "reason" };
        let reason = serde_json::from_slice::<Value>(&body)
            .ok()
            .and_then(|v| v.get(field).and_then(Value::as_str).map(str::to_owned))
            .unwrap_or_else(|| "-".to_owned());
        Ok((status, reason))
    }
}

/// One answer: the status and its `status` or `reason` field, or a
/// transport error.
type Answer = Result<(StatusCode, String), String>;

/// Answers by (status, reason); status 0 is a transport failure.
type Tally = BTreeMap<(u16, String), u64>;

fn count(tally: &mut Tally, answer: &Answer) {
    let key = match answer {
        Ok((status, reason)) => (status.as_u16(), reason.clone()),
        Err(e) => (0, transport_kind(e)),
    };
    *tally.entry(key).or_default() += 1;
}

/// A transport error without its variable parts, so they tally together.
fn transport_kind(e: &str) -> String {
    let kind: String = e.chars().take_while(|c| *c != ':').collect();
    format!("transport error ({kind}; first: {e})")
}

fn merge(into: &mut Tally, from: Tally) {
    for (k, v) in from {
        if k.0 == 0 {
            // Keep one example message per kind.
            let kind: String = k.1.split(';').next().unwrap_or("").to_owned();
            if let Some((_, n)) = into
                .iter_mut()
                .find(|(key, _)| key.0 == 0 && key.1.starts_with(&kind))
            {
                *n += v;
                continue;
            }
        }
        *into.entry(k).or_default() += v;
    }
}

fn total(tally: &Tally) -> u64 {
    tally.values().sum()
}

fn answers(tally: &Tally, status: u16) -> u64 {
    tally.iter().filter(|(k, _)| k.0 == status).map(|(_, v)| v).sum()
}

/// Whether delivery `seq` is kept for the replay check: about one in
/// `every`, by a hash of `seq` so that every route is sampled.
fn sampled(seq: u64, every: u64) -> bool {
    // splitmix64's finalizer.
    let mut z = seq.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    (z ^ (z >> 31)).is_multiple_of(every)
}

/// A processed delivery kept for the replay check.
struct Sample {
    delivery: Delivery,
}

/// What one provider connection did.
#[derive(Default)]
struct WorkerOut {
    tally: Tally,
    latencies_us: Vec<u32>,
    samples: Vec<Sample>,
    opened: u64,
}

async fn provider_worker(
    ctx: Arc<Ctx>,
    source: IpAddr,
    queue: Arc<tokio::sync::Mutex<mpsc::Receiver<u64>>>,
    sample_every: u64,
) -> WorkerOut {
    let mut conn = Conn::new(source, ctx.target);
    let mut out = WorkerOut::default();
    loop {
        let job = queue.lock().await.recv().await;
        let Some(seq) = job else { break };
        let delivery = ctx.delivery(seq, unix_now());
        let started = Instant::now();
        let answer = conn.send(delivery.request(&ctx.host)).await;
        let micros = started.elapsed().as_micros();
        out.latencies_us.push(u32::try_from(micros).unwrap_or(u32::MAX));
        count(&mut out.tally, &answer);
        if matches!(&answer, Ok((StatusCode::OK, r)) if r == "processed") && sampled(seq, sample_every) {
            out.samples.push(Sample { delivery });
        }
    }
    out.opened = conn.opened;
    out
}

/// The provider's outcome.
struct ProviderOut {
    tally: Tally,
    per_source: Vec<(IpAddr, Tally)>,
    latencies_us: Vec<u32>,
    samples: Vec<Sample>,
    scheduled: u64,
    elapsed: Duration,
    opened: u64,
}

async fn provider(ctx: Arc<Ctx>, o: &Options) -> ProviderOut {
    let expected = u64::from(o.rate).saturating_mul(o.seconds);
    let sample_every = (expected / SAMPLE_TARGET).max(1);
    // Each source has its own queue, about 50 ms of its share deep: when
    // the connections fall behind, the ticker waits and the achieved rate
    // shows it.
    let depth = (o.rate as usize / o.senders.len() / 20).max(4);
    let mut queues = Vec::new();
    let mut workers = Vec::new();
    for &source in &o.senders {
        let (tx, rx) = mpsc::channel::<u64>(depth);
        let rx = Arc::new(tokio::sync::Mutex::new(rx));
        queues.push(tx);
        let mut handles = Vec::new();
        for _ in 0..o.connections {
            handles.push(tokio::spawn(provider_worker(
                ctx.clone(),
                source,
                rx.clone(),
                sample_every,
            )));
        }
        workers.push((source, handles));
    }
    let start = Instant::now();
    let end = start + Duration::from_secs(o.seconds);
    let mut ticker = tokio::time::interval(Duration::from_millis(5));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut sent: u64 = 0;
    let n = queues.len() as u64;
    loop {
        ticker.tick().await;
        let now = Instant::now();
        let elapsed = now.min(end) - start;
        let due = (elapsed.as_secs_f64() * f64::from(o.rate)) as u64;
        while sent < due {
            let queue = &queues[(sent % n) as usize];
            if queue.send(sent).await.is_err() {
                break;
            }
            sent += 1;
        }
        if now >= end {
            break;
        }
    }
    drop(queues);
    let mut out = ProviderOut {
        tally: Tally::new(),
        per_source: Vec::new(),
        latencies_us: Vec::new(),
        samples: Vec::new(),
        scheduled: sent,
        elapsed: Duration::ZERO,
        opened: 0,
    };
    for (source, handles) in workers {
        let mut tally = Tally::new();
        for handle in handles {
            match handle.await {
                Ok(w) => {
                    merge(&mut tally, w.tally);
                    out.latencies_us.extend(w.latencies_us);
                    out.samples.extend(w.samples);
                    out.opened += w.opened;
                }
                Err(e) => {
                    *tally.entry((0, format!("worker failed: {e}"))).or_default() += 1;
                }
            }
        }
        merge(&mut out.tally, tally.clone());
        out.per_source.push((source, tally));
    }
    out.elapsed = start.elapsed();
    out
}

/// The attacker's outcome.
struct AttackOut {
    tally: Tally,
    elapsed: Duration,
    opened: u64,
}

/// What a flood sends.
#[derive(Debug, Clone, Copy)]
enum Flood {
    /// Unsigned GitHub-looking requests (the attacker).
    Unsigned,
    /// Distinct, validly signed deliveries from an address that is not a
    /// declared sender (the flooder).
    Signed,
}

/// Where the flooder's delivery numbers start, far from the provider's.
const FLOODER_SEQ: u64 = 1 << 40;

async fn attacker(
    ctx: Arc<Ctx>,
    source: IpAddr,
    connections: usize,
    seconds: u64,
    flood: Flood,
) -> AttackOut {
    let start = Instant::now();
    let end = start + Duration::from_secs(seconds);
    let mut handles = Vec::new();
    for c in 0..connections {
        let ctx = ctx.clone();
        handles.push(tokio::spawn(async move {
            let mut conn = Conn::new(source, ctx.target);
            let mut tally = Tally::new();
            let mut n = c as u64;
            while Instant::now() < end {
                let delivery = match flood {
                    Flood::Unsigned => ctx.unsigned(n, unix_now()),
                    Flood::Signed => ctx.delivery(FLOODER_SEQ + n, unix_now()),
                };
                let answer = conn.send(delivery.request(&ctx.host)).await;
                if answer.is_err() {
                    // Do not spin on a refused connection.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                count(&mut tally, &answer);
                n += connections as u64;
            }
            (tally, conn.opened)
        }));
    }
    let mut out = AttackOut {
        tally: Tally::new(),
        elapsed: Duration::ZERO,
        opened: 0,
    };
    for handle in handles {
        if let Ok((tally, opened)) = handle.await {
            merge(&mut out.tally, tally);
            out.opened += opened;
        }
    }
    out.elapsed = start.elapsed();
    out
}

/// The guesser's answers, in order.
struct GuessOut {
    answers: Vec<(Duration, Answer)>,
}

async fn guesser(ctx: Arc<Ctx>, source: IpAddr, per_second: u32, seconds: u64) -> GuessOut {
    let start = Instant::now();
    let end = start + Duration::from_secs(seconds);
    let mut ticker = tokio::time::interval(Duration::from_secs(1) / per_second);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut conn = Conn::new(source, ctx.target);
    let mut out = GuessOut { answers: Vec::new() };
    let mut n = 0;
    loop {
        ticker.tick().await;
        if Instant::now() >= end {
            break;
        }
        let sent_at = start.elapsed();
        let answer = conn.send(ctx.guess(n, unix_now()).request(&ctx.host)).await;
        out.answers.push((sent_at, answer));
        n += 1;
    }
    out
}

/// The replay's outcome.
struct ReplayOut {
    eligible: usize,
    tally: Tally,
    by_route: BTreeMap<&'static str, u64>,
    wrong: Vec<String>,
}

async fn replay(ctx: &Ctx, source: IpAddr, samples: Vec<Sample>, want: usize, tolerance: i64) -> ReplayOut {
    let now = unix_now();
    let eligible: Vec<Sample> = samples
        .into_iter()
        .filter(|s| {
            let window = if s.delivery.route.timestamped() {
                tolerance
            } else {
                tolerance.saturating_mul(2)
            };
            now.saturating_sub(s.delivery.signed_at) < window - WINDOW_MARGIN_SECS
        })
        .collect();
    let mut out = ReplayOut {
        eligible: eligible.len(),
        tally: Tally::new(),
        by_route: BTreeMap::new(),
        wrong: Vec::new(),
    };
    let take = want.min(eligible.len());
    let mut conn = Conn::new(source, ctx.target);
    for i in 0..take {
        // Evenly spread over the run.
        let sample = &eligible[i * eligible.len() / take];
        let answer = conn.send(sample.delivery.request(&ctx.host)).await;
        *out.by_route.entry(sample.delivery.route.name()).or_default() += 1;
        if !matches!(&answer, Ok((StatusCode::OK, r)) if r == "duplicate") && out.wrong.len() < 5 {
            out.wrong.push(format!(
                "{} signed at {}: {:?}",
                sample.delivery.route.name(),
                sample.delivery.signed_at,
                answer
            ));
        }
        count(&mut out.tally, &answer);
    }
    out
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((sorted.len() - 1) as f64 * p).round() as usize;
    f64::from(sorted[rank.min(sorted.len() - 1)]) / 1000.0
}

fn print_tally(title: &str, tally: &Tally) {
    println!("{title}: {} answers", total(tally));
    for ((status, reason), n) in tally {
        if *status == 0 {
            println!("  {n:>9}  {reason}");
        } else {
            println!("  {n:>9}  {status} {reason}");
        }
    }
}

/// The checks and their verdicts.
#[derive(Default)]
struct Checks {
    passed: u32,
    failed: u32,
}

impl Checks {
    fn check(&mut self, ok: bool, what: &str) {
        if ok {
            self.passed += 1;
            println!("ok    {what}");
        } else {
            self.failed += 1;
            println!("FAIL  {what}");
        }
    }
}

/// Runs `simulate` with its options; `Ok(false)` when a check failed.
pub(crate) fn run(args: &[&str]) -> Result<bool, String> {
    let o = Options::parse(args)?;
    let limits = Limits::from_env()?;
    if o.senders.is_empty() {
        return Err("--senders: at least one address".to_owned());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    runtime.block_on(simulate(o, limits))
}

async fn simulate(o: Options, limits: Limits) -> Result<bool, String> {
    let mut signers = Vec::new();
    for route in ROUTES {
        let (var, dev) = route.secret_source();
        let secret = match std::env::var(var) {
            Ok(list) => list.split(',').next().unwrap_or("").trim().to_owned(),
            Err(_) => dev.to_owned(),
        };
        let signer = TestSigner::new(&route.scheme(), secret)
            .map_err(|e| format!("{var}: {e}"))?
            .event_type(route.event_type());
        signers.push(signer);
    }
    let run = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let ctx = Arc::new(Ctx {
        target: o.target,
        host: HeaderValue::from_str(&o.target.to_string()).map_err(|e| format!("host: {e}"))?,
        signers,
        wrong_stripe: TestSigner::new(&Scheme::stripe(), "whsec_a_guess_that_is_not_the_secret")
            .map_err(|e| format!("guesser secret: {e}"))?,
        run,
    });

    // Fail early, with one clear line, if the receiver is not there.
    Conn::new(o.senders[0], o.target)
        .connect()
        .await
        .map_err(|e| format!("cannot reach the receiver at {}: {e}", o.target))?;

    let senders: Vec<String> = o.senders.iter().map(ToString::to_string).collect();
    println!(
        "simulate: {} deliveries/s for {} s to {} from {} ({} connections each); attacker {}; guesser {}",
        o.rate,
        o.seconds,
        o.target,
        senders.join(","),
        o.connections,
        o.attacker.map_or("off".to_owned(), |a| a.to_string()),
        o.guesser.map_or("off".to_owned(), |a| a.to_string()),
    );

    let attack = o.attacker.map(|ip| {
        tokio::spawn(attacker(
            ctx.clone(),
            ip,
            o.attacker_connections,
            o.seconds,
            Flood::Unsigned,
        ))
    });
    let flood = o.flooder.map(|ip| {
        tokio::spawn(attacker(
            ctx.clone(),
            ip,
            o.attacker_connections,
            o.seconds,
            Flood::Signed,
        ))
    });
    let guess = o
        .guesser
        .map(|ip| tokio::spawn(guesser(ctx.clone(), ip, o.guess_rate, o.seconds)));
    let prov = provider(ctx.clone(), &o).await;
    let attack = match attack {
        Some(h) => Some(h.await.map_err(|e| format!("attacker task: {e}"))?),
        None => None,
    };
    let flood = match flood {
        Some(h) => Some(h.await.map_err(|e| format!("flooder task: {e}"))?),
        None => None,
    };
    let guess = match guess {
        Some(h) => Some(h.await.map_err(|e| format!("guesser task: {e}"))?),
        None => None,
    };
    let samples_kept = prov.samples.len();
    let rep = if o.replay > 0 {
        let samples = prov.samples;
        Some(replay(&ctx, o.senders[0], samples, o.replay, limits.tolerance_secs).await)
    } else {
        None
    };

    // The report.
    println!();
    print_tally("provider", &prov.tally);
    for (source, tally) in &prov.per_source {
        let line = tally.iter().fold(String::new(), |mut s, ((st, r), n)| {
            let _ = write!(s, " {st} {r}: {n};");
            s
        });
        println!("  from {source}:{line}");
    }
    let answered = total(&prov.tally);
    let achieved = answered as f64 / prov.elapsed.as_secs_f64();
    let mut lat = prov.latencies_us;
    lat.sort_unstable();
    println!(
        "  scheduled {} in {:.1} s, answered {answered}: achieved {achieved:.0}/s of {} ({:.1}%); {} connections opened",
        prov.scheduled,
        prov.elapsed.as_secs_f64(),
        o.rate,
        100.0 * achieved / f64::from(o.rate),
        prov.opened,
    );
    println!(
        "  latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        percentile(&lat, 0.50),
        percentile(&lat, 0.99),
        percentile(&lat, 1.0)
    );
    for (name, a) in [("attacker", &attack), ("flooder", &flood)] {
        let Some(a) = a else { continue };
        print_tally(name, &a.tally);
        println!(
            "  {:.0} requests/s over {:.1} s; {} connections opened",
            total(&a.tally) as f64 / a.elapsed.as_secs_f64(),
            a.elapsed.as_secs_f64(),
            a.opened
        );
    }
    if let Some(g) = &guess {
        let mut tally = Tally::new();
        for (_, a) in &g.answers {
            count(&mut tally, a);
        }
        print_tally("guesser", &tally);
        if let Some((at, _)) = g
            .answers
            .iter()
            .find(|(_, a)| matches!(a, Ok((s, _)) if *s == StatusCode::TOO_MANY_REQUESTS))
        {
            println!("  first 429 at {:.1} s", at.as_secs_f64());
        }
    }
    if let Some(r) = &rep {
        print_tally("replay", &r.tally);
        let routes: Vec<String> = r.by_route.iter().map(|(k, v)| format!("{k} {v}")).collect();
        println!(
            "  {} of {} kept samples inside their window; replayed: {}",
            r.eligible,
            samples_kept,
            routes.join(", ")
        );
        for w in &r.wrong {
            println!("  unexpected: {w}");
        }
    }

    // The checks.
    println!();
    let mut c = Checks::default();
    let processed = prov
        .tally
        .get(&(200, "processed".to_owned()))
        .copied()
        .unwrap_or(0);
    let non_2xx: u64 = prov
        .tally
        .iter()
        .filter(|(k, _)| !(200..300).contains(&k.0))
        .map(|(_, v)| v)
        .sum();
    c.check(
        non_2xx == 0,
        &format!("provider: no answer other than 2xx and no transport error ({non_2xx} seen)"),
    );
    c.check(
        processed == answered && answered == prov.scheduled,
        &format!(
            "provider: every scheduled delivery answered 200 processed ({processed} of {})",
            prov.scheduled
        ),
    );
    c.check(
        achieved >= 0.95 * f64::from(o.rate),
        &format!("provider: achieved rate {achieved:.0}/s >= 95% of {}/s", o.rate),
    );
    for (name, a) in [("attacker", &attack), ("flooder", &flood)] {
        let Some(a) = a else { continue };
        let secs = a.elapsed.as_secs_f64();
        let allowance = (limits.burst as f64 + limits.rate_per_sec as f64 * secs) * 1.05 + 10.0;
        let all = total(&a.tally);
        let refused = answers(&a.tally, 429);
        let transport = answers(&a.tally, 0);
        let other = all - refused - transport;
        c.check(
            all as f64 > allowance,
            &format!("{name}: flooded past its quota ({all} requests > {allowance:.0})"),
        );
        c.check(
            (other as f64) <= allowance,
            &format!(
                "{name}: cut off at its quota ({other} answers other than 429 <= (burst {} + {}/s x {secs:.0} s) x 1.05 + 10 = {allowance:.0})",
                limits.burst, limits.rate_per_sec
            ),
        );
        c.check(
            refused * 2 > all && transport == 0,
            &format!("{name}: most answers 429 ({refused} of {all}), no transport error ({transport})"),
        );
        if name == "flooder" {
            // Valid deliveries from an undeclared address: the default
            // quota applies, and what it admits is processed.
            let limited = a
                .tally
                .get(&(429, "rate_limited".to_owned()))
                .copied()
                .unwrap_or(0);
            let processed = a.tally.get(&(200, "processed".to_owned())).copied().unwrap_or(0);
            c.check(
                limited == refused && processed == other,
                &format!(
                    "{name}: every 429 is rate_limited ({limited} of {refused}) and every other answer 200 processed ({processed} of {other})"
                ),
            );
        }
    }
    if let Some(g) = &guess {
        let limit = limits.failed_auth_per_min as usize;
        let is = |a: &Answer, status: u16, reason: &str| matches!(a, Ok((s, r)) if s.as_u16() == status && r == reason);
        let first = &g.answers[..limit.min(g.answers.len())];
        c.check(
            first.len() == limit && first.iter().all(|(_, a)| is(a, 401, "signature_mismatch")),
            &format!("guesser: its first {limit} guesses answered 401 signature_mismatch"),
        );
        // The quota is a rate with a burst of `limit`: while the first
        // `limit` guesses go out, more room accrues (one guess every
        // 60 / limit seconds), so the lockout starts within that many
        // more guesses, and well within the minute.
        let lockout = g
            .answers
            .iter()
            .position(|(_, a)| is(a, 429, "too_many_failed_authentications"));
        let room = |at: Duration| limit + (at.as_secs_f64() * limit as f64 / 60.0).ceil() as usize + 1;
        c.check(
            lockout.is_some_and(|i| {
                let at = g.answers[i].0;
                i >= limit && i <= room(at) && at < Duration::from_secs(60)
            }),
            &format!(
                "guesser: locked out (429 too_many_failed_authentications) within the minute, after {limit} guesses plus what accrued meanwhile (first at guess {} at {:.1} s)",
                lockout.map_or("none".to_owned(), |i| (i + 1).to_string()),
                lockout.map_or(0.0, |i| g.answers[i].0.as_secs_f64())
            ),
        );
        let secs = g.answers.last().map_or(0.0, |(at, _)| at.as_secs_f64());
        let unauthorized = g
            .answers
            .iter()
            .filter(|(_, a)| matches!(a, Ok((s, _)) if s.as_u16() == 401))
            .count();
        let bound = limit as f64 * (1.0 + secs / 60.0) + 2.0;
        let others = g
            .answers
            .iter()
            .filter(|(_, a)| {
                !is(a, 401, "signature_mismatch") && !is(a, 429, "too_many_failed_authentications")
            })
            .count();
        c.check(
            unauthorized as f64 <= bound && others == 0,
            &format!(
                "guesser: stays locked out ({unauthorized} 401s over {secs:.0} s <= {bound:.0}; {others} other answers)"
            ),
        );
    }
    if let Some(r) = &rep {
        let want = o.replay.min(processed as usize);
        let duplicates = r.tally.get(&(200, "duplicate".to_owned())).copied().unwrap_or(0);
        c.check(
            total(&r.tally) as usize == want,
            &format!(
                "replay: {want} processed deliveries inside their window replayed ({})",
                total(&r.tally)
            ),
        );
        c.check(
            duplicates as usize == want && want > 0,
            &format!("replay: every replay answered 200 duplicate ({duplicates} of {want})"),
        );
    }
    println!("{} passed, {} failed", c.passed, c.failed);
    Ok(c.failed == 0)
}

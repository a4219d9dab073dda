//! The fast-acknowledgement queue on Redis Streams (feature `redis`),
//! shared by every replica on the same Redis.

use std::fmt;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use redis::Script;

use super::storage::{ClaimSettlement, DeadLetter, Delivery, Job, JobId, QueueStorage, Taken};
use crate::dedupe::{StoreError, StoreFuture};
use crate::fleet::RedisConnection;
use crate::ConfigError;

const DEFAULT_NAME: &str = "webhook-guard:queue";
const DEFAULT_LEASE: Duration = Duration::from_secs(60);
const DEFAULT_POLL: Duration = Duration::from_millis(500);
const GROUP: &str = "workers";
/// How long an enqueue's token is remembered, so a call repeated after a
/// broken connection adds nothing twice.
const TOKEN_TTL_MS: u64 = 120_000;
/// The sequence part of a stream id is kept in the low bits of a [`JobId`].
const SEQ_BITS: u32 = 20;

/// `KEYS`: stream, delay set, payloads of delayed deliveries, attempts,
/// token key. `ARGV[1]` the encoded delivery, `ARGV[2]` the capacity.
/// Returns the new entry's id, or `false` when the queue is full.
const ENQUEUE_LUA: &str = r"
local prev = redis.call('GET', KEYS[5])
if prev then return prev end
if redis.call('XLEN', KEYS[1]) + redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[2]) then
  return false
end
local id = redis.call('XADD', KEYS[1], '*', 'd', ARGV[1], 'a', '0')
redis.call('SET', KEYS[5], id, 'PX', ARGV[3])
return id
";

/// `KEYS`: stream, delay set, delayed payloads, attempts, auto-claim
/// cursor. `ARGV`: group, consumer, lease (ms), and optionally the id of
/// an entry this consumer finished (settled done first, in the same
/// trip). Moves due retries back to the stream, then takes one entry: first one whose lease ran out
/// (another consumer took it and went silent), else a new one. Returns
/// `{id, delivery, attempt}`, or `{false, ms until the next retry is due
/// (-1: none)}`.
const TAKE_LUA: &str = r"
if ARGV[4] then
  redis.call('XACK', KEYS[1], ARGV[1], ARGV[4])
  redis.call('XDEL', KEYS[1], ARGV[4])
  redis.call('HDEL', KEYS[4], ARGV[4])
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local due = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, 32)
for _, m in ipairs(due) do
  local p = redis.call('HMGET', KEYS[3], m .. ':d', m .. ':a')
  if p[1] then
    redis.call('XADD', KEYS[1], '*', 'd', p[1], 'a', p[2] or '0')
  end
  redis.call('HDEL', KEYS[3], m .. ':d', m .. ':a', m .. ':e')
  redis.call('ZREM', KEYS[2], m)
end
local cursor = redis.call('GET', KEYS[5]) or '0-0'
local ok, claimed = pcall(redis.call, 'XAUTOCLAIM', KEYS[1], ARGV[1], ARGV[2], ARGV[3], cursor, 'COUNT', 1)
if not ok then
  -- No group yet (a new or wiped Redis): create it over the whole stream.
  redis.pcall('XGROUP', 'CREATE', KEYS[1], ARGV[1], '0', 'MKSTREAM')
  return {false, 0}
end
redis.call('SET', KEYS[5], claimed[1])
local entry = claimed[2][1]
if not entry then
  local r = redis.call('XREADGROUP', 'GROUP', ARGV[1], ARGV[2], 'COUNT', 1, 'STREAMS', KEYS[1], '>')
  if r then entry = r[1][2][1] end
end
if entry then
  local id = entry[1]
  local f = entry[2]
  local d, a = nil, '0'
  for i = 1, #f, 2 do
    if f[i] == 'd' then d = f[i + 1] elseif f[i] == 'a' then a = f[i + 1] end
  end
  if not d then
    redis.call('XACK', KEYS[1], ARGV[1], id)
    redis.call('XDEL', KEYS[1], id)
    return {false, 0}
  end
  local runs = redis.call('HINCRBY', KEYS[4], id, 1)
  return {id, d, runs + tonumber(a)}
end
local nxt = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
if nxt[2] then return {false, math.max(tonumber(nxt[2]) - now, 0)} end
return {false, -1}
";

/// `KEYS`: stream. `ARGV`: group, consumer, id. Resets the idle time of
/// an entry this consumer holds (a renewal of its lease); an entry another
/// consumer took over meanwhile is left alone. Returns 1 if renewed.
const KEEP_LUA: &str = r"
local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[3], ARGV[3], 1, ARGV[2])
if not p[1] then return 0 end
redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[3], 'JUSTID')
return 1
";

/// `KEYS`: stream, attempts. `ARGV`: group, id. Settles a run: done.
const COMPLETE_LUA: &str = r"
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
redis.call('HDEL', KEYS[2], ARGV[2])
return 1
";

/// `KEYS`: stream, delay set, delayed payloads, attempts, sequence,
/// dead-letter stream. `ARGV`: group, id, delay (ms; -1: bury), error.
/// Moves a taken entry to the delay set (or the dead letters) with its
/// attempts so far.
const SETTLE_LUA: &str = r"
local e = redis.call('XRANGE', KEYS[1], ARGV[2], ARGV[2])
local runs = tonumber(redis.call('HGET', KEYS[4], ARGV[2]) or '0')
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
redis.call('HDEL', KEYS[4], ARGV[2])
if not e[1] then return 0 end
local f = e[1][2]
local d, a = nil, '0'
for i = 1, #f, 2 do
  if f[i] == 'd' then d = f[i + 1] elseif f[i] == 'a' then a = f[i + 1] end
end
if not d then return 0 end
local attempts = runs + tonumber(a)
local t = redis.call('TIME')
if tonumber(ARGV[3]) < 0 then
  redis.call('XADD', KEYS[6], '*', 'd', d, 'a', attempts, 'e', ARGV[4], 't', t[1])
  return 1
end
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local m = tostring(redis.call('INCR', KEYS[5]))
redis.call('HSET', KEYS[3], m .. ':d', d, m .. ':a', attempts, m .. ':e', ARGV[4])
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[3]), m)
return 1
";

/// `KEYS`: stream, dead-letter stream. `ARGV`: the dead letters' ids (none:
/// all). Puts them back in the stream with a fresh count of attempts.
const REQUEUE_LUA: &str = r"
local ids = ARGV
if #ids == 0 then
  ids = {}
  for _, e in ipairs(redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', 10000)) do
    ids[#ids + 1] = e[1]
  end
end
local n = 0
for _, id in ipairs(ids) do
  local e = redis.call('XRANGE', KEYS[2], id, id)
  if e[1] then
    local f = e[1][2]
    for i = 1, #f, 2 do
      if f[i] == 'd' then
        redis.call('XADD', KEYS[1], '*', 'd', f[i + 1], 'a', '0')
        n = n + 1
      end
    end
    redis.call('XDEL', KEYS[2], id)
  end
end
return n
";

/// A [`QueueStorage`] on Redis Streams, shared by every replica on the
/// same Redis: a replica that dies leaves its deliveries to the others.
/// Cheap to clone.
///
/// # How it works
///
/// - **Enqueue**: one script checks the capacity and `XADD`s the encoded
///   delivery (a token makes a call repeated after a broken connection add
///   nothing twice). The 202 is sent after Redis answered, and, with
///   [`wait_for_aof`](RedisQueueBuilder::wait_for_aof), after `WAITAOF`
///   confirmed the write reached the append-only file.
/// - **Take**: one script moves due retries back into the stream, then
///   takes an entry for this process's consumer in the group `workers`:
///   first one whose [lease](RedisQueueBuilder::lease) ran out
///   (`XAUTOCLAIM`: the consumer that took it died or hangs), else a new
///   one (`XREADGROUP`). Run counts are kept per entry.
/// - **Settle**: done is `XACK` + `XDEL`; a retry moves the entry to a
///   sorted set of delayed deliveries; a delivery out of attempts goes to
///   a dead-letter stream. Nothing is ever trimmed: an entry leaves the
///   stream only once it is settled.
///
/// Workers of every replica poll for new entries every
/// [`poll_interval`](RedisQueueBuilder::poll_interval) when idle (an
/// enqueue on the same replica wakes them at once).
///
/// # What survives what
///
/// A delivery answered 202 is in Redis. It survives this process being
/// killed (another replica, or this one after its restart, takes it over
/// once its lease has run out). It survives a Redis restart only as far as
/// Redis persists it:
///
/// | Redis configuration | a Redis crash loses |
/// |---|---|
/// | `appendonly yes`, `appendfsync always` | nothing answered 202 |
/// | `appendonly yes`, `appendfsync everysec`, with [`wait_for_aof`](RedisQueueBuilder::wait_for_aof) (Redis 7.2+) | nothing answered 202 (each 202 waits for the fsync, up to about a second) |
/// | `appendonly yes`, `appendfsync everysec` | up to the last second of 202s |
/// | `appendonly no` (the default) | everything since the last snapshot |
///
/// [`RedisConnection::check`] warns about the last one. While a handler
/// runs, its worker renews the lease every third of it
/// ([`QueueStorage::renew_every`]), so a long run is not taken over; a
/// replica that dies (or stalls longer than the lease) stops renewing, and
/// its deliveries go to the others.
///
/// # Keys
///
/// All under one hash tag, `{name}` (default `{webhook-guard:queue}`), so
/// every script's keys share one Cluster slot: `:s` (the stream), `:z` and
/// `:p` (delayed retries), `:n` (run counts), `:c` (the takeover cursor),
/// `:q` (the retry sequence), `:dead` (the dead-letter stream), and
/// `:t:<token>` (enqueue tokens, two minutes each).
#[derive(Clone)]
pub struct RedisQueue {
    inner: Arc<Inner>,
}

struct Inner {
    conn: RedisConnection,
    keys: Keys,
    consumer: String,
    lease: Duration,
    poll: Duration,
    capacity: usize,
    wait_for_aof: Option<Duration>,
    enqueue: Script,
    take: Script,
    keep: Script,
    complete: Script,
    settle: Script,
    requeue: Script,
}

struct Keys {
    stream: String,
    delayed: String,
    payloads: String,
    runs: String,
    cursor: String,
    sequence: String,
    dead: String,
    token: String,
}

/// Builder for [`RedisQueue`], from [`RedisQueue::builder`].
#[must_use]
#[derive(Debug)]
pub struct RedisQueueBuilder {
    conn: RedisConnection,
    name: String,
    lease: Duration,
    poll: Duration,
    capacity: NonZeroUsize,
    wait_for_aof: Option<Duration>,
}

impl RedisQueue {
    /// Starts configuring a queue on `conn`.
    pub fn builder(conn: RedisConnection) -> RedisQueueBuilder {
        RedisQueueBuilder {
            conn,
            name: DEFAULT_NAME.to_owned(),
            lease: DEFAULT_LEASE,
            poll: DEFAULT_POLL,
            capacity: NonZeroUsize::new(super::DEFAULT_CAPACITY).unwrap_or(NonZeroUsize::MIN),
            wait_for_aof: None,
        }
    }

    fn unavailable(&self, what: &'static str) -> impl Fn(StoreError) -> StoreError {
        move |e| e.with_message(what)
    }

    /// Settles `done` (if any) and takes the next entry, in one trip.
    async fn take_after(&self, done: Option<JobId>) -> Result<Taken, StoreError> {
        let k = &self.inner.keys;
        let script = &self.inner.take;
        let consumer = &self.inner.consumer;
        let lease = u64::try_from(self.inner.lease.as_millis()).unwrap_or(u64::MAX);
        let done = &done.map(stream_id);
        // Repeating the call after a broken connection is safe: settling
        // done twice is a no-op, and an entry taken by a call whose answer
        // was lost is taken over after its lease.
        let answer: redis::Value = self
            .inner
            .conn
            .run(|mut conn| async move {
                let mut invocation = script.key(&k.stream);
                invocation
                    .key(&k.delayed)
                    .key(&k.payloads)
                    .key(&k.runs)
                    .key(&k.cursor)
                    .arg(GROUP)
                    .arg(consumer)
                    .arg(lease);
                if let Some(done) = done {
                    invocation.arg(done);
                }
                invocation.invoke_async(&mut conn).await
            })
            .await
            .map_err(self.unavailable("the Redis queue could not take a delivery"))?;
        let redis::Value::Array(items) = answer else {
            return Err(bad_id());
        };
        match items.as_slice() {
            [redis::Value::BulkString(id), redis::Value::BulkString(data), attempt] => {
                let id = std::str::from_utf8(id).ok().and_then(job_id).ok_or_else(bad_id)?;
                let attempt: i64 =
                    <i64 as redis::FromRedisValue>::from_redis_value_ref(attempt).map_err(|_| bad_id())?;
                match Delivery::decode(data) {
                    Ok(delivery) => Ok(Taken::Job(Job {
                        id,
                        attempt: u32::try_from(attempt).unwrap_or(u32::MAX).max(1),
                        delivery,
                    })),
                    Err(e) => {
                        // Not a delivery this crate wrote: taken again, it
                        // would fail again after every lease. Kept aside
                        // in the dead letters instead, and reported.
                        tracing::error!(
                            target: "webhook_guard",
                            job = %id,
                            error = %e,
                            "an entry of the Redis queue is not a delivery; moved to the dead letters"
                        );
                        self.settle(id, None, "the stored delivery could not be decoded")
                            .await?;
                        Ok(Taken::Idle {
                            next_due: Some(Duration::ZERO),
                        })
                    }
                }
            }
            [_, next] => {
                let next: i64 =
                    <i64 as redis::FromRedisValue>::from_redis_value_ref(next).map_err(|_| bad_id())?;
                let next = u64::try_from(next)
                    .map(Duration::from_millis)
                    .unwrap_or(self.inner.poll);
                Ok(Taken::Idle {
                    next_due: Some(next.min(self.inner.poll)),
                })
            }
            _ => Err(bad_id()),
        }
    }

    async fn settle(&self, id: JobId, delay: Option<Duration>, error: &str) -> Result<(), StoreError> {
        let k = &self.inner.keys;
        let id = stream_id(id);
        let delay_ms = delay.map_or(-1, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        let script = &self.inner.settle;
        let id = &id;
        self.inner
            .conn
            .run(|mut conn| async move {
                script
                    .key(&k.stream)
                    .key(&k.delayed)
                    .key(&k.payloads)
                    .key(&k.runs)
                    .key(&k.sequence)
                    .key(&k.dead)
                    .arg(GROUP)
                    .arg(id)
                    .arg(delay_ms)
                    .arg(error)
                    .invoke_async::<i64>(&mut conn)
                    .await
            })
            .await
            .map(drop)
            .map_err(self.unavailable("the Redis queue could not settle a delivery"))
    }
}

/// A stream id (`ms-seq`) as a [`JobId`]: the milliseconds above
/// [`SEQ_BITS`] bits of sequence.
fn job_id(stream_id: &str) -> Option<JobId> {
    let (ms, seq) = stream_id.split_once('-')?;
    let ms: i64 = ms.parse().ok()?;
    let seq: i64 = seq.parse().ok()?;
    if !(0..1 << SEQ_BITS).contains(&seq) || ms >= 1 << (62 - SEQ_BITS) {
        return None;
    }
    Some(JobId((ms << SEQ_BITS) | seq))
}

/// The stream id of a [`JobId`] made by [`job_id`].
fn stream_id(id: JobId) -> String {
    format!("{}-{}", id.0 >> SEQ_BITS, id.0 & ((1 << SEQ_BITS) - 1))
}

fn bad_id() -> StoreError {
    StoreError::unavailable(
        "the Redis queue returned an entry id it cannot use",
        Duration::from_secs(5),
    )
}

impl QueueStorage for RedisQueue {
    fn enqueue<'a>(
        &'a self,
        delivery: &'a Delivery,
        _claim: Option<ClaimSettlement>,
    ) -> StoreFuture<'a, JobId> {
        Box::pin(async move {
            let k = &self.inner.keys;
            let encoded = &delivery.encode();
            let token = &format!(
                "{}{:032x}",
                k.token,
                crate::dedupe::LeaseToken::random().as_u128()
            );
            let script = &self.inner.enqueue;
            let capacity = self.inner.capacity;
            let wait = self.inner.wait_for_aof;
            let limit = self.inner.conn.timeout() + wait.unwrap_or_default();
            let answer = self
                .inner
                .conn
                .run_within(limit, |mut conn| async move {
                    let id: Option<String> = script
                        .key(&k.stream)
                        .key(&k.delayed)
                        .key(&k.payloads)
                        .key(&k.runs)
                        .key(token)
                        .arg(encoded.as_slice())
                        .arg(capacity)
                        .arg(TOKEN_TTL_MS)
                        .invoke_async(&mut conn)
                        .await?;
                    let Some(wait) = wait.filter(|_| id.is_some()) else {
                        return Ok((id, true));
                    };
                    // On the same connection: WAITAOF waits for every
                    // write this connection made before it, ours included.
                    let (local, _replicas): (i64, i64) = redis::cmd("WAITAOF")
                        .arg(1)
                        .arg(0)
                        .arg(u64::try_from(wait.as_millis()).unwrap_or(u64::MAX).max(1))
                        .query_async(&mut conn)
                        .await?;
                    Ok((id, local >= 1))
                })
                .await
                .map_err(self.unavailable("the Redis queue could not store the delivery"))?;
            match answer {
                (None, _) => Err(StoreError::full(self.inner.conn.retry_after())),
                (Some(id), true) => job_id(&id).ok_or_else(bad_id),
                (Some(id), false) => {
                    // Stored, but not confirmed on disk: take it back, so
                    // that a delivery answered 503 does not run.
                    let id = &id;
                    let _ = self
                        .inner
                        .conn
                        .run(|mut conn| async move {
                            redis::cmd("XDEL")
                                .arg(&k.stream)
                                .arg(id)
                                .query_async::<i64>(&mut conn)
                                .await
                        })
                        .await;
                    Err(StoreError::unavailable(
                        "Redis did not confirm the delivery reached its append-only file in time",
                        self.inner.conn.retry_after(),
                    ))
                }
            }
        })
    }

    fn take(&self) -> StoreFuture<'_, Taken> {
        Box::pin(self.take_after(None))
    }

    fn complete_and_take(&self, id: JobId) -> StoreFuture<'_, Taken> {
        Box::pin(self.take_after(Some(id)))
    }

    fn complete(&self, id: JobId) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            let k = &self.inner.keys;
            let id = &stream_id(id);
            let script = &self.inner.complete;
            self.inner
                .conn
                .run(|mut conn| async move {
                    script
                        .key(&k.stream)
                        .key(&k.runs)
                        .arg(GROUP)
                        .arg(id)
                        .invoke_async::<i64>(&mut conn)
                        .await
                })
                .await
                .map(drop)
                .map_err(self.unavailable("the Redis queue could not record a delivery done"))
        })
    }

    fn retry<'a>(&'a self, id: JobId, after: Duration, error: &'a str) -> StoreFuture<'a, ()> {
        Box::pin(self.settle(id, Some(after), error))
    }

    fn bury<'a>(&'a self, id: JobId, error: &'a str) -> StoreFuture<'a, ()> {
        Box::pin(self.settle(id, None, error))
    }

    fn dead_letters(&self, limit: usize) -> StoreFuture<'_, Vec<DeadLetter>> {
        Box::pin(async move {
            let dead = &self.inner.keys.dead;
            let reply: redis::streams::StreamRangeReply = self
                .inner
                .conn
                .run(|mut conn| async move {
                    redis::cmd("XRANGE")
                        .arg(dead)
                        .arg("-")
                        .arg("+")
                        .arg("COUNT")
                        .arg(limit)
                        .query_async(&mut conn)
                        .await
                })
                .await
                .map_err(self.unavailable("the Redis queue could not list its dead letters"))?;
            let mut letters = Vec::with_capacity(reply.ids.len());
            for entry in reply.ids {
                let id = job_id(&entry.id).ok_or_else(bad_id)?;
                let data: Vec<u8> = entry.get("d").ok_or_else(bad_id)?;
                let attempts: u32 = entry.get("a").unwrap_or(0);
                let last_error: String = entry.get("e").unwrap_or_default();
                let buried_at_unix: i64 = entry.get("t").unwrap_or(0);
                match Delivery::decode(&data) {
                    Ok(delivery) => letters.push(DeadLetter {
                        id,
                        attempts,
                        last_error,
                        buried_at_unix,
                        delivery,
                    }),
                    // Buried because it could not be decoded: listed in
                    // the log, not as a delivery.
                    Err(_) => tracing::warn!(
                        target: "webhook_guard",
                        job = %id,
                        last_error,
                        "a dead letter of the Redis queue is not a delivery; skipped"
                    ),
                }
            }
            Ok(letters)
        })
    }

    fn requeue_dead<'a>(&'a self, ids: Option<&'a [JobId]>) -> StoreFuture<'a, usize> {
        Box::pin(async move {
            let k = &self.inner.keys;
            let all = ids.is_none();
            let ids: &Vec<String> =
                &ids.map_or_else(Vec::new, |ids| ids.iter().map(|&id| stream_id(id)).collect());
            if ids.is_empty() && !all {
                // An explicit empty list requeues nothing (an empty ARGV
                // would mean all of them).
                return Ok(0);
            }
            let script = &self.inner.requeue;
            self.inner
                .conn
                .run(|mut conn| async move {
                    let mut invocation = script.key(&k.stream);
                    invocation.key(&k.dead);
                    for id in ids {
                        invocation.arg(id);
                    }
                    invocation.invoke_async::<usize>(&mut conn).await
                })
                .await
                .map_err(self.unavailable("the Redis queue could not requeue its dead letters"))
        })
    }

    fn recover(&self) -> StoreFuture<'_, usize> {
        // Entries a dead process took are taken over by `take` once their
        // lease has run out; here only the group is made sure of.
        Box::pin(async move {
            let stream = &self.inner.keys.stream;
            let created = self
                .inner
                .conn
                .run(|mut conn| async move {
                    redis::cmd("XGROUP")
                        .arg("CREATE")
                        .arg(stream)
                        .arg(GROUP)
                        .arg("0")
                        .arg("MKSTREAM")
                        .query_async::<()>(&mut conn)
                        .await
                })
                .await;
            match created {
                Ok(()) => Ok(0),
                Err(e) if format!("{e:?}").contains("BUSYGROUP") => Ok(0),
                Err(e) => Err(e.with_message("the Redis queue could not create its consumer group")),
            }
        })
    }

    fn len(&self) -> StoreFuture<'_, usize> {
        Box::pin(async move {
            let k = &self.inner.keys;
            self.inner
                .conn
                .run(|mut conn| async move {
                    let (stream, delayed): (usize, usize) = redis::pipe()
                        .cmd("XLEN")
                        .arg(&k.stream)
                        .cmd("ZCARD")
                        .arg(&k.delayed)
                        .query_async(&mut conn)
                        .await?;
                    Ok(stream + delayed)
                })
                .await
                .map_err(self.unavailable("the Redis queue could not count its deliveries"))
        })
    }

    fn is_durable(&self) -> bool {
        true
    }

    fn renew_every(&self) -> Option<Duration> {
        Some(self.inner.lease / 3)
    }

    fn keep(&self, id: JobId) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            let stream = &self.inner.keys.stream;
            let consumer = &self.inner.consumer;
            let id = &stream_id(id);
            let script = &self.inner.keep;
            self.inner
                .conn
                .run(|mut conn| async move {
                    script
                        .key(stream)
                        .arg(GROUP)
                        .arg(consumer)
                        .arg(id)
                        .invoke_async::<i64>(&mut conn)
                        .await
                })
                .await
                .map(drop)
                .map_err(self.unavailable("the Redis queue could not renew a running delivery's lease"))
        })
    }
}

impl fmt::Debug for RedisQueue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisQueue")
            .field("stream", &self.inner.keys.stream)
            .field("consumer", &self.inner.consumer)
            .field("lease", &self.inner.lease)
            .field("capacity", &self.inner.capacity)
            .field("wait_for_aof", &self.inner.wait_for_aof)
            .finish_non_exhaustive()
    }
}

impl RedisQueueBuilder {
    /// The queue's name, which every replica of one application shares:
    /// its keys are `{name}:s`, `{name}:dead`, ... Default
    /// `"webhook-guard:queue"`.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// How long a taken delivery may go without its lease being renewed
    /// before another consumer takes it over (the one that took it died or
    /// stalled); running workers renew it every third of it. Default 60 s.
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// How often idle workers look for deliveries other replicas stored.
    /// Default 500 ms.
    pub fn poll_interval(mut self, poll: Duration) -> Self {
        self.poll = poll;
        self
    }

    /// Most deliveries stored and not done (waiting, delayed or running);
    /// past it an enqueue fails as full (503 `queue_full`). Default
    /// [`DEFAULT_CAPACITY`](super::DEFAULT_CAPACITY).
    pub fn capacity(mut self, capacity: NonZeroUsize) -> Self {
        self.capacity = capacity;
        self
    }

    /// After each enqueue, wait up to `timeout` for Redis to confirm the
    /// write reached its append-only file (`WAITAOF 1 0`, Redis 7.2+); a
    /// delivery not confirmed in time is taken back and answered 503. For
    /// `appendfsync everysec`: without it a Redis crash may lose the last
    /// second of 202s. Check the server has it with
    /// [`ServerReport::has_waitaof`](crate::fleet::ServerReport::has_waitaof).
    /// Default: off.
    pub fn wait_for_aof(mut self, timeout: Duration) -> Self {
        self.wait_for_aof = Some(timeout);
        self
    }

    /// The queue. Nothing connects yet.
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidStore`] for a zero lease or poll interval, or
    /// a name holding `{` or `}`.
    pub fn build(self) -> Result<RedisQueue, ConfigError> {
        let invalid = |reason: &str| ConfigError::InvalidStore {
            reason: reason.to_owned(),
        };
        if self.lease.is_zero() || self.poll.is_zero() {
            return Err(invalid(
                "the Redis queue's lease and poll interval must be greater than zero",
            ));
        }
        if self.name.contains(['{', '}']) || self.name.is_empty() {
            return Err(invalid(
                "the Redis queue's name must be non-empty, without braces",
            ));
        }
        let tag = format!("{{{}}}", self.name);
        let key = |suffix: &str| format!("{tag}:{suffix}");
        Ok(RedisQueue {
            inner: Arc::new(Inner {
                conn: self.conn,
                keys: Keys {
                    stream: key("s"),
                    delayed: key("z"),
                    payloads: key("p"),
                    runs: key("n"),
                    cursor: key("c"),
                    sequence: key("q"),
                    dead: key("dead"),
                    token: key("t:"),
                },
                consumer: format!("c-{:032x}", crate::dedupe::LeaseToken::random().as_u128()),
                lease: self.lease,
                poll: self.poll,
                capacity: self.capacity.get(),
                wait_for_aof: self.wait_for_aof,
                enqueue: Script::new(ENQUEUE_LUA),
                take: Script::new(TAKE_LUA),
                keep: Script::new(KEEP_LUA),
                complete: Script::new(COMPLETE_LUA),
                settle: Script::new(SETTLE_LUA),
                requeue: Script::new(REQUEUE_LUA),
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_ids_round_trip_stream_ids() {
        for id in [
            "0-0",
            "1765000000000-0",
            "1765000000000-7",
            "1765000000000-1048575",
        ] {
            let Some(job) = job_id(id) else { panic!("{id}") };
            assert_eq!(stream_id(job), id);
        }
        assert!(job_id("1765000000000-1048576").is_none());
        assert!(job_id("x-1").is_none());
        assert!(job_id("1-").is_none());
        assert!(job_id("-1-1").is_none());
    }
}

//! Reading the body once, under a limit enforced while streaming.

use std::pin::pin;

use bytes::{Bytes, BytesMut};
use http_body::Body;
use http_body_util::BodyExt as _;

use crate::{Rejection, RejectionKind};

/// Largest buffer reserved up front from a `Content-Length` hint.
const MAX_PREALLOC: usize = 64 * 1024;

/// Reads `body` to its end. Fails with 413 as soon as more than `limit`
/// bytes have arrived (nothing past the limit is buffered), with 400 if the
/// stream breaks. A body that arrives in one chunk is returned as is,
/// without a copy.
pub(crate) async fn read<B>(body: B, limit: usize, hint: Option<u64>) -> Result<Bytes, Rejection>
where
    B: Body<Data = Bytes>,
{
    let mut body = pin!(body);
    let mut first: Option<Bytes> = None;
    let mut buf: Option<BytesMut> = None;
    let mut len = 0usize;
    while let Some(frame) = body.as_mut().frame().await {
        let frame = frame.map_err(|_| {
            Rejection::new(
                RejectionKind::BodyReadFailed,
                "the request body could not be read to its end",
            )
        })?;
        let Ok(data) = frame.into_data() else {
            continue; // trailers carry no body bytes
        };
        if data.is_empty() {
            continue;
        }
        len = match len.checked_add(data.len()) {
            Some(n) if n <= limit => n,
            _ => return Err(Rejection::too_large(limit)),
        };
        match (&mut first, &mut buf) {
            (None, None) => first = Some(data),
            (Some(_), None) => {
                let cap = hint
                    .and_then(|h| usize::try_from(h).ok())
                    .unwrap_or(0)
                    .max(len)
                    .min(limit)
                    .min(MAX_PREALLOC.max(len));
                let mut b = BytesMut::with_capacity(cap);
                if let Some(f) = first.take() {
                    b.extend_from_slice(&f);
                }
                b.extend_from_slice(&data);
                buf = Some(b);
            }
            (_, Some(b)) => b.extend_from_slice(&data),
        }
    }
    Ok(match (first, buf) {
        (_, Some(b)) => b.freeze(),
        (Some(f), None) => f,
        (None, None) => Bytes::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;
    use std::convert::Infallible;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    /// A body that yields the given chunks, then `endless` chunks of 1 KiB
    /// for ever, counting what it handed out.
    struct Chunks {
        parts: VecDeque<Bytes>,
        endless: bool,
        served: usize,
    }

    impl Body for Chunks {
        type Data = Bytes;
        type Error = Infallible;
        fn poll_frame(
            mut self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
        ) -> Poll<Option<Result<http_body::Frame<Bytes>, Infallible>>> {
            let next = match self.parts.pop_front() {
                Some(p) => Some(p),
                None if self.endless => Some(Bytes::from(vec![b'a'; 1024])),
                None => None,
            };
            if let Some(p) = &next {
                self.served += p.len();
            }
            Poll::Ready(next.map(|p| Ok(http_body::Frame::data(p))))
        }
    }

    fn chunks(parts: &[&'static [u8]], endless: bool) -> Chunks {
        Chunks {
            parts: parts.iter().map(|p| Bytes::from_static(p)).collect(),
            endless,
            served: 0,
        }
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        let mut f = pin!(f);
        loop {
            if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
                return v;
            }
        }
    }

    #[test]
    fn joins_chunks() {
        let got = block_on(read(chunks(&[b"ab", b"", b"cd"], false), 4, None));
        assert_eq!(got.ok().as_deref(), Some(&b"abcd"[..]));
    }

    #[test]
    fn single_chunk_is_not_copied() {
        let data = Bytes::from_static(b"hello");
        let body = http_body_util::Full::new(data.clone());
        let got = block_on(read(body, 5, Some(5))).unwrap_or_default();
        assert_eq!(got.as_ptr(), data.as_ptr());
    }

    #[test]
    fn stops_as_soon_as_the_limit_is_crossed() {
        let mut body = chunks(&[], true);
        let got = block_on(read(&mut body, 10 * 1024, None));
        assert_eq!(got.err().map(|r| r.kind()), Some(RejectionKind::BodyTooLarge));
        // Eleven 1 KiB chunks were pulled, not one more.
        assert_eq!(body.served, 11 * 1024);
    }

    #[test]
    fn exact_limit_passes() {
        let got = block_on(read(chunks(&[b"abc", b"de"], false), 5, None));
        assert_eq!(got.ok().as_deref(), Some(&b"abcde"[..]));
        let got = block_on(read(chunks(&[b"abc", b"def"], false), 5, None));
        assert!(got.is_err());
    }
}

//! Request and response bodies of the control API (small and complete).

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};

/// A complete body.
#[derive(Debug, Default)]
pub struct Full(pub Option<Bytes>);

impl Full {
    /// A body holding `b`.
    pub fn new(b: impl Into<Bytes>) -> Self {
        Self(Some(b.into()))
    }
}

impl Body for Full {
    type Data = Bytes;
    type Error = std::convert::Infallible;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Poll::Ready(self.0.take().map(|b| Ok(Frame::data(b))))
    }
    fn is_end_stream(&self) -> bool {
        self.0.is_none()
    }
    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.0.as_ref().map_or(0, |b| b.len() as u64))
    }
}

/// Reads a whole body, refusing more than `limit` bytes.
pub async fn collect<B>(body: B, limit: usize) -> Result<Bytes, String>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    let mut body = body;
    let mut out = BytesMut::new();
    loop {
        let frame = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await;
        match frame {
            None => return Ok(out.freeze()),
            Some(Err(e)) => return Err(e.to_string()),
            Some(Ok(f)) => {
                if let Some(d) = f.data_ref() {
                    if out.len() + d.len() > limit {
                        return Err(format!("body larger than {limit} bytes"));
                    }
                    out.extend_from_slice(d);
                }
            }
        }
    }
}

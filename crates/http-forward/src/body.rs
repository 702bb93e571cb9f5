//! A body wrapper that reports its data frames and its end, without copying anything.

use std::pin::Pin;
use std::task::{Context, Poll};

use http_body::{Body, Frame, SizeHint};

/// Told about a body's progress.
pub trait BodyTap {
    /// A data frame went through.
    fn data(&mut self) {}
    /// The body ended completely (not called when it is dropped half-way).
    fn end(&mut self) {}
}

pin_project_lite::pin_project! {
    /// Wraps a body and calls its [`BodyTap`] as frames pass.
    #[derive(Debug)]
    pub struct Tapped<B, T> {
        #[pin]
        inner: B,
        tap: T,
        ended: bool,
    }
}

impl<B: Body, T: BodyTap> Tapped<B, T> {
    /// Wraps `inner`. A body that is already known to be empty ends at once.
    pub fn new(inner: B, mut tap: T) -> Self {
        let ended = inner.is_end_stream();
        if ended {
            tap.end();
        }
        Self { inner, tap, ended }
    }
}

impl<B: Body, T: BodyTap> Body for Tapped<B, T> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let mut this = self.project();
        let polled = this.inner.as_mut().poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if frame.is_data() {
                    this.tap.data();
                }
            }
            Poll::Ready(None) => {
                if !*this.ended {
                    *this.ended = true;
                    this.tap.end();
                }
                return polled;
            }
            _ => return polled,
        }
        // A server may stop polling once the body says it has ended, so report the end now.
        // `polled` holds the last frame, so the inner body is not polled again here.
        if !*this.ended && this.inner.is_end_stream() {
            *this.ended = true;
            this.tap.end();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http_body_util::{BodyExt, Full, StreamBody};

    #[derive(Default)]
    struct Count {
        data: usize,
        end: usize,
    }
    impl BodyTap for &mut Count {
        fn data(&mut self) {
            self.data += 1;
        }
        fn end(&mut self) {
            self.end += 1;
        }
    }

    #[tokio::test]
    async fn full_body_reports_data_and_end_once() {
        let mut count = Count::default();
        let body = Tapped::new(Full::new(Bytes::from_static(b"hello")), &mut count);
        let bytes = body.collect().await.unwrap().to_bytes();
        assert_eq!(bytes, "hello");
        assert_eq!((count.data, count.end), (1, 1));
    }

    #[tokio::test]
    async fn streamed_body_reports_each_chunk() {
        let mut count = Count::default();
        let chunks =
            (0..3).map(|i| Ok::<_, std::convert::Infallible>(Frame::data(Bytes::from(vec![i; 4]))));
        let body = Tapped::new(
            StreamBody::new(futures_util::stream::iter(chunks)),
            &mut count,
        );
        let _ = body.collect().await.unwrap();
        assert_eq!((count.data, count.end), (3, 1));
    }

    #[test]
    fn empty_body_ends_at_once() {
        let mut count = Count::default();
        let _body = Tapped::new(http_body_util::Empty::<Bytes>::new(), &mut count);
        assert_eq!((count.data, count.end), (0, 1));
    }
}

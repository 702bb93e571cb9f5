//! The body of every response the shim sends: streamed from the app, or made here.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::Full;
use hyper::body::Incoming;

pin_project_lite::pin_project! {
    /// A response body.
    #[project = Proj]
    #[derive(Debug)]
    pub enum ShimBody {
        /// From the app, streamed as it arrives.
        Upstream { #[pin] body: Incoming },
        /// Made by the shim.
        Full { #[pin] body: Full<Bytes> },
    }
}

impl ShimBody {
    /// A body made here.
    pub fn full(bytes: impl Into<Bytes>) -> Self {
        Self::Full {
            body: Full::new(bytes.into()),
        }
    }

    /// No body.
    pub fn empty() -> Self {
        Self::full(Bytes::new())
    }
}

impl Body for ShimBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.project() {
            Proj::Upstream { body } => body.poll_frame(cx),
            Proj::Full { body } => body
                .poll_frame(cx)
                .map(|f| f.map(|r| r.map_err(|never| match never {}))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Upstream { body } => body.is_end_stream(),
            Self::Full { body } => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Upstream { body } => body.size_hint(),
            Self::Full { body } => body.size_hint(),
        }
    }
}

//! Client connections before Pingora's HTTP code sees them: [`GuardedApp`] wraps the proxy
//! application so that every accepted connection becomes a [`GuardedStream`] (header deadline,
//! open-connections gauge).

mod stream;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::apps::ServerApp;
use pingora::protocols::Stream;
use pingora::server::ShutdownWatch;

pub use stream::GuardedStream;

/// A Pingora application (the HTTP proxy) whose connections are guarded.
pub struct GuardedApp<A> {
    inner: Arc<A>,
    header_timeout: Duration,
}

impl<A> GuardedApp<A> {
    pub fn new(inner: A, header_timeout: Duration) -> Self {
        GuardedApp {
            inner: Arc::new(inner),
            header_timeout,
        }
    }
}

#[async_trait]
impl<A: ServerApp + Send + Sync + 'static> ServerApp for GuardedApp<A> {
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        // A stream handed back for reuse is already guarded.
        let stream: Stream = if (*stream).as_any().is::<GuardedStream>() {
            stream
        } else {
            Box::new(GuardedStream::new(stream, self.header_timeout))
        };
        self.inner.process_new(stream, shutdown).await
    }

    async fn cleanup(&self) {
        self.inner.cleanup().await
    }
}

/// The guarded stream under an HTTP/1.x session, if any (HTTP/2 has none).
pub fn guarded(session: &pingora::protocols::http::ServerSession) -> Option<&GuardedStream> {
    session
        .stream()
        .and_then(|s| (**s).as_any().downcast_ref::<GuardedStream>())
}

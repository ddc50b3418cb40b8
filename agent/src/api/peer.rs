//! A served connection: the TLS stream plus who the client is, worked out
//! once at handshake time and handed to every request as an extension.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tonic::transport::server::Connected;

use crate::pki::role::PeerIdentity;

pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

pub use crate::pki::peer::Peer;

/// The verified identity of the caller of `req`.
pub fn identity<T>(req: &tonic::Request<T>) -> Result<PeerIdentity, tonic::Status> {
    crate::pki::peer::caller(req)
        .ok_or_else(|| tonic::Status::unauthenticated("a certificate of this cluster is required"))
}

/// A connection whose peer sent nothing for this long is closed. Live
/// clients answer the server's HTTP/2 keep-alive pings well within it.
pub const IDLE: Duration = Duration::from_secs(120);

pub struct PeerStream {
    inner: tokio_rustls::server::TlsStream<Box<dyn Io>>,
    pub peer: Peer,
    /// Fires when the peer has been silent for [`IDLE`].
    idle: Pin<Box<tokio::time::Sleep>>,
    /// This connection's place among the node's bounded connections,
    /// given back when it closes.
    _slot: tokio::sync::OwnedSemaphorePermit,
}

impl PeerStream {
    pub fn new(
        inner: tokio_rustls::server::TlsStream<Box<dyn Io>>,
        peer: Peer,
        slot: tokio::sync::OwnedSemaphorePermit,
    ) -> Self {
        Self { inner, peer, idle: Box::pin(tokio::time::sleep(IDLE)), _slot: slot }
    }
}

impl Connected for PeerStream {
    type ConnectInfo = Peer;
    fn connect_info(&self) -> Peer {
        self.peer.clone()
    }
}

impl AsyncRead for PeerStream {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) if buf.filled().len() > before => {
                self.idle.as_mut().reset(tokio::time::Instant::now() + IDLE);
                Poll::Ready(Ok(()))
            }
            Poll::Pending if self.idle.as_mut().poll(cx).is_ready() => {
                tracing::debug!(remote = %self.peer.remote, "idle connection closed");
                Poll::Ready(Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "idle connection")))
            }
            other => other,
        }
    }
}

impl AsyncWrite for PeerStream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

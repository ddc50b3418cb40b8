//! A tonic channel to a node's API over our own rustls configuration (so
//! callers choose how to trust: the cluster CA or a pin).

use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tonic::transport::{Channel, Endpoint};

use crate::NODE_SERVER_NAME;

/// How long connecting may take.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub connect: Duration,
    /// HTTP/2 keep-alive pings (none when `None`).
    pub keep_alive: Option<Duration>,
}

/// Node to node: 3 s to connect, no keep-alive.
pub const NODE: Timeouts = Timeouts { connect: Duration::from_secs(3), keep_alive: None };

/// Opens a channel to `addr` (host:port), verifying the server as
/// [`NODE_SERVER_NAME`] with `tls`. The connection is made now.
pub async fn connect(
    addr: &str,
    tls: Arc<rustls::ClientConfig>,
    t: Timeouts,
) -> Result<Channel, tonic::transport::Error> {
    let connector = tokio_rustls::TlsConnector::from(tls);
    let target = addr.to_string();
    let mut endpoint = Endpoint::from_static("http://node.orc").connect_timeout(t.connect);
    if let Some(k) = t.keep_alive {
        endpoint = endpoint.http2_keep_alive_interval(k);
    }
    let connect_timeout = t.connect;
    endpoint
        .connect_with_connector(tower::service_fn(move |_| {
            let (connector, target) = (connector.clone(), target.clone());
            async move {
                let tcp = tokio::time::timeout(connect_timeout, tokio::net::TcpStream::connect(&target))
                    .await
                    .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))??;
                let _ = tcp.set_nodelay(true);
                let name = ServerName::try_from(NODE_SERVER_NAME).map_err(std::io::Error::other)?;
                Ok::<_, std::io::Error>(TokioIo::new(connector.connect(name, tcp).await?))
            }
        }))
        .await
}

//! What the executor needs of the node's container runtime, as a small
//! trait: the real [`Runtime`] in the agent, a recording fake in the
//! executor's unit tests (youki's `Syscall` + `TestHelperSyscall` pattern).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::cluster::objects::Probe;
use crate::error::AgentError;
pub use crate::images::signed::Trust;
use crate::runtime::manager::Runtime;
use crate::runtime::record::{ContainerRecord, RunSpec};

#[tonic::async_trait]
pub trait TaskRuntime: Send + Sync + 'static {
    /// A container by id or name.
    async fn record(&self, ident: &str) -> Result<ContainerRecord, AgentError>;
    /// Whether the node has the image already (no pull needed).
    async fn has_image(&self, image: &str) -> bool;
    /// The image by digest once its signature verified under `trust`
    /// (None: no rule of the policy matches it).
    async fn verified_image(&self, image: &str, trust: Option<Trust<'_>>) -> Result<String, AgentError>;
    /// Gets the image, pulling it when the node lacks it.
    async fn ensure_image(&self, image: &str) -> Result<(), AgentError>;
    /// Creates and starts a container.
    async fn run(&self, spec: RunSpec) -> Result<ContainerRecord, AgentError>;
    /// `signal`, then SIGKILL after `timeout`.
    async fn stop(&self, id: &str, signal: i32, timeout: Duration) -> Result<ContainerRecord, AgentError>;
    /// Runs `args` in a running container to the end; its exit code.
    async fn exec(&self, id: &str, args: &[String]) -> Result<i32, AgentError>;
    /// The HEALTHCHECK of a local image, as a probe.
    async fn image_probe(&self, image: &str) -> Option<Probe>;
    /// Removes a container, stopping it first.
    async fn remove(&self, id: &str) -> Result<(), AgentError>;
    /// Every container on the node.
    async fn list(&self) -> Vec<ContainerRecord>;
    /// Bumped whenever a container changes.
    fn subscribe(&self) -> watch::Receiver<u64>;
}

#[tonic::async_trait]
impl TaskRuntime for Arc<Runtime> {
    async fn record(&self, ident: &str) -> Result<ContainerRecord, AgentError> {
        Runtime::record(self, ident).await
    }
    async fn has_image(&self, image: &str) -> bool {
        matches!(self.images.get(image).await, Ok(Some(_)))
    }
    async fn ensure_image(&self, image: &str) -> Result<(), AgentError> {
        crate::images::pull::ensure(&self.images, image, None).await.map(|_| ())
    }
    async fn verified_image(&self, image: &str, trust: Option<Trust<'_>>) -> Result<String, AgentError> {
        crate::images::signed::verify(&self.images, image, trust).await
    }
    async fn run(&self, spec: RunSpec) -> Result<ContainerRecord, AgentError> {
        self.run_spec(spec, None).await
    }
    async fn stop(&self, id: &str, signal: i32, timeout: Duration) -> Result<ContainerRecord, AgentError> {
        Runtime::stop_with(self, id, signal, Some(timeout)).await
    }
    async fn exec(&self, id: &str, args: &[String]) -> Result<i32, AgentError> {
        Runtime::exec_status(self, id, args).await
    }
    async fn image_probe(&self, image: &str) -> Option<Probe> {
        super::health::image_probe(&self.image_config(image).await?)
    }
    async fn remove(&self, id: &str) -> Result<(), AgentError> {
        Runtime::remove(self, id, true).await
    }
    async fn list(&self) -> Vec<ContainerRecord> {
        Runtime::list(self, true).await
    }
    fn subscribe(&self) -> watch::Receiver<u64> {
        Runtime::subscribe(self)
    }
}

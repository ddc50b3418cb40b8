//! The one place errors become gRPC status codes.

use tonic::Status;

use crate::cluster::dispatcher::DispatchError;
use crate::cluster::ClusterError;
use crate::error::AgentError;
use crate::raft::RaftError;
use crate::shim::error::ShimError;

impl From<AgentError> for Status {
    fn from(e: AgentError) -> Status {
        let msg = e.to_string();
        match e {
            AgentError::AlreadyMember => Status::already_exists(msg),
            AgentError::NotFound(_) => Status::not_found(msg),
            AgentError::AlreadyExists(_) => Status::already_exists(msg),
            AgentError::InvalidArgument(_) => Status::invalid_argument(msg),
            AgentError::FailedPrecondition(_) => Status::failed_precondition(msg),
            AgentError::PermissionDenied(_) => Status::permission_denied(msg),
            AgentError::Unavailable(_) => Status::unavailable(msg),
            AgentError::ResourceExhausted(_) => Status::resource_exhausted(msg),
            AgentError::Io(_) | AgentError::Internal(_) | AgentError::Pki(_) | AgentError::Tls(_) => {
                tracing::error!(error = %msg, "internal error");
                Status::internal(msg)
            }
        }
    }
}

impl From<RaftError> for Status {
    fn from(e: RaftError) -> Status {
        let msg = e.to_string();
        match e {
            RaftError::NotManager | RaftError::Stopped(_) | RaftError::NoQuorum { .. } | RaftError::Unavailable(_) => {
                Status::unavailable(msg)
            }
            RaftError::Leader { code, message } => Status::new(code, message),
            RaftError::BadNodeId(_) | RaftError::Store(_) | RaftError::Internal(_) => {
                tracing::error!(error = %msg, "internal Raft error");
                Status::internal(msg)
            }
        }
    }
}

impl From<ClusterError> for Status {
    fn from(e: ClusterError) -> Status {
        let msg = e.to_string();
        match e {
            ClusterError::NotFound(_) => Status::not_found(msg),
            ClusterError::AlreadyExists(_) => Status::already_exists(msg),
            ClusterError::InvalidArgument(_) | ClusterError::Spec(_) => Status::invalid_argument(msg),
            ClusterError::FailedPrecondition(_) => Status::failed_precondition(msg),
            ClusterError::Conflict(_) => Status::aborted(msg),
            ClusterError::PermissionDenied(_) => Status::permission_denied(msg),
            ClusterError::QuotaExceeded(_) => Status::resource_exhausted(msg),
            ClusterError::Raft(e) => e.into(),
            ClusterError::Agent(e) => e.into(),
            ClusterError::Internal(_) => {
                tracing::error!(error = %msg, "internal cluster error");
                Status::internal(msg)
            }
        }
    }
}

impl From<DispatchError> for Status {
    fn from(e: DispatchError) -> Status {
        let msg = e.to_string();
        match e {
            DispatchError::NotLeader { leader } => {
                let mut s = Status::unavailable(msg);
                // Nodes reconnect there.
                if let Some(a) = leader.and_then(|a| a.parse().ok()) {
                    s.metadata_mut().insert("orc-leader", a);
                }
                s
            }
            DispatchError::NotConfirmed | DispatchError::Unconfirmed(_) | DispatchError::ShuttingDown => {
                Status::unavailable(msg)
            }
            DispatchError::Removed { .. } => Status::permission_denied(msg),
            DispatchError::Raft(e) => e.into(),
        }
    }
}

impl From<ShimError> for Status {
    fn from(e: ShimError) -> Status {
        let msg = e.to_string();
        match e {
            ShimError::InvalidArgument(_) => Status::invalid_argument(msg),
            ShimError::FailedPrecondition(_) => Status::failed_precondition(msg),
            ShimError::Internal(_) => Status::internal(msg),
            ShimError::Agent(e) => e.into(),
        }
    }
}

impl From<crate::install::InstallError> for Status {
    fn from(e: crate::install::InstallError) -> Status {
        use crate::install::InstallError as E;
        use orc_image::bundle::BundleError as B;
        let msg = e.to_string();
        match e {
            E::Upgrade(u) => u.into(),
            E::NoSuchDisk { .. } => Status::not_found(msg),
            E::NotUefi
            | E::NotMaintenance
            | E::Partition { .. }
            | E::ReadOnly(_)
            | E::InUse { .. }
            | E::TooSmall { .. }
            | E::NotBlank { .. }
            | E::Busy => Status::failed_precondition(msg),
            E::Bundle(B::Untrusted { .. }) => Status::permission_denied(msg),
            E::Bundle(B::Io(_)) | E::Stream(_) => Status::aborted(msg),
            E::Bundle(_) => Status::invalid_argument(msg),
            E::TooLarge { .. } => Status::resource_exhausted(msg),
            E::NoKeys { .. }
            | E::Missing { .. }
            | E::Disk(_)
            | E::StateFs(_)
            | E::Io { .. }
            | E::Sys { .. }
            | E::NoPartition { .. } => {
                tracing::error!(error = %msg, "install failed on the node");
                Status::internal(msg)
            }
        }
    }
}

impl From<crate::upgrade::UpgradeError> for Status {
    fn from(e: crate::upgrade::UpgradeError) -> Status {
        use crate::upgrade::UpgradeError as E;
        use orc_image::bundle::BundleError as B;
        let msg = e.to_string();
        match e {
            E::NotFromDisk
            | E::InProgress { .. }
            | E::NothingToRollBackTo
            | E::WrittenNotBooted { .. }
            | E::FailedBefore { .. }
            | E::FailedElsewhere { .. }
            | E::Image(_) => Status::failed_precondition(msg),
            E::Bundle(B::NotNewer { .. }) => Status::failed_precondition(msg),
            E::Bundle(B::Untrusted { .. }) => Status::permission_denied(msg),
            E::Bundle(B::Io(_)) | E::Stream(_) => Status::aborted(msg),
            E::Bundle(_) => Status::invalid_argument(msg),
            E::TooLarge { .. } => Status::resource_exhausted(msg),
            E::Agent(a) => a.into(),
            E::NoPartition(_)
            | E::Esp(_)
            | E::Io { .. }
            | E::Mount { .. }
            | E::NoKeys { .. }
            | E::Record { .. }
            | E::NoEntry(_) => {
                tracing::error!(error = %msg, "upgrade failed on the node");
                Status::internal(msg)
            }
        }
    }
}

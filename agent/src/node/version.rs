//! `Version`: build and identity of the node.

use orc_proto::machine::VersionResponse;

use crate::pki;
use crate::pki::tls;
use crate::state::NodeState;

pub fn do_version(state: &NodeState) -> VersionResponse {
    let uts = nix::sys::utsname::uname().ok();
    let field = |f: fn(&nix::sys::utsname::UtsName) -> &std::ffi::OsStr| {
        uts.as_ref().map(|u| f(u).to_string_lossy().into_owned()).unwrap_or_default()
    };
    let mut v = VersionResponse {
        version: env!("CARGO_PKG_VERSION").to_string(),
        git_revision: option_env!("ORC_GIT_REVISION").unwrap_or("unknown").to_string(),
        kernel: field(|u| u.release()),
        arch: field(|u| u.machine()),
        hostname: field(|u| u.nodename()),
        maintenance: true,
        ..Default::default()
    };
    if let Some(id) = state.identity() {
        v.maintenance = false;
        v.node_id = id.meta.node_id;
        v.cluster_id = id.meta.cluster_id;
        v.role = id.meta.role.to_string();
        v.ca_fingerprint = tls::certs(&id.ca_cert_pem, "cluster CA")
            .ok()
            .and_then(|c| c.first().map(|c| pki::fingerprint(c)))
            .unwrap_or_default();
    }
    v
}

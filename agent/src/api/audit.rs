//! What the authorization layer writes to the node's audit log
//! ([`crate::node::audit`]): which calls are recorded, what they acted on
//! (handlers say with [`target`]), and how they ended.

use std::cell::RefCell;

use crate::pki::role::PeerIdentity;

/// Methods that change nothing: never recorded. Everything else called
/// by a person or an unknown caller is, refused or not.
const READS: &[&str] = &[
    "Version",
    "Health",
    "Status",
    "List",
    "Inspect",
    "Tasks",
    "Logs",
    "Dmesg",
    "Services",
    "Wait",
    "Watch",
    "Events",
    "ListCerts",
    "Audit",
];

tokio::task_local! {
    static TARGET: RefCell<String>;
}

/// Says what the call being served acts on (a service's name, a node's
/// id), for its audit record. A no-op outside a recorded call.
pub fn target(what: &str) {
    let _ = TARGET.try_with(|t| what.clone_into(&mut t.borrow_mut()));
}

/// Whether a call of `path` by `caller` is recorded: people's (and
/// unknown callers') calls that are not reads. Nodes' own traffic (Raft,
/// sessions, renewals) is not.
pub fn recorded(path: &str, caller: Option<&PeerIdentity>) -> bool {
    let method = path.rsplit('/').next().unwrap_or_default();
    caller.is_none_or(|c| c.role.is_person()) && !READS.contains(&method)
}

/// `Service/Method` of a gRPC path (`/orc.cluster.v1.Services/Create`).
pub fn method_name(path: &str) -> String {
    let mut parts = path.trim_start_matches('/').splitn(2, '/');
    let service = parts.next().unwrap_or_default().rsplit('.').next().unwrap_or_default();
    format!("{service}/{}", parts.next().unwrap_or_default())
}

/// Runs `fut` (a call being served) and returns its output with the
/// target its handler named.
pub async fn with_target<F: std::future::Future>(fut: F) -> (F::Output, String) {
    TARGET
        .scope(RefCell::new(String::new()), async move {
            let out = fut.await;
            (out, TARGET.with(|t| t.borrow().clone()))
        })
        .await
}

/// The status a response carries in its headers (a call that failed
/// before any message); none: it went through (for a stream: it started).
pub fn status_of(headers: &http::HeaderMap) -> (i32, String) {
    let code = headers.get("grpc-status").and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok()).unwrap_or(0);
    let message = headers.get("grpc-message").and_then(|v| v.to_str().ok()).map(percent_decode).unwrap_or_default();
    (code, message)
}

/// gRPC's percent-encoding of `grpc-message`, undone.
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match (b[i], b.get(i + 1).copied().and_then(hex), b.get(i + 2).copied().and_then(hex)) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::role::Role;

    fn who(role: Role) -> PeerIdentity {
        PeerIdentity { name: "x".into(), cluster_id: "c".into(), role, ..Default::default() }
    }

    #[test]
    fn writes_by_people_and_strangers_are_recorded_reads_and_nodes_are_not() {
        let create = "/orc.cluster.v1.Services/Create";
        assert!(recorded(create, Some(&who(Role::Reader))));
        assert!(recorded(create, None));
        assert!(recorded("/orc.machine.v1.Machine/Reboot", Some(&who(Role::Admin))));
        assert!(!recorded("/orc.cluster.v1.Services/List", Some(&who(Role::Admin))));
        assert!(!recorded("/orc.machine.v1.Machine/Audit", Some(&who(Role::Admin))));
        assert!(!recorded("/orc.raft.v1.Raft/Propose", Some(&who(Role::Manager))));
        assert!(!recorded("/orc.cluster.v1.Cluster/Renew", Some(&who(Role::Worker))));
        assert_eq!(method_name(create), "Services/Create");
        assert_eq!(method_name("/orc.machine.v1.Machine/Reboot"), "Machine/Reboot");
    }

    #[test]
    fn statuses_in_headers_are_read() {
        let mut h = http::HeaderMap::new();
        assert_eq!(status_of(&h), (0, String::new()));
        h.insert("grpc-status", "7".parse().unwrap());
        h.insert("grpc-message", "reader%20%22x%22 may not%25".parse().unwrap());
        assert_eq!(status_of(&h), (7, "reader \"x\" may not%".into()));
    }

    #[tokio::test]
    async fn the_handler_names_its_target() {
        let ((), t) = with_target(async { target("web") }).await;
        assert_eq!(t, "web");
        target("outside: ignored");
    }
}

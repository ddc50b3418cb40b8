//! Published ports across the cluster. A port on the routing mesh
//! (ingress or local mode) answers on every node, so one service holds it
//! in the whole cluster: the claim (`published/<protocol>/<port>`) is a
//! conditional put in the same entry as the service, so two services
//! created at once cannot both hold it. A host-mode port is held per node
//! (the scheduler puts one task per node on it), so several services may
//! publish it, but never one the mesh holds.

use super::error::ClusterError;
use super::objects::{Protocol, Service, View};
use crate::model::db::{Command, Kind, Object};

/// Where the claim of `port`/`protocol` is kept.
pub fn id(protocol: Protocol, port: u16) -> String {
    format!("{protocol}/{port}")
}

fn mesh_ids(s: &Service) -> impl Iterator<Item = String> + '_ {
    s.spec.ports.iter().filter(|p| p.mode.mesh()).map(|p| id(p.protocol, p.published))
}

/// Refuses `s` when a port it publishes is held by another service: on
/// the mesh by anyone, or (for its mesh ports) as a host port by anyone.
pub fn check(v: &View, s: &Service) -> Result<(), ClusterError> {
    let name = |id: &str| v.services.get(id).map_or_else(|| id.to_string(), |o| o.spec.name.clone());
    for p in &s.spec.ports {
        let port = format!("{}/{}", p.published, p.protocol);
        if let Some(other) = v.published.get(&id(p.protocol, p.published)).filter(|h| **h != s.id) {
            let other = name(other);
            return Err(ClusterError::AlreadyExists(format!(
                "port {port} is published by service {other} on the routing mesh (every node answers on it): \
                 publish another port, or change or remove {other} first"
            )));
        }
        let host = v.index.host_port(p.protocol, p.published).iter().find(|o| **o != s.id);
        if let Some(other) = host.filter(|_| p.mode.mesh()) {
            return Err(ClusterError::AlreadyExists(format!(
                "port {port} is published by service {} in host mode: the routing mesh cannot take it on \
                 every node; publish another port, or use mode=host too",
                name(other)
            )));
        }
    }
    Ok(())
}

/// The claims of the mesh ports `new` publishes and `old` did not, and
/// the releases of those `old` did and `new` does not.
pub fn claims(old: Option<&Service>, new: &Service) -> Vec<Command> {
    let had: Vec<String> = old.map(|o| mesh_ids(o).collect()).unwrap_or_default();
    let has: Vec<String> = mesh_ids(new).collect();
    let mut cmds: Vec<Command> =
        had.iter().filter(|p| !has.contains(p)).map(|p| Command::delete(Kind::Published, p.clone())).collect();
    cmds.extend(
        has.iter()
            .filter(|p| !had.contains(p))
            .map(|p| Command::put_if(p.clone(), Object::Published(new.id.clone()), 0)),
    );
    cmds
}

/// The claims a removed service gives back.
pub fn releases(s: &Service) -> Vec<Command> {
    mesh_ids(s).map(|p| Command::delete(Kind::Published, p)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::objects::{Port, PublishMode, ServiceSpec};
    use std::sync::Arc;

    fn service(id: &str, ports: &[(u16, PublishMode)]) -> Service {
        let ports = ports
            .iter()
            .map(|(p, mode)| Port { published: *p, target: 80, protocol: Protocol::Tcp, mode: *mode })
            .collect();
        Service {
            id: id.into(),
            spec: ServiceSpec { name: id.into(), ports, ..Default::default() },
            ..Default::default()
        }
    }

    fn add(v: &mut View, s: &Service) {
        v.apply(&Command::Batch(claims(None, s)));
        v.apply(&Command::put(s.id.clone(), Object::Service(Arc::new(s.clone()))));
    }

    #[test]
    fn a_mesh_port_is_held_by_one_service_in_the_cluster() {
        let mut v = View::default();
        let a = service("a", &[(8080, PublishMode::Ingress), (9000, PublishMode::Host)]);
        check(&v, &a).unwrap();
        add(&mut v, &a);
        assert_eq!(v.published.get("tcp/8080").map(String::as_str), Some("a"));
        assert!(!v.published.contains_key("tcp/9000"), "host ports are held per node");
        // Its own ports are its own.
        check(&v, &a).unwrap();
        // Another service: not on the mesh port, in any mode.
        for mode in PublishMode::ALL {
            let e = check(&v, &service("b", &[(8080, mode)])).unwrap_err().to_string();
            assert!(e.contains("8080/tcp is published by service a on the routing mesh"), "{e}");
        }
        // A host port of a's may be shared as a host port, not put on the mesh.
        check(&v, &service("b", &[(9000, PublishMode::Host)])).unwrap();
        let e = check(&v, &service("b", &[(9000, PublishMode::Local)])).unwrap_err().to_string();
        assert!(e.contains("9000/tcp is published by service a in host mode"), "{e}");
        // UDP is another port.
        let mut u = service("u", &[(8080, PublishMode::Ingress)]);
        u.spec.ports[0].protocol = Protocol::Udp;
        check(&v, &u).unwrap();
        // Once a is gone, its host port may go on the mesh.
        v.apply(&Command::delete(Kind::Service, "a".to_string()));
        check(&v, &service("b", &[(9000, PublishMode::Local)])).unwrap();
    }

    #[test]
    fn an_update_claims_new_ports_and_gives_back_old_ones() {
        let mut v = View::default();
        let a = service("a", &[(8080, PublishMode::Ingress)]);
        add(&mut v, &a);
        let b = service("a", &[(8081, PublishMode::Local)]);
        v.apply(&Command::Batch(claims(Some(&a), &b)));
        assert_eq!(v.published.keys().cloned().collect::<Vec<_>>(), ["tcp/8081"]);
        v.apply(&Command::Batch(releases(&b)));
        assert!(v.published.is_empty());
    }
}

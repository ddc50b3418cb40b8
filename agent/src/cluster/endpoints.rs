//! Which tasks take a service's traffic: every node's load balancer and
//! DNS server are told, for each service on the overlay, its virtual IPs
//! and the tasks in rotation — wanted running, running, ready (readiness
//! probe passing, or none), with an address. A task the managers stop
//! leaves the rotation as they decide it, before its node stops it.

use super::objects::{Endpoint, NetworkMode, ServiceEndpoints, Task, TaskState, View};

/// Whether `t` takes traffic.
pub fn in_rotation(t: &Task) -> bool {
    t.desired == TaskState::Running && t.ready() && t.address().is_some()
}

/// Service `id`'s entry, or None when it is gone or not on the overlay.
pub fn of(v: &View, id: &str) -> Option<ServiceEndpoints> {
    let s = v.services.get(id)?;
    if s.spec.network != NetworkMode::Overlay {
        return None;
    }
    let mut endpoints: Vec<Endpoint> = v
        .index
        .tasks_of(id)
        .iter()
        .filter_map(|t| v.tasks.get(t))
        .filter(|t| in_rotation(t))
        .map(|t| Endpoint { task: t.id.clone(), slot: t.slot, addresses: t.addresses.clone() })
        .collect();
    endpoints.sort_by(|a, b| (a.slot, &a.task).cmp(&(b.slot, &b.task)));
    Some(ServiceEndpoints {
        id: s.id.clone(),
        name: s.spec.name.clone(),
        namespace: s.spec.namespace.clone(),
        vips: s.vips.clone(),
        stateful: s.spec.stateful,
        ports: s.spec.ports.clone(),
        ports_network: s.spec.networks().first().map(|n| n.to_string()).unwrap_or_default(),
        endpoints,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::db::{Command, Object};
    use crate::model::objects::{Health, Service, ServiceSpec};
    use std::sync::Arc;

    fn task(id: &str, slot: u64, state: TaskState, health: Health, address: Option<&str>) -> Command {
        let t = Task {
            id: id.into(),
            service_id: "s".into(),
            slot,
            desired: TaskState::Running,
            state,
            health,
            addresses: address.map(|a| ("default".to_string(), a.parse().unwrap())).into_iter().collect(),
            ..Default::default()
        };
        Command::put(id, Object::Task(Arc::new(t)))
    }

    #[test]
    fn only_ready_running_tasks_with_an_address_are_in_rotation() {
        let mut v = View::default();
        let mut s = Service {
            id: "s".into(),
            spec: ServiceSpec { name: "web".into(), ..Default::default() },
            ..Default::default()
        };
        s.vips.insert("default".into(), "10.255.0.1".parse().unwrap());
        v.apply(&Command::put("s", Object::Service(Arc::new(s.clone()))));
        v.apply(&task("t2", 2, TaskState::Running, Health::Ready, Some("10.0.1.3")));
        v.apply(&task("t1", 1, TaskState::Running, Health::Ready, Some("10.0.0.2")));
        v.apply(&task("t3", 3, TaskState::Running, Health::NotReady, Some("10.0.1.4")));
        v.apply(&task("t4", 4, TaskState::Starting, Health::Ready, Some("10.0.1.5")));
        v.apply(&task("t5", 5, TaskState::Running, Health::Ready, None));
        let e = of(&v, "s").unwrap();
        assert_eq!((e.name.as_str(), e.vips["default"].to_string()), ("web", "10.255.0.1".to_string()));
        let addrs: Vec<String> = e.endpoints.iter().map(|e| e.addresses["default"].to_string()).collect();
        assert_eq!(addrs, ["10.0.0.2", "10.0.1.3"], "by slot; not ready, not running and no address left out");
        // Being stopped: out of rotation at once.
        let mut t1 = Task::clone(&v.tasks["t1"]);
        t1.desired = TaskState::Shutdown;
        v.apply(&Command::put("t1", Object::Task(Arc::new(t1))));
        assert_eq!(of(&v, "s").unwrap().endpoints.len(), 1);
        // Host-mode services are not on the overlay.
        s.spec.network = NetworkMode::Host;
        v.apply(&Command::put("s", Object::Service(Arc::new(s))));
        assert_eq!(of(&v, "s"), None);
        assert_eq!(of(&v, "gone"), None);
    }
}

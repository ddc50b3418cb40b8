//! Services' virtual IPs: a service on the overlay is given one per
//! network it joins when it is created or joins the network, from that
//! network's VIP block (the pool's last block, or that of the network's
//! own subnet), the lowest free; the claim (`vip/<address>`) is a
//! conditional put in the same entry as the service, so two services
//! created at once cannot both hold one address. Kept while the service is
//! on the network; given back when it leaves it or is removed.

use super::error::ClusterError;
use super::objects::{vip_id, Service, View};
use crate::model::db::{Command, Kind, Object};
use crate::network::ipam;

/// Gives `s` a virtual IP on each network it joins that it has none on,
/// and drops those of networks it left.
pub fn give(v: &View, s: &mut Service) -> Result<(), ClusterError> {
    let Some(pool) = v.settings.network else { return Ok(()) };
    let nets: Vec<String> = s.spec.networks().iter().map(|n| n.to_string()).collect();
    s.vips.retain(|n, _| nets.contains(n));
    for n in nets {
        if s.vips.contains_key(&n) {
            continue;
        }
        let space = super::networks::space(v, &n, pool)
            .ok_or_else(|| ClusterError::FailedPrecondition(super::networks::missing(&n)))?;
        let taken = |a| v.vips.contains_key(&vip_id(a)) || s.vips.values().any(|x| *x == a);
        let ip = ipam::vip(space.vips(), taken, v.vips.len())
            .map_err(|e| ClusterError::FailedPrecondition(format!("service {}: {e}", s.spec.name)))?;
        s.vips.insert(n, ip);
    }
    Ok(())
}

/// The claims of the virtual IPs `new` holds and `old` did not, and the
/// releases of those `old` held and `new` does not.
pub fn claims(old: Option<&Service>, new: &Service) -> Vec<Command> {
    let held = |s: &Service, ip| s.vips.values().any(|x| *x == ip);
    let mut cmds: Vec<Command> = old
        .map(|o| {
            o.vips.values().filter(|ip| !held(new, **ip)).map(|ip| Command::delete(Kind::Vip, vip_id(*ip))).collect()
        })
        .unwrap_or_default();
    cmds.extend(
        new.vips
            .values()
            .filter(|ip| old.is_none_or(|o| !held(o, **ip)))
            .map(|ip| Command::put_if(vip_id(*ip), Object::Vip(new.id.clone()), 0)),
    );
    cmds
}

/// The claims a removed service gives back.
pub fn releases(s: &Service) -> Vec<Command> {
    s.vips.values().map(|ip| Command::delete(Kind::Vip, vip_id(*ip))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::objects::{Network, NetworkMode, Pool, ServiceSpec, Settings, DEFAULT_NETWORK};
    use std::sync::Arc;

    fn service(id: &str, network: NetworkMode) -> Service {
        Service {
            id: id.into(),
            spec: ServiceSpec { name: id.into(), network, ..Default::default() },
            ..Default::default()
        }
    }

    #[test]
    fn each_overlay_service_gets_the_lowest_free_vip_once() {
        let mut v = View::default();
        let mut a = service("a", NetworkMode::Overlay);
        give(&v, &mut a).unwrap();
        assert!(a.vips.is_empty(), "no pool: no VIP");
        let pool = Pool { cidr: "10.0.0.0/8".parse().unwrap(), prefix: 24 };
        v.apply(&Command::put("", Object::Settings(Settings { network: Some(pool), ..Default::default() })));
        give(&v, &mut a).unwrap();
        assert_eq!(a.vips[DEFAULT_NETWORK].to_string(), "10.255.0.1");
        for c in claims(None, &a) {
            assert_eq!(v.apply(&c).conflict, None);
        }
        v.apply(&Command::put("a", Object::Service(Arc::new(a.clone()))));
        let mut b = service("b", NetworkMode::Overlay);
        give(&v, &mut b).unwrap();
        assert_eq!(b.vips[DEFAULT_NETWORK].to_string(), "10.255.0.2");
        // A second claim of one address loses.
        let mut c = service("c", NetworkMode::Overlay);
        c.vips = a.vips.clone();
        assert!(v.apply(&claims(None, &c)[0]).conflict.is_some());
        // Kept: an update claims nothing again; host-mode services get none.
        let mut a2 = a.clone();
        give(&v, &mut a2).unwrap();
        assert!(claims(Some(&a), &a2).is_empty());
        let mut h = service("h", NetworkMode::Host);
        give(&v, &mut h).unwrap();
        assert!(h.vips.is_empty());
        // Removed: the address is free again.
        for c in releases(&a) {
            v.apply(&c);
        }
        let mut d = service("d", NetworkMode::Overlay);
        give(&v, &mut d).unwrap();
        assert_eq!(d.vips[DEFAULT_NETWORK].to_string(), "10.255.0.1");
    }

    #[test]
    fn a_vip_per_network_from_its_block_dropped_when_the_service_leaves_it() {
        let mut v = View::default();
        let pool = Pool { cidr: "10.0.0.0/8".parse().unwrap(), prefix: 24 };
        v.apply(&Command::put("", Object::Settings(Settings { network: Some(pool), ..Default::default() })));
        let own = Pool { cidr: "172.30.0.0/16".parse().unwrap(), prefix: 24 };
        let back = Network { name: "back".into(), vni: 257, subnet: Some(own), ..Default::default() };
        let shared = Network { name: "shared".into(), vni: 258, ..Default::default() };
        v.apply(&Command::put("back", Object::Network(Arc::new(back))));
        v.apply(&Command::put("shared", Object::Network(Arc::new(shared))));
        let mut a = service("a", NetworkMode::Overlay);
        a.spec.networks = vec!["default".into(), "back".into(), "shared".into()];
        give(&v, &mut a).unwrap();
        assert_eq!(a.vips["back"].to_string(), "172.30.255.1", "from the network's own block");
        assert_eq!(a.vips[DEFAULT_NETWORK].to_string(), "10.255.0.1");
        assert_eq!(a.vips["shared"].to_string(), "10.255.0.2", "the pool's block, never the same address twice");
        // Leaving a network gives its VIP back; joining one claims one.
        let mut a2 = a.clone();
        a2.spec.networks = vec!["back".into()];
        give(&v, &mut a2).unwrap();
        let cmds = claims(Some(&a), &a2);
        assert_eq!(cmds.len(), 2, "two releases, no claim: {cmds:?}");
        // A network that does not exist is refused by name.
        let mut b = service("b", NetworkMode::Overlay);
        b.spec.networks = vec!["nope".into()];
        let e = give(&v, &mut b).unwrap_err().to_string();
        assert!(e.contains("nope") && e.contains("orcctl network create"), "{e}");
    }
}

//! Services' virtual IPs: a service on the overlay is given one per
//! network when it is created (or moved onto the overlay), from the
//! pool's VIP block, the lowest free; the claim (`vip/<network>/<ip>`) is
//! a conditional put in the same entry as the service, so two services
//! created at once cannot both hold one address. Kept until the service
//! is removed.

use super::error::ClusterError;
use super::objects::{vip_id, NetworkMode, Service, View, DEFAULT_NETWORK};
use crate::model::db::{Command, Kind, Object};
use crate::network::ipam;

/// Gives `s` its virtual IP on the default network if it runs on the
/// overlay and has none.
pub fn give(v: &View, s: &mut Service) -> Result<(), ClusterError> {
    let Some(pool) = v.settings.network else { return Ok(()) };
    if s.spec.network != NetworkMode::Overlay || s.vips.contains_key(DEFAULT_NETWORK) {
        return Ok(());
    }
    let taken = |a| v.vips.contains_key(&vip_id(DEFAULT_NETWORK, a));
    let ip = ipam::vip(pool.vips(), taken, v.vips.len())
        .map_err(|e| ClusterError::FailedPrecondition(format!("service {}: {e}", s.spec.name)))?;
    s.vips.insert(DEFAULT_NETWORK.to_string(), ip);
    Ok(())
}

/// The claims of the virtual IPs `new` holds and `old` did not.
pub fn claims(old: Option<&Service>, new: &Service) -> Vec<Command> {
    new.vips
        .iter()
        .filter(|(n, ip)| old.and_then(|o| o.vips.get(*n)) != Some(*ip))
        .map(|(n, ip)| Command::put_if(vip_id(n, *ip), Object::Vip(new.id.clone()), 0))
        .collect()
}

/// The claims a removed service gives back.
pub fn releases(s: &Service) -> Vec<Command> {
    s.vips.iter().map(|(n, ip)| Command::delete(Kind::Vip, vip_id(n, *ip))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::objects::{Pool, ServiceSpec, Settings};
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
}

//! The files a task in its own namespace gets at `/etc/resolv.conf` and
//! `/etc/hosts` (its hostname is set in its UTS namespace).

use std::net::Ipv4Addr;

/// `/etc/resolv.conf` for a task, from the node's own: its nameservers
/// except loopback ones (unreachable from the task's namespace), its
/// search and options lines. With none left, the task gets none (as
/// Docker then falls back to public resolvers, we do not guess).
pub fn resolv_conf(node: &str) -> String {
    let mut out = String::new();
    for line in node.lines() {
        let l = line.trim();
        let mut words = l.split_whitespace();
        match words.next() {
            Some("nameserver") => {
                let loopback =
                    words.next().and_then(|a| a.parse::<std::net::IpAddr>().ok()).is_none_or(|a| a.is_loopback());
                if !loopback {
                    out.push_str(l);
                    out.push('\n');
                }
            }
            Some("search" | "options" | "domain") => {
                out.push_str(l);
                out.push('\n');
            }
            _ => {}
        }
    }
    out
}

/// `/etc/hosts` for a task named `hostname` at `address`.
pub fn hosts(hostname: &str, address: Ipv4Addr) -> String {
    format!(
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\n\
         ff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n{address}\t{hostname}\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_resolvers_are_left_out_and_the_rest_kept() {
        let node = "# made by init\nnameserver 127.0.0.53\nnameserver 10.0.2.3\nsearch lan\noptions edns0\nbogus\n";
        assert_eq!(resolv_conf(node), "nameserver 10.0.2.3\nsearch lan\noptions edns0\n");
        assert_eq!(resolv_conf("nameserver ::1\n"), "");
        let h = hosts("web.1", "10.0.3.2".parse().unwrap());
        assert!(h.starts_with("127.0.0.1\tlocalhost\n"));
        assert!(h.ends_with("10.0.3.2\tweb.1\n"));
    }
}

//! The files a task in its own namespace gets at `/etc/resolv.conf` and
//! `/etc/hosts` (its hostname is set in its UTS namespace).

use std::net::Ipv4Addr;

/// `/etc/resolv.conf` for a task: the node's DNS server `dns` (which
/// answers cluster names and asks the node's own resolvers the rest), and
/// the search and options lines of the node's `node` resolv.conf.
pub fn resolv_conf(node: &str, dns: Ipv4Addr, namespace: &str) -> String {
    let mut out = format!("nameserver {dns}\n");
    // A task outside `default` tries its own namespace first (`web` is
    // `web.team-a` when team-a has one), as Kubernetes' search path does.
    let mut search: Vec<&str> = if namespace.is_empty() { Vec::new() } else { vec![namespace] };
    for line in node.lines() {
        let mut words = line.split_whitespace();
        match words.next() {
            // The last search or domain line counts, as resolv.conf(5) says.
            Some("search" | "domain") => {
                search.truncate(usize::from(!namespace.is_empty()));
                search.extend(words);
            }
            Some("options") => {
                out.push_str(line.trim());
                out.push('\n');
            }
            _ => {}
        }
    }
    if !search.is_empty() {
        out.push_str(&format!("search {}\n", search.join(" ")));
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
    fn tasks_ask_the_nodes_dns_server_with_the_nodes_search_list() {
        let node = "# made by init\nnameserver 127.0.0.53\nnameserver 10.0.2.3\nsearch lan\noptions edns0\nbogus\n";
        let dns = "10.0.3.1".parse().unwrap();
        assert_eq!(resolv_conf(node, dns, ""), "nameserver 10.0.3.1\noptions edns0\nsearch lan\n");
        assert_eq!(resolv_conf(node, dns, "team-a"), "nameserver 10.0.3.1\noptions edns0\nsearch team-a lan\n");
        assert_eq!(resolv_conf("nameserver 1.1.1.1\n", dns, "team-a"), "nameserver 10.0.3.1\nsearch team-a\n");
        let two = "search a b\ndomain c\n";
        assert_eq!(resolv_conf(two, dns, ""), "nameserver 10.0.3.1\nsearch c\n", "the last line counts");
        let h = hosts("web.1", "10.0.3.2".parse().unwrap());
        assert!(h.starts_with("127.0.0.1\tlocalhost\n"));
        assert!(h.ends_with("10.0.3.2\tweb.1\n"));
    }
}

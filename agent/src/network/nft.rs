//! The node's nftables rules, generated as `nft -f` text and loaded as one
//! transaction (the table is replaced whole: what is loaded is what the
//! state says, nothing left from before).
//!
//! Why the `nft` binary and not netlink: the ruleset is text a person can
//! read in `docs/networking.md`, diff in tests (golden text) and load by
//! hand to debug; nft compiles it to the kernel's bytecode and loads it in
//! one atomic batch. The netlink crates for nf_tables need libmnl/libnftnl
//! (shared objects only in Debian) or are GPL. See docs/networking.md.

use std::fmt::Write as _;

use ipnet::Ipv4Net;

use super::NetError;

/// Where the node image carries nft.
pub const NFT: &str = "/usr/sbin/nft";

/// orc's table (family `ip`): nothing else of the node's is touched.
pub const TABLE: &str = "orc";

/// What the rules are made from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rules {
    /// The cluster's container CIDR: traffic from it to anywhere else is
    /// masqueraded.
    pub cidr: Ipv4Net,
}

/// The ruleset text for `r`: replaces the table in one transaction.
pub fn ruleset(r: &Rules) -> String {
    let mut s = String::new();
    // Create-then-delete: the delete cannot fail on a missing table, and
    // the new one is loaded in the same transaction.
    let _ = writeln!(s, "table ip {TABLE}");
    let _ = writeln!(s, "delete table ip {TABLE}");
    let _ = writeln!(s, "table ip {TABLE} {{");
    let _ = writeln!(s, "  chain postrouting {{");
    let _ = writeln!(s, "    type nat hook postrouting priority srcnat; policy accept;");
    let _ = writeln!(s, "    ip saddr {} ip daddr != {} masquerade", r.cidr, r.cidr);
    let _ = writeln!(s, "  }}");
    let _ = writeln!(s, "  chain forward {{");
    let _ = writeln!(s, "    type filter hook forward priority filter; policy accept;");
    // Segments sized for the path's MTU (the overlay's is below the underlay's).
    let _ = writeln!(s, "    tcp flags syn / syn,rst tcp option maxseg size set rt mtu");
    let _ = writeln!(s, "  }}");
    let _ = writeln!(s, "}}");
    s
}

/// Loads `text` with `nft -f -`.
pub async fn load(text: &str) -> Result<(), NetError> {
    use tokio::io::AsyncWriteExt;
    // Where the image has it; elsewhere (tests on a host) from PATH.
    let bin = if std::path::Path::new(NFT).exists() { NFT } else { "nft" };
    let mut child = tokio::process::Command::new(bin)
        .args(["-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| NetError::Nft(format!("running nft: {e} (is nftables installed?)")))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(text.as_bytes()).await.map_err(|e| NetError::Nft(format!("writing to nft: {e}")))?;
    }
    let out = child.wait_with_output().await.map_err(|e| NetError::Nft(format!("waiting for nft: {e}")))?;
    if !out.status.success() {
        return Err(NetError::Nft(String::from_utf8_lossy(&out.stderr).trim().to_string()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ruleset_is_the_golden_text() {
        let r = Rules { cidr: "10.0.0.0/8".parse().unwrap() };
        let want = "\
table ip orc
delete table ip orc
table ip orc {
  chain postrouting {
    type nat hook postrouting priority srcnat; policy accept;
    ip saddr 10.0.0.0/8 ip daddr != 10.0.0.0/8 masquerade
  }
  chain forward {
    type filter hook forward priority filter; policy accept;
    tcp flags syn / syn,rst tcp option maxseg size set rt mtu
  }
}
";
        assert_eq!(ruleset(&r), want);
    }
}

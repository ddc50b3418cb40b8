//! Access between real agents (three managers on loopback, one cluster).
//! Autolock: with it on, no manager's STATE holds the CA key in the clear;
//! a restarted manager is locked (health and unlock only) while the others
//! serve; a wrong key is refused saying so, the right one brings the
//! manager back into the quorum; a rotated key replaces the old one on
//! every manager; off, the key is plain again and a restart needs nobody.
//! The audit log: who changed what, refused or not, from every manager;
//! reads are not in it; only admins read it; `-f` follows.

// The test harness: a failed unwrap is a failed test, with its line.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::time::Duration;

use orc_e2e::agent::Options;
use orc_e2e::cluster::LocalCluster;

const SETTLE: Duration = Duration::from_secs(30);

fn pki(c: &LocalCluster, i: usize) -> PathBuf {
    c.agents[i].state_dir().join("pki")
}

/// The sealed CA key of manager `i`, once it holds only that.
fn sealed(c: &LocalCluster, i: usize) -> Option<Vec<u8>> {
    let p = pki(c, i);
    if p.join("ca.key").exists() {
        return None;
    }
    std::fs::read(p.join("ca.key.sealed")).ok()
}

fn key_file(dir: &Path, name: &str, key: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, format!("{key}\n")).unwrap();
    p.display().to_string()
}

#[test]
fn autolock_and_audit() {
    let mut c = LocalCluster::start(3, 0, Options::default()).unwrap();
    autolock(&mut c);
    audit(&c);
}

/// The audit records of every manager, as `orcctl audit -o json` prints them.
fn records(c: &LocalCluster) -> Vec<serde_json::Value> {
    let o = c.ctl(&["-o", "json", "audit"]);
    assert!(o.ok, "{}", o.stderr);
    o.stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn has(rs: &[serde_json::Value], who: &str, method: &str, target: &str, result: &str) -> bool {
    rs.iter().any(|r| {
        r["who"] == who
            && r["method"] == method
            && r["target"] == target
            && r["result"].as_str().is_some_and(|x| x.starts_with(result))
    })
}

fn audit(c: &LocalCluster) {
    let dir = tempfile::tempdir().unwrap();
    // What the autolock part did, from the managers that took it.
    let rs = records(c);
    assert!(has(&rs, "admin", "Cluster/Update", "", "ok"), "{rs:#?}");
    assert!(has(&rs, "admin", "Cluster/Unlock", "", "InvalidArgument: not an unlock key"), "{rs:#?}");
    assert!(has(&rs, "admin", "Cluster/Unlock", "", "InvalidArgument: the unlock key does not open"), "{rs:#?}");
    assert!(has(&rs, "admin", "Cluster/Unlock", "", "ok"), "{rs:#?}");
    assert!(has(&rs, "admin", "Cluster/UnlockKey", "", "ok"), "{rs:#?}");
    assert!(!rs.iter().any(|r| r["method"] == "Services/List" || r["method"] == "Machine/Health"), "reads: {rs:#?}");
    let text = serde_json::to_string(&rs).unwrap();
    let keys = text.match_indices("ORC-KEY-").filter(|(i, m)| {
        let rest = &text[i + m.len()..];
        rest.len() >= 64 && rest[..64].bytes().all(|b| b.is_ascii_hexdigit())
    });
    assert_eq!(keys.count(), 0, "no unlock key in the audit log");

    // A reader's write: refused, and recorded as such.
    let bob = dir.path().join("bob.toml");
    let o = c.ctl(&["user", "cert", "create", "bob", "--role", "reader", "--out", bob.to_str().unwrap()]);
    assert!(o.ok, "{}", o.stderr);
    let as_bob = |args: &[&str]| {
        std::process::Command::new(orc_e2e::paths::debug_bin("orcctl"))
            .arg("--orcconfig")
            .arg(&bob)
            .args(args)
            .output()
            .unwrap()
    };
    let refused = as_bob(&["network", "create", "bobs"]);
    assert!(!refused.status.success());
    let read = as_bob(&["audit"]);
    let stderr = String::from_utf8_lossy(&read.stderr);
    assert!(!read.status.success() && stderr.contains("admin"), "a reader reads no audit log: {stderr}");

    // Followed: a write shows up while `audit -f` runs.
    let mut follower = std::process::Command::new(orc_e2e::paths::debug_bin("orcctl"))
        .arg("--orcconfig")
        .arg(&c.config)
        .args(["-o", "json", "audit", "-f", "--since", "1s"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = follower.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    std::thread::sleep(Duration::from_millis(500));
    assert!(c.ctl(&["network", "create", "audited"]).ok);
    let seen = (0..40).find_map(|_| {
        let line = rx.recv_timeout(Duration::from_millis(250)).ok()?;
        line.contains("\"audited\"").then_some(line)
    });
    let _ = follower.kill();
    let _ = follower.wait();
    let seen: serde_json::Value = serde_json::from_str(&seen.expect("audit -f shows the write")).unwrap();
    assert_eq!((seen["who"].as_str(), seen["method"].as_str()), (Some("admin"), Some("Networks/Create")));

    let rs = records(c);
    // Refused before its handler ran: no target, the reason in full.
    assert!(has(&rs, "bob", "Networks/Create", "", "PermissionDenied: reader \"bob\""), "{rs:#?}");
    assert!(has(&rs, "admin", "Networks/Create", "audited", "ok"), "{rs:#?}");
    assert!(rs.iter().all(|r| r["time"].as_str().is_some_and(|t| t.starts_with("20"))), "{rs:#?}");
    let times: Vec<i64> = rs.iter().map(|r| r["time_ms"].as_i64().unwrap()).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "merged by time: {times:?}");
}

fn autolock(c: &mut LocalCluster) {
    let dir = tempfile::tempdir().unwrap();
    let ctl_ok = |c: &LocalCluster, args: &[&str]| {
        let o = c.ctl(args);
        assert!(o.ok, "{args:?}: {}", o.stderr);
        o.stdout
    };
    let off = c.ctl(&["cluster", "unlock-key"]);
    assert!(!off.ok && off.stderr.contains("autolock is off"), "{}", off.stderr);
    // What must not be on any disk: the CA key's body.
    let ca_key = std::fs::read_to_string(pki(c, 0).join("ca.key")).unwrap();
    let body = ca_key.lines().nth(1).unwrap().to_string();

    let out = ctl_ok(c, &["cluster", "update", "--autolock"]);
    let key = out.split_whitespace().find(|w| w.starts_with("ORC-KEY-")).unwrap_or_else(|| panic!("{out}")).to_string();
    assert_eq!(ctl_ok(c, &["cluster", "unlock-key", "-q"]).trim(), key);
    let again = ctl_ok(c, &["cluster", "update", "--autolock"]);
    assert!(again.contains("the unlock key stays") && !again.contains("ORC-KEY-"), "{again}");
    c.wait(SETTLE, "every manager's CA key sealed", |c| (0..3).all(|i| sealed(c, i).is_some())).unwrap();
    for a in &c.agents {
        let found = orc_e2e::files_holding(a.dir.path(), body.as_bytes());
        assert!(found.is_empty(), "the CA key in the clear in {found:?}");
    }

    // Restarted: locked, while the other two serve.
    let third = c.agents[2].addr.clone();
    c.agents[2].restart().unwrap();
    let health = c.ctl(&["--nodes", &third, "health"]);
    assert!(!health.ok && health.stdout.contains("locked"), "{}", health.stdout);
    let refused = c.ctl(&["--nodes", &third, "service", "ls"]);
    assert!(!refused.ok && refused.stderr.contains("locked"), "{}", refused.stderr);
    assert!(refused.stderr.contains("orcctl cluster unlock"), "{}", refused.stderr);
    ctl_ok(c, &["--nodes", &c.agents[0].addr, "service", "ls"]);
    let wrong = key_file(dir.path(), "wrong", &format!("ORC-KEY-{}", "AB".repeat(32)));
    let o = c.ctl(&["--nodes", &third, "cluster", "unlock", "--key-file", &wrong]);
    assert!(!o.ok && o.stderr.contains("does not open"), "{}", o.stderr);
    let garbled = key_file(dir.path(), "garbled", "SWMKEY-1-abc");
    let o = c.ctl(&["--nodes", &third, "cluster", "unlock", "--key-file", &garbled]);
    assert!(!o.ok && o.stderr.contains("not an unlock key"), "{}", o.stderr);
    let right = key_file(dir.path(), "right", &key);
    assert!(ctl_ok(c, &["--nodes", &third, "cluster", "unlock", "--key-file", &right]).contains("unlocked"));
    c.wait(SETTLE, "the unlocked manager serving again", |c| c.ctl(&["--nodes", &third, "service", "ls"]).ok).unwrap();
    let o = c.ctl(&["--nodes", &third, "cluster", "unlock", "--key-file", &right]);
    assert!(!o.ok && o.stderr.contains("not locked"), "{}", o.stderr);
    c.wait(SETTLE, "three voters", |c| {
        let nodes = c.json(&["node", "ls"]);
        nodes.as_array().is_some_and(|n| {
            n.iter().filter(|n| n["manager_status"] == "leader" || n["manager_status"] == "reachable").count() == 3
        })
    })
    .unwrap();

    // Rotated: every manager re-seals under the new key; the old one opens nothing.
    let before: Vec<_> = (0..3).map(|i| sealed(c, i)).collect();
    let new_key = ctl_ok(c, &["cluster", "unlock-key", "--rotate", "-q"]).trim().to_string();
    assert!(new_key.starts_with("ORC-KEY-") && new_key != key, "{new_key}");
    c.wait(SETTLE, "every manager re-sealed", |c| (0..3).all(|i| sealed(c, i).is_some() && sealed(c, i) != before[i]))
        .unwrap();
    c.agents[2].restart().unwrap();
    let o = c.ctl(&["--nodes", &third, "cluster", "unlock", "--key-file", &right]);
    assert!(!o.ok && o.stderr.contains("does not open"), "the old key: {}", o.stderr);
    let rotated = key_file(dir.path(), "rotated", &new_key);
    ctl_ok(c, &["--nodes", &third, "cluster", "unlock", "--key-file", &rotated]);
    c.wait(SETTLE, "serving after the rotated key", |c| c.ctl(&["--nodes", &third, "service", "ls"]).ok).unwrap();

    // Off: plain again, and a restart comes back by itself.
    let out = ctl_ok(c, &["cluster", "update", "--autolock=false"]);
    assert!(out.contains("autolock off"), "{out}");
    c.wait(SETTLE, "every manager's CA key plain", |c| (0..3).all(|i| pki(c, i).join("ca.key").exists())).unwrap();
    c.agents[2].restart().unwrap();
    c.wait(SETTLE, "serving after a restart without autolock", |c| c.ctl(&["--nodes", &third, "service", "ls"]).ok)
        .unwrap();
}

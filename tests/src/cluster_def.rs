//! Local cluster definitions (`qemu/*.toml`): the nodes, in boot order,
//! with their role, memory, STATE disk size and extra kernel arguments.
//! `cargo xtask qemu` and the VM tests read them; `--nodes N` makes one.

use std::collections::BTreeSet;
use std::path::Path;

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

use crate::qemu::{NodeSpec, STATE_DISK_BYTES};

const DEFAULT_MEMORY_MB: u32 = 1024;
/// The L2 address of node `i` is 10.42.0.(10 + i).
const MAX_NODES: usize = 240;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeRole {
    Manager,
    Worker,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeDefaults {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_mb: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state_disk_mb: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cmdline: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeDef {
    /// Also the node's hostname and the name of its directory.
    pub name: String,
    pub role: NodeRole,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_mb: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state_disk_mb: Option<u64>,
    /// Extra kernel arguments, after the defaults' ones.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cmdline: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterDef {
    #[serde(default)]
    pub defaults: NodeDefaults,
    #[serde(rename = "node", default)]
    pub nodes: Vec<NodeDef>,
}

impl ClusterDef {
    /// Reads and checks the definition at `path`.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| {
            format!("reading the cluster definition {} (see qemu/local.toml for the format)", path.display())
        })?;
        Self::parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        let def: Self = toml::from_str(text).map_err(|e| e.to_string())?;
        def.check()?;
        Ok(def)
    }

    /// `node1..nodeN`: three managers from three nodes on, else one; the rest workers.
    pub fn with_nodes(n: u8) -> Self {
        let managers = if n >= 3 { 3 } else { 1 };
        let nodes = (1..=n)
            .map(|i| NodeDef {
                name: format!("node{i}"),
                role: if (i as usize) <= managers { NodeRole::Manager } else { NodeRole::Worker },
                memory_mb: None,
                state_disk_mb: None,
                cmdline: None,
            })
            .collect();
        Self { defaults: NodeDefaults::default(), nodes }
    }

    fn check(&self) -> Result<(), String> {
        let first = self.nodes.first().ok_or("no [[node]]: a cluster needs at least one")?;
        if first.role != NodeRole::Manager {
            return Err(format!("the first node ({}) is bootstrapped, so it must be a manager", first.name));
        }
        if self.nodes.len() > MAX_NODES {
            return Err(format!("{} nodes: at most {MAX_NODES} fit the L2 network 10.42.0.0/24", self.nodes.len()));
        }
        let mut names = BTreeSet::new();
        for n in &self.nodes {
            let ok = !n.name.is_empty()
                && n.name.len() <= 63
                && n.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !n.name.starts_with('-');
            if !ok {
                return Err(format!("node name {:?}: use 1-63 letters, digits or '-' (it is the hostname)", n.name));
            }
            if !names.insert(n.name.as_str()) {
                return Err(format!("node name {:?} appears twice", n.name));
            }
            if self.memory_mb(n) < 256 {
                return Err(format!("node {}: memory_mb {} is below 256", n.name, self.memory_mb(n)));
            }
        }
        Ok(())
    }

    pub fn memory_mb(&self, n: &NodeDef) -> u32 {
        n.memory_mb.or(self.defaults.memory_mb).unwrap_or(DEFAULT_MEMORY_MB)
    }

    pub fn state_disk_bytes(&self, n: &NodeDef) -> u64 {
        n.state_disk_mb.or(self.defaults.state_disk_mb).map(|mb| mb << 20).unwrap_or(STATE_DISK_BYTES)
    }

    /// The node's extra kernel arguments (defaults first).
    pub fn cmdline(&self, n: &NodeDef) -> String {
        [self.defaults.cmdline.as_deref(), n.cmdline.as_deref()].into_iter().flatten().collect::<Vec<_>>().join(" ")
    }

    pub fn roles(&self) -> Vec<NodeRole> {
        self.nodes.iter().map(|n| n.role).collect()
    }

    /// The QEMU spec of node `i` (0-based): its directory under `dir`, on
    /// the L2 hub `hub` as index i+1, its API forwarded to `api_port`.
    pub fn spec(&self, i: usize, dir: &Path, image: &Path, hub: &Path, api_port: u16) -> NodeSpec {
        let n = &self.nodes[i];
        NodeSpec {
            name: n.name.clone(),
            dir: dir.join(&n.name),
            image: image.to_path_buf(),
            api_port,
            l2: Some((hub.to_path_buf(), (i + 1) as u8)),
            memory_mb: self.memory_mb(n),
            state_disk_bytes: self.state_disk_bytes(n),
            extra_cmdline: self.cmdline(n),
            ..Default::default()
        }
    }
}

/// The definition file `name` under the workspace's `qemu/`.
pub fn workspace_def(name: &str) -> std::path::PathBuf {
    crate::paths::workspace().join("qemu").join(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_definitions_parse() {
        for (file, nodes, managers) in [("local.toml", 3, 3), ("e2e.toml", 5, 3)] {
            let d = ClusterDef::load(&workspace_def(file)).unwrap();
            assert_eq!(d.nodes.len(), nodes, "{file}");
            assert_eq!(d.roles().iter().filter(|r| **r == NodeRole::Manager).count(), managers, "{file}");
        }
        let local = ClusterDef::load(&workspace_def("local.toml")).unwrap();
        assert_eq!(local, ClusterDef { defaults: local.defaults.clone(), ..ClusterDef::with_nodes(3) });
        assert_eq!(local.memory_mb(&local.nodes[0]), 1024);
    }

    #[test]
    fn mistakes_are_named() {
        let cases = [
            ("", "no [[node]]"),
            ("[[node]]\nname = \"a\"\nrole = \"worker\"", "must be a manager"),
            ("[[node]]\nname = \"a\"\nrole = \"boss\"", "unknown variant"),
            ("[[node]]\nname = \"a b\"\nrole = \"manager\"", "node name"),
            ("[[node]]\nname = \"a\"\nrole = \"manager\"\n[[node]]\nname = \"a\"\nrole = \"worker\"", "twice"),
            ("[[node]]\nname = \"a\"\nrole = \"manager\"\nmemory = 5", "unknown field"),
            ("[defaults]\nmemory_mb = 64\n[[node]]\nname = \"a\"\nrole = \"manager\"", "below 256"),
        ];
        for (i, (text, want)) in cases.iter().enumerate() {
            let e = ClusterDef::parse(text).unwrap_err();
            assert!(e.contains(want), "case {i}: {e:?} does not say {want:?}");
        }
        let d = ClusterDef::parse(
            "[defaults]\ncmdline = \"orc.a=1\"\nstate_disk_mb = 64\n[[node]]\nname = \"a\"\nrole = \"manager\"\ncmdline = \"orc.b=2\"",
        )
        .unwrap();
        assert_eq!(d.cmdline(&d.nodes[0]), "orc.a=1 orc.b=2");
        assert_eq!(d.state_disk_bytes(&d.nodes[0]), 64 << 20);
        assert_eq!(ClusterDef::with_nodes(5).roles()[3], NodeRole::Worker);
    }
}

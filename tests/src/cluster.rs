//! A cluster of agent processes on loopback: the first bootstraps, the
//! other managers and the workers join with tokens through orcctl. The
//! orcctl context lists every manager, so commands fail over.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::agent::{AgentProcess, Options};
use crate::paths::debug_bin;

pub struct LocalCluster {
    /// Managers first, then workers.
    pub agents: Vec<AgentProcess>,
    pub managers: usize,
    pub config: PathBuf,
    _dir: tempfile::TempDir,
}

pub struct Out {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

impl LocalCluster {
    pub fn start(managers: usize, workers: usize, opts: Options) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let config = dir.path().join("orcctl.toml");
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let first = AgentProcess::start_with(opts.clone())?;
        let fp = first.fingerprint()?;
        let (_, mut ctx) = rt.block_on(orcctl::cmd::cluster::bootstrap(
            &first.addr,
            &orcctl::connect::Trust::Pinned(fp),
            "t",
            "admin",
        ))?;
        let mut agents = vec![first];
        for _ in 1..managers + workers {
            agents.push(AgentProcess::start_with(opts.clone())?);
        }
        ctx.endpoints = agents[..managers].iter().map(|a| a.addr.clone()).collect();
        orcctl::cmd::cluster::save_context(&config, "t", ctx)?;
        let c = Self { agents, managers, config, _dir: dir };
        let token = |role: &str| -> anyhow::Result<String> {
            let o = c.ctl(&["cluster", "join-token", role]);
            anyhow::ensure!(o.ok, "join-token {role}: {}", o.stderr);
            Ok(o.stdout.trim().to_string())
        };
        let (mt, wt) = (token("manager")?, token("worker")?);
        let leader = c.agents[0].addr.clone();
        for (i, a) in c.agents.iter().enumerate().skip(1) {
            let fp = format!("sha256:{}", a.fingerprint()?);
            let t = if i < managers { &mt } else { &wt };
            let o = c.ctl(&["node", "join", &a.addr, "--fingerprint", &fp, "--token", t, "--manager", &leader]);
            anyhow::ensure!(o.ok, "joining {}: {}", a.addr, o.stderr);
        }
        c.wait(Duration::from_secs(60), "every node ready and every manager a voter", |c| {
            let nodes = c.json(&["node", "ls"]);
            let ready = nodes.as_array().map(|n| n.iter().filter(|n| n["status"] == "ready").count()).unwrap_or(0);
            let voters = nodes
                .as_array()
                .map(|n| {
                    n.iter().filter(|n| n["manager_status"] == "leader" || n["manager_status"] == "reachable").count()
                })
                .unwrap_or(0);
            ready == managers + workers && voters == managers
        })?;
        Ok(c)
    }

    /// orcctl with this cluster's context and `args`, to start.
    pub fn ctl_command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(debug_bin("orcctl"));
        cmd.arg("--orcconfig").arg(&self.config).args(args);
        cmd
    }

    pub fn ctl(&self, args: &[&str]) -> Out {
        let o = self.ctl_command(args).output();
        let out = match o {
            Ok(o) => Out {
                ok: o.status.success(),
                stdout: String::from_utf8_lossy(&o.stdout).into(),
                stderr: String::from_utf8_lossy(&o.stderr).into(),
            },
            Err(e) => Out { ok: false, stdout: String::new(), stderr: e.to_string() },
        };
        if std::env::var_os("ORC_TEST_VERBOSE").is_some() {
            eprintln!("$ orcctl {}\n  -> {} {:?} {:?}", args.join(" "), out.ok, out.stdout, out.stderr);
        }
        out
    }

    /// The JSON output of a command, or Null when it failed.
    /// `cmd` run in `container` on the node at `node`: whether it exited 0,
    /// and its output (stdout, then stderr).
    pub fn exec(&self, node: &str, container: &str, cmd: &[&str]) -> (bool, String) {
        let mut args = vec!["--nodes", node, "container", "exec", container, "--"];
        args.extend_from_slice(cmd);
        let o = self.ctl(&args);
        (o.ok, format!("{}{}", o.stdout, o.stderr))
    }

    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut a = args.to_vec();
        a.extend(["-o", "json"]);
        let o = self.ctl(&a);
        if !o.ok {
            return serde_json::Value::Null;
        }
        serde_json::from_str(&o.stdout).unwrap_or(serde_json::Value::Null)
    }

    /// Polls `done` until it holds, up to `timeout`.
    pub fn wait(&self, timeout: Duration, what: &str, done: impl Fn(&Self) -> bool) -> anyhow::Result<()> {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if done(self) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        anyhow::bail!("timed out after {timeout:?} waiting for {what}")
    }

    /// The node id of agent `i`, from `node ls`.
    pub fn node_id(&self, i: usize) -> anyhow::Result<String> {
        let nodes = self.json(&["node", "ls"]);
        let addr = &self.agents[i].addr;
        nodes
            .as_array()
            .and_then(|a| a.iter().find(|n| n["addr"] == addr.as_str()))
            .and_then(|n| n["id"].as_str().map(str::to_string))
            .ok_or_else(|| anyhow::anyhow!("no node at {addr} in `node ls`"))
    }

    /// Drains every manager, so tasks go to workers only (e.g. simulated ones).
    pub fn drain_managers(&self) -> anyhow::Result<()> {
        for i in 0..self.managers {
            let id = self.node_id(i)?;
            let o = self.ctl(&["node", "update", "--availability", "drain", &id]);
            anyhow::ensure!(o.ok, "draining manager {id}: {}", o.stderr);
        }
        Ok(())
    }

    /// The Raft leader's index in `agents`, from a manager that answers.
    pub fn leader(&self) -> Option<usize> {
        self.agents[..self.managers].iter().find_map(|a| {
            let leader = self.leader_addr(&a.addr)?;
            self.agents.iter().position(|a| a.addr == leader)
        })
    }

    /// The leader's address as the manager at `asked` knows it.
    pub fn leader_addr(&self, asked: &str) -> Option<String> {
        let s = self.json(&["--nodes", asked, "cluster", "status"]);
        let leader = s.as_array()?.first()?["leader"].as_str()?.to_string();
        let member = s[0]["members"].as_array()?.iter().find(|m| m["node_id"] == leader.as_str())?.clone();
        member["addr"].as_str().map(str::to_string)
    }

    /// Task containers running on agent `i` (by name prefix `<service>.`).
    pub fn containers(&self, i: usize, service: &str) -> Option<usize> {
        let v = self.json(&["--nodes", &self.agents[i].addr, "container", "ls"]);
        let prefix = format!("{service}.");
        Some(
            v.as_array()?
                .iter()
                .filter(|c| c["name"].as_str().is_some_and(|n| n.starts_with(&prefix)) && c["state"] == "running")
                .count(),
        )
    }
}

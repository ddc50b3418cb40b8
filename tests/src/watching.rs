//! A long-running `orcctl … --watch` whose output lines a test waits on.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::paths::debug_bin;

pub struct Watching {
    child: Child,
    lines: mpsc::Receiver<String>,
    /// Every line seen so far.
    pub seen: Vec<String>,
}

impl Watching {
    /// Starts `orcctl --orcconfig CONFIG ARGS` and reads its standard output.
    pub fn start(config: &Path, args: &[&str]) -> anyhow::Result<Self> {
        let mut child = Command::new(debug_bin("orcctl"))
            .arg("--orcconfig")
            .arg(config)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let out = child.stdout.take().ok_or_else(|| anyhow::anyhow!("orcctl has no stdout"))?;
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(l).is_err() {
                    return;
                }
            }
        });
        Ok(Self { child, lines, seen: Vec::new() })
    }

    /// Waits up to `timeout` for a line that `done` accepts, and returns it.
    pub fn line(&mut self, timeout: Duration, what: &str, done: impl Fn(&str) -> bool) -> anyhow::Result<String> {
        let start = Instant::now();
        while let Some(left) = timeout.checked_sub(start.elapsed()) {
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    self.seen.push(l.clone());
                    if done(&l) {
                        return Ok(l);
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => break,
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    anyhow::bail!("orcctl ended while waiting for {what}; it printed {:#?}", self.seen)
                }
            }
        }
        anyhow::bail!("timed out after {timeout:?} waiting for {what}; orcctl printed {:#?}", self.seen)
    }

    /// A JSON event line (`-o json`) whose type and object `done` accepts.
    pub fn event(
        &mut self,
        timeout: Duration,
        what: &str,
        done: impl Fn(&str, &serde_json::Value) -> bool,
    ) -> anyhow::Result<serde_json::Value> {
        let l = self.line(timeout, what, |l| {
            serde_json::from_str::<serde_json::Value>(l)
                .is_ok_and(|e| e["type"].as_str().is_some_and(|t| done(t, &e["object"])))
        })?;
        Ok(serde_json::from_str(&l)?)
    }
}

impl Drop for Watching {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

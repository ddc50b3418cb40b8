//! A task's probes as a state machine, fed with results: pure, so its
//! rules are tested without containers. Kubernetes' rules:
//! - a startup probe holds the other two off until it passes, and failing
//!   it `failure_threshold` times in a row restarts the task;
//! - liveness failing `failure_threshold` times in a row restarts the task;
//! - readiness failing `failure_threshold` times in a row marks the task
//!   not ready, passing `success_threshold` times in a row ready again; a
//!   task with a readiness probe is not ready before its first pass;
//! - failures within the start period do not count (Docker's start period).

use std::collections::BTreeMap;

use crate::cluster::objects::{Health, HealthChecks, Probe, ProbeAction, ProbeRole};

/// Docker's HEALTHCHECK defaults: every 30 s, 30 s to answer, 3 retries.
const DOCKER_INTERVAL_MS: u64 = 30_000;
const DOCKER_TIMEOUT_MS: u64 = 30_000;
const DOCKER_RETRIES: u32 = 3;

/// The probes a task runs: the service's, or its image's HEALTHCHECK as
/// liveness and readiness when the service declares none.
pub fn resolve(declared: &HealthChecks, image: Option<Probe>) -> HealthChecks {
    if declared.declared() || declared.ignore_image {
        return declared.clone();
    }
    HealthChecks { liveness: image.clone(), readiness: image, ..Default::default() }
}

/// The probe of an image config's `config.Healthcheck` (Docker's format:
/// `Test` is `["CMD", argv…]`, `["CMD-SHELL", script]` or `["NONE"]`;
/// durations in nanoseconds, 0 meaning the default).
pub fn image_probe(config: &[u8]) -> Option<Probe> {
    #[derive(serde::Deserialize)]
    struct Config {
        config: Option<Inner>,
    }
    #[derive(serde::Deserialize)]
    struct Inner {
        #[serde(rename = "Healthcheck")]
        healthcheck: Option<Check>,
    }
    #[derive(serde::Deserialize)]
    struct Check {
        #[serde(rename = "Test", default)]
        test: Vec<String>,
        #[serde(rename = "Interval", default)]
        interval: u64,
        #[serde(rename = "Timeout", default)]
        timeout: u64,
        #[serde(rename = "StartPeriod", default)]
        start_period: u64,
        #[serde(rename = "Retries", default)]
        retries: u32,
    }
    let c: Config = serde_json::from_slice(config).ok()?;
    let h = c.config?.healthcheck?;
    let command = match h.test.split_first() {
        Some((kind, rest)) if kind == "CMD" && !rest.is_empty() => rest.to_vec(),
        Some((kind, rest)) if kind == "CMD-SHELL" && !rest.is_empty() => {
            vec!["/bin/sh".into(), "-c".into(), rest.join(" ")]
        }
        _ => return None,
    };
    let ms = |ns: u64, default: u64| if ns == 0 { default } else { (ns / 1_000_000).max(1) };
    Some(Probe {
        action: ProbeAction::Exec { command },
        interval_ms: ms(h.interval, DOCKER_INTERVAL_MS),
        timeout_ms: ms(h.timeout, DOCKER_TIMEOUT_MS),
        failure_threshold: if h.retries == 0 { DOCKER_RETRIES } else { h.retries },
        success_threshold: 1,
        start_period_ms: h.start_period / 1_000_000,
    })
}

/// What the probes ask of the executor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing to do.
    Keep,
    /// Restart the task (stop its container), for this reason.
    Restart(String),
}

#[derive(Debug, Default, Clone, Copy)]
struct Run {
    successes: u32,
    failures: u32,
}

/// One task's probes and what they have said so far.
#[derive(Debug)]
pub struct Machine {
    checks: HealthChecks,
    started: bool,
    /// None: no readiness result yet.
    ready: Option<bool>,
    runs: BTreeMap<ProbeRole, Run>,
    /// The last failure, `role: message`.
    pub last_failure: String,
}

impl Machine {
    pub fn new(checks: HealthChecks) -> Self {
        let started = checks.startup.is_none();
        Self { checks, started, ready: None, runs: BTreeMap::new(), last_failure: String::new() }
    }

    /// Whether there is anything to run.
    pub fn any(&self) -> bool {
        self.checks.declared()
    }

    /// The probes to run now (startup alone until it passes).
    pub fn active(&self) -> Vec<(ProbeRole, &Probe)> {
        if !self.started {
            return self.checks.startup.iter().map(|p| (ProbeRole::Startup, p)).collect();
        }
        [ProbeRole::Liveness, ProbeRole::Readiness]
            .into_iter()
            .filter_map(|r| self.checks.get(r).map(|p| (r, p)))
            .collect()
    }

    pub fn health(&self) -> Health {
        if !self.started {
            return Health::Starting;
        }
        match (self.checks.readiness.is_some(), self.ready) {
            (false, _) | (true, Some(true)) => Health::Ready,
            (true, None) => Health::Starting,
            (true, Some(false)) => Health::NotReady,
        }
    }

    /// Takes the result of `role`'s probe, run `since_start_ms` after the
    /// task started.
    pub fn record(&mut self, role: ProbeRole, since_start_ms: u64, result: Result<(), String>) -> Verdict {
        let Some(p) = self.checks.get(role).cloned() else { return Verdict::Keep };
        let run = self.runs.entry(role).or_default();
        match result {
            Ok(()) => {
                run.failures = 0;
                run.successes += 1;
                if run.successes >= p.success_threshold {
                    match role {
                        ProbeRole::Startup => self.started = true,
                        ProbeRole::Readiness => self.ready = Some(true),
                        ProbeRole::Liveness => {}
                    }
                }
                Verdict::Keep
            }
            Err(why) => {
                self.last_failure = format!("{}: {why}", role.as_str());
                run.successes = 0;
                if since_start_ms < p.start_period_ms {
                    return Verdict::Keep;
                }
                run.failures += 1;
                if run.failures < p.failure_threshold {
                    return Verdict::Keep;
                }
                match role {
                    ProbeRole::Readiness => {
                        self.ready = Some(false);
                        Verdict::Keep
                    }
                    ProbeRole::Startup | ProbeRole::Liveness => {
                        Verdict::Restart(format!("{} probe failed {} times: {why}", role.as_str(), run.failures))
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(failures: u32, successes: u32, start_ms: u64) -> Probe {
        Probe {
            failure_threshold: failures,
            success_threshold: successes,
            start_period_ms: start_ms,
            ..Probe::new(ProbeAction::Tcp { port: 80 })
        }
    }

    fn fail() -> Result<(), String> {
        Err("connection refused".into())
    }

    #[test]
    fn startup_holds_the_others_off_then_liveness_restarts() {
        let mut m = Machine::new(HealthChecks {
            startup: Some(probe(2, 1, 0)),
            liveness: Some(probe(3, 1, 0)),
            ..Default::default()
        });
        assert_eq!(m.active().iter().map(|(r, _)| *r).collect::<Vec<_>>(), [ProbeRole::Startup]);
        assert_eq!(m.health(), Health::Starting);
        assert_eq!(m.record(ProbeRole::Startup, 0, fail()), Verdict::Keep);
        assert_eq!(m.record(ProbeRole::Startup, 10, Ok(())), Verdict::Keep);
        assert_eq!(m.active().iter().map(|(r, _)| *r).collect::<Vec<_>>(), [ProbeRole::Liveness]);
        assert_eq!(m.health(), Health::Ready, "no readiness probe: ready once started");
        assert_eq!(m.record(ProbeRole::Liveness, 20, fail()), Verdict::Keep);
        assert_eq!(m.record(ProbeRole::Liveness, 30, Ok(())), Verdict::Keep, "a success resets the count");
        assert_eq!(m.record(ProbeRole::Liveness, 40, fail()), Verdict::Keep);
        assert_eq!(m.record(ProbeRole::Liveness, 50, fail()), Verdict::Keep);
        match m.record(ProbeRole::Liveness, 60, fail()) {
            Verdict::Restart(why) => {
                assert!(why.contains("liveness probe failed 3 times: connection refused"), "{why}")
            }
            v => panic!("{v:?}"),
        }
        assert_eq!(m.last_failure, "liveness: connection refused");
    }

    #[test]
    fn a_startup_probe_that_never_passes_restarts_after_the_start_period() {
        let mut m = Machine::new(HealthChecks { startup: Some(probe(1, 1, 1000)), ..Default::default() });
        assert_eq!(m.record(ProbeRole::Startup, 500, fail()), Verdict::Keep, "within the start period");
        assert!(matches!(m.record(ProbeRole::Startup, 1500, fail()), Verdict::Restart(_)));
    }

    #[test]
    fn readiness_flips_without_a_restart() {
        let mut m = Machine::new(HealthChecks { readiness: Some(probe(2, 2, 0)), ..Default::default() });
        assert_eq!(m.health(), Health::Starting, "not ready before its first pass");
        m.record(ProbeRole::Readiness, 0, Ok(()));
        assert_eq!(m.health(), Health::Starting, "two passes needed");
        m.record(ProbeRole::Readiness, 1, Ok(()));
        assert_eq!(m.health(), Health::Ready);
        assert_eq!(m.record(ProbeRole::Readiness, 2, fail()), Verdict::Keep);
        assert_eq!(m.health(), Health::Ready, "one failure of two");
        assert_eq!(m.record(ProbeRole::Readiness, 3, fail()), Verdict::Keep, "never a restart");
        assert_eq!(m.health(), Health::NotReady);
        m.record(ProbeRole::Readiness, 4, Ok(()));
        m.record(ProbeRole::Readiness, 5, Ok(()));
        assert_eq!(m.health(), Health::Ready);
    }

    #[test]
    fn the_image_healthcheck_serves_when_none_is_declared() {
        let config = br#"{"config":{"Healthcheck":{"Test":["CMD-SHELL","wget -q -O- localhost:80"],"Interval":5000000000,"Retries":2}}}"#;
        let p = image_probe(config).unwrap();
        assert_eq!(
            p.action,
            ProbeAction::Exec { command: vec!["/bin/sh".into(), "-c".into(), "wget -q -O- localhost:80".into()] }
        );
        assert_eq!((p.interval_ms, p.timeout_ms, p.failure_threshold), (5_000, 30_000, 2));
        assert_eq!(image_probe(br#"{"config":{"Healthcheck":{"Test":["NONE"]}}}"#), None);
        assert_eq!(image_probe(br#"{"config":{}}"#), None);
        let r = resolve(&HealthChecks::default(), Some(p.clone()));
        assert_eq!((r.liveness.as_ref(), r.readiness.as_ref()), (Some(&p), Some(&p)));
        let declared = HealthChecks { readiness: Some(probe(1, 1, 0)), ..Default::default() };
        assert_eq!(resolve(&declared, Some(p.clone())), declared, "the service's own probes win");
        let ignored = HealthChecks { ignore_image: true, ..Default::default() };
        assert!(!Machine::new(resolve(&ignored, Some(p))).any());
    }
}

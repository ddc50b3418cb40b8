//! The autoscaler's decision, a pure function of a service, its running
//! tasks' measurements and its recent recommendations — Kubernetes'
//! horizontal pod autoscaler algorithm:
//!
//! - per target, desired = ceil(current use / target × measured tasks),
//!   unless within 10 % of the target;
//! - tasks not ready count as using nothing on a scale-up; ready tasks
//!   without a measurement count as using nothing on a scale-up and their
//!   whole reservation (or the target, if higher) on a scale-down; if that
//!   flips the direction or lands within the tolerance, nothing changes;
//! - with CPU and memory targets, the higher count wins;
//! - a scale-down takes the highest recommendation of the stabilisation
//!   window (5 minutes by default); a scale-up within a minute goes at
//!   most to double, or +4, the count at the minute's start;
//! - the result stays within min and max.
//!
//! The recommendations of the window live in the leader's memory
//! ([`super::autoscaler`]); every change of the count is recorded with
//! its reason in the service's status.

use super::objects::{Autoscale, AutoscaleStatus, Resource, ScaleDecision, ServiceSpec, DECISIONS_KEPT};

/// Within this fraction of the target, nothing changes.
pub const TOLERANCE: f64 = 0.1;
/// The period of the scale-up rate limit.
pub const SCALE_UP_PERIOD_MS: i64 = 60_000;

/// A task wanted running, as the autoscaler sees it.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Seen {
    /// Running and ready (no readiness probe, or it passes).
    pub ready: bool,
    /// Thousandths of a CPU (None: no fresh measurement).
    pub cpu_millis: Option<u32>,
    pub memory: Option<u64>,
}

/// What one target asks for.
#[derive(Debug, Clone, PartialEq)]
struct Proposal {
    replicas: u64,
    /// Mean use of the measured ready tasks, in % of the reservation.
    percent: u32,
    why: String,
}

/// What target `percent` of `resource` (reservation `request` per task)
/// asks of `current` replicas; None without a measurement of a ready task.
fn propose(resource: Resource, target: u32, request: f64, tasks: &[Seen], current: u64) -> Option<Proposal> {
    let usage = |t: &Seen| match resource {
        Resource::Cpu => t.cpu_millis.map(f64::from),
        Resource::Memory => t.memory.map(|m| m as f64),
    };
    let measured: Vec<f64> = tasks.iter().filter(|t| t.ready).filter_map(usage).collect();
    if measured.is_empty() || request <= 0.0 {
        return None;
    }
    let missing = tasks.iter().filter(|t| t.ready && usage(t).is_none()).count();
    let unready = tasks.iter().filter(|t| !t.ready).count();
    let target_f = f64::from(target) / 100.0;
    let ratio_of = |values: &[f64]| values.iter().sum::<f64>() / (values.len() as f64 * request) / target_f;
    let ratio = ratio_of(&measured);
    let percent = (ratio * f64::from(target)).round().min(f64::from(u32::MAX)) as u32;
    let name = resource.as_str();
    let mut why = format!("{name} at {percent}% of its reservation (target {target}%)");
    let scale_up_with_unready = unready > 0 && ratio > 1.0;
    let within = |r: f64| (1.0 - r).abs() <= TOLERANCE;
    if !scale_up_with_unready && missing == 0 {
        if within(ratio) {
            why.push_str(": within the 10% tolerance");
            return Some(Proposal { replicas: current, percent, why });
        }
        let replicas = (ratio * measured.len() as f64).ceil() as u64;
        return Some(Proposal { replicas, percent, why });
    }
    // Fill in the tasks without a measurement the way that moves least.
    let mut values = measured.clone();
    if missing > 0 {
        let fill = if ratio < 1.0 { request * f64::from(target.max(100)) / 100.0 } else { 0.0 };
        if ratio != 1.0 {
            values.extend(std::iter::repeat_n(fill, missing));
        }
    }
    if scale_up_with_unready {
        values.extend(std::iter::repeat_n(0.0, unready));
    }
    let new_ratio = ratio_of(&values);
    why.push_str(&format!(
        "; {} task(s) without a measurement counted {}",
        missing + if scale_up_with_unready { unready } else { 0 },
        if ratio < 1.0 { "at their reservation" } else { "idle" }
    ));
    if within(new_ratio) || (ratio < 1.0 && new_ratio > 1.0) || (ratio > 1.0 && new_ratio < 1.0) {
        why.push_str(": no clear change");
        return Some(Proposal { replicas: current, percent, why });
    }
    let replicas = (new_ratio * values.len() as f64).ceil() as u64;
    if (new_ratio < 1.0 && replicas > current) || (new_ratio > 1.0 && replicas < current) {
        return Some(Proposal { replicas: current, percent, why });
    }
    Some(Proposal { replicas, percent, why })
}

/// What the autoscaler decides for a service now.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub replicas: u64,
    pub status: AutoscaleStatus,
    /// The recommendation to remember for the window (None: no measurement).
    pub recommendation: Option<u64>,
}

/// Decides the replica count of `spec` (autoscaled by `a`) at `now`, from
/// its tasks wanted running, the previous status and the recommendations
/// of the window (`(time, replicas)`, this one not among them).
pub fn decide(
    spec: &ServiceSpec,
    a: &Autoscale,
    old: Option<&AutoscaleStatus>,
    tasks: &[Seen],
    window: &[(i64, u64)],
    now: i64,
) -> Decision {
    let current = spec.replicas;
    let mut proposals = Vec::new();
    let mut status = AutoscaleStatus {
        checked_ms: now,
        decisions: old.map(|o| o.decisions.clone()).unwrap_or_default(),
        running: tasks.len() as u64,
        ..Default::default()
    };
    let targets = [
        (Resource::Cpu, a.cpu_percent, spec.reserve_cpus * 1000.0),
        (Resource::Memory, a.memory_percent, spec.reserve_memory as f64),
    ];
    for (resource, target, request) in targets {
        if target == 0 {
            continue;
        }
        let Some(p) = propose(resource, target, request, tasks, current) else { continue };
        match resource {
            Resource::Cpu => status.cpu_percent = Some(p.percent),
            Resource::Memory => status.memory_percent = Some(p.percent),
        }
        proposals.push(p);
    }
    status.measured = tasks
        .iter()
        .filter(|t| (a.cpu_percent > 0 && t.cpu_millis.is_some()) || (a.memory_percent > 0 && t.memory.is_some()))
        .count() as u64;
    // The highest proposal wins (its reason with it).
    let best = proposals.into_iter().max_by_key(|p| p.replicas);
    let recommendation = best.as_ref().map(|p| p.replicas);
    let mut why = match &best {
        Some(p) => format!("{}: {} replicas", p.why, p.replicas),
        None => "no measurements yet".to_string(),
    };
    status.recommended = recommendation.unwrap_or(current);
    // Scale-down stabilisation: the highest recommendation of the window.
    let mut replicas = current;
    if let Some(r) = recommendation {
        let since = now - a.scale_down_window_ms as i64;
        let highest = window.iter().filter(|(t, _)| *t > since).map(|(_, n)| *n).fold(r, u64::max);
        if r > current {
            replicas = r;
        } else if highest < current {
            replicas = highest;
        }
        if r < current && highest > r {
            why.push_str(&format!(
                "; held at {} by the scale-down window ({}s)",
                highest.min(current),
                a.scale_down_window_ms / 1000
            ));
        }
    }
    // Scale-up rate: at most double, or +4, the count a minute ago.
    let added: u64 = status
        .decisions
        .iter()
        .filter(|d| d.at_ms > now - SCALE_UP_PERIOD_MS && d.to > d.from)
        .map(|d| d.to - d.from)
        .sum();
    let start = current.saturating_sub(added);
    let limit = (start * 2).max(start + 4).max(current);
    if replicas > limit {
        replicas = limit;
        why.push_str(&format!("; limited to {limit} (at most double or +4 a minute)"));
    }
    if replicas > a.max {
        replicas = a.max;
        why.push_str(&format!("; capped at the maximum {}", a.max));
    } else if replicas < a.min {
        replicas = a.min;
        why.push_str(&format!("; raised to the minimum {}", a.min));
    }
    if replicas != current {
        status.decisions.push(ScaleDecision { at_ms: now, from: current, to: replicas, reason: why.clone() });
        let extra = status.decisions.len().saturating_sub(DECISIONS_KEPT);
        status.decisions.drain(..extra);
    }
    status.message = why;
    Decision { replicas, status, recommendation }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(replicas: u64) -> (ServiceSpec, Autoscale) {
        let s =
            ServiceSpec { name: "web".into(), replicas, reserve_cpus: 0.5, reserve_memory: 100, ..Default::default() };
        let a = Autoscale { min: 1, max: 20, cpu_percent: 50, ..Default::default() };
        (s, a)
    }

    fn busy(cpu: u32) -> Seen {
        Seen { ready: true, cpu_millis: Some(cpu), memory: None }
    }

    #[test]
    fn scales_to_the_ratio_of_use_to_target_outside_the_tolerance() {
        let (s, a) = spec(2);
        // 500 m of 500 m reserved = 100 %, target 50 %: twice the tasks.
        let d = decide(&s, &a, None, &[busy(500), busy(500)], &[], 0);
        assert_eq!(d.replicas, 4, "{}", d.status.message);
        assert_eq!(d.status.cpu_percent, Some(100));
        assert_eq!(d.status.decisions.len(), 1);
        assert!(d.status.decisions[0].reason.contains("cpu at 100%"), "{}", d.status.message);
        // 54 % against 50 %: within 10 %.
        let d = decide(&s, &a, None, &[busy(270), busy(270)], &[], 0);
        assert_eq!(d.replicas, 2);
        assert!(d.status.message.contains("tolerance"));
        assert!(d.status.decisions.is_empty());
    }

    #[test]
    fn scale_up_is_limited_to_double_or_four_more_a_minute() {
        let (s, a) = spec(1);
        let d = decide(&s, &a, None, &[busy(5000)], &[], 0);
        // 1000 % of a 50 % target: 20 asked, 5 allowed (1 + 4).
        assert_eq!((d.status.recommended, d.replicas), (20, 5), "{}", d.status.message);
        let s5 = ServiceSpec { replicas: 5, ..s.clone() };
        let hot = vec![busy(5000); 5];
        // Within the same minute the count a minute ago (1) still bounds it.
        let d2 = decide(&s5, &a, Some(&d.status), &hot, &[], 30_000);
        assert_eq!(d2.replicas, 5, "{}", d2.status.message);
        // A minute later: double 5.
        let d3 = decide(&s5, &a, Some(&d.status), &hot, &[], 61_000);
        assert_eq!(d3.replicas, 10);
        // Never above max.
        let small = Autoscale { max: 3, ..a.clone() };
        assert_eq!(decide(&s, &small, None, &[busy(5000)], &[], 0).replicas, 3);
    }

    #[test]
    fn scale_down_takes_the_highest_recommendation_of_the_window() {
        let (s, a) = spec(4);
        let idle = vec![busy(10); 4];
        // A minute ago 4 were recommended: stay.
        let d = decide(&s, &a, None, &idle, &[(-60_000, 4)], 0);
        assert_eq!((d.recommendation, d.replicas), (Some(1), 4), "{}", d.status.message);
        assert!(d.status.message.contains("scale-down window"));
        // 3 within the window, 4 before it: down to 3.
        let d = decide(&s, &a, None, &idle, &[(-400_000, 4), (-100_000, 3)], 0);
        assert_eq!(d.replicas, 3);
        // Nothing in the window: the minimum.
        let d = decide(&s, &a, None, &idle, &[], 0);
        assert_eq!(d.replicas, 1);
    }

    #[test]
    fn missing_measurements_are_conservative() {
        let (s, a) = spec(2);
        // Scale-up: the task without a measurement counts as idle.
        // 100 % + 0 % = 50 % of 2 → no change.
        let d = decide(&s, &a, None, &[busy(500), Seen { ready: true, ..Default::default() }], &[], 0);
        assert_eq!(d.replicas, 2, "{}", d.status.message);
        // Scale-down: it counts at its reservation. 0 % + 100 % = 50 % → no change.
        let d = decide(&s, &a, None, &[busy(0), Seen { ready: true, ..Default::default() }], &[], 0);
        assert_eq!(d.replicas, 2, "{}", d.status.message);
        // An unready task counts as idle on a scale-up: 200 % and 0 % of a
        // 50 % target over 2 tasks → 4.
        let d = decide(&s, &a, None, &[busy(1000), Seen::default()], &[], 0);
        assert_eq!(d.replicas, 4, "{}", d.status.message);
        // No measurement at all: nothing changes, nothing recommended.
        let d = decide(&s, &a, None, &[Seen { ready: true, ..Default::default() }; 2], &[], 0);
        assert_eq!((d.replicas, d.recommendation), (2, None));
        assert_eq!(d.status.message, "no measurements yet");
    }

    #[test]
    fn the_higher_of_cpu_and_memory_wins_and_bounds_hold() {
        let (s, mut a) = spec(2);
        a.memory_percent = 50;
        // CPU idle, memory at 150 % of reservation (target 50 %): 6.
        let t = Seen { ready: true, cpu_millis: Some(0), memory: Some(150) };
        let d = decide(&s, &a, None, &[t, t], &[], 0);
        assert_eq!(d.replicas, 6, "{}", d.status.message);
        assert!(d.status.message.starts_with("memory"));
        // Below the minimum with no measurement: raised at once.
        a.min = 3;
        let d = decide(&s, &a, None, &[], &[], 0);
        assert_eq!(d.replicas, 3);
        assert!(d.status.message.contains("minimum"));
    }
}

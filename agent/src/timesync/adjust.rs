//! Setting the system clock: a step (`clock_settime`) for large offsets, a
//! slew (`adjtimex` with `ADJ_OFFSET_SINGLESHOT`, the kernel's adjtime) for
//! small ones, so time never jumps backwards for a few milliseconds.

use nix::sys::time::TimeSpec;
use nix::time::{clock_gettime, clock_settime, ClockId};

#[derive(Debug, thiserror::Error)]
pub enum AdjustError {
    #[error("reading the clock: {0}")]
    Read(nix::Error),
    #[error("stepping the clock by {offset:+.3} s: {source}")]
    Step { offset: f64, source: nix::Error },
    #[error("slewing the clock by {offset:+.6} s: {source}")]
    Slew { offset: f64, source: std::io::Error },
}

/// Moves the clock by `offset` seconds at once.
pub fn step(offset: f64) -> Result<(), AdjustError> {
    let now = clock_gettime(ClockId::CLOCK_REALTIME).map_err(AdjustError::Read)?;
    let nanos = (offset * 1e9).round() as i64;
    let delta = TimeSpec::new(nanos.div_euclid(1_000_000_000), nanos.rem_euclid(1_000_000_000));
    clock_settime(ClockId::CLOCK_REALTIME, now + delta).map_err(|source| AdjustError::Step { offset, source })
}

/// Has the kernel slew the clock by `offset` seconds (at most 0.5 ms per
/// second; used below the step threshold only).
pub fn slew(offset: f64) -> Result<(), AdjustError> {
    // SAFETY: timex is plain data; zeroed is a valid value for every field.
    let mut t: libc::timex = unsafe { std::mem::zeroed() };
    t.modes = libc::ADJ_OFFSET_SINGLESHOT as libc::c_uint;
    t.offset = (offset * 1e6).round() as libc::c_long;
    // SAFETY: `t` is a valid, exclusively borrowed timex for the call.
    if unsafe { libc::adjtimex(&mut t) } < 0 {
        return Err(AdjustError::Slew { offset, source: std::io::Error::last_os_error() });
    }
    Ok(())
}

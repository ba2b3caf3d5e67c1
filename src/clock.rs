//! A cheap monotonic clock for the L1 hit path.
//!
//! Every L1 get checks the entry's deadline, so the clock read sits on the hottest path.
//! `Instant::now()` costs ~25 ns here (a vDSO `clock_gettime`); on x86_64 with an invariant TSC
//! (`constant_tsc` and `nonstop_tsc`) we read the TSC instead (~7 ns) and convert durations to
//! ticks with a rate calibrated once against `Instant`. Elsewhere we fall back to `Instant`.
//!
//! Deadlines err on the early side: the calibrated rate is rounded so a duration converts to
//! slightly *fewer* ticks, so an entry may expire a few microseconds early, never late.

use once_cell::sync::Lazy;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A point in time in clock ticks. 0 is reserved by callers to mean "never".
pub type Ticks = u64;

struct Source {
    start: Instant,
    /// Ticks per nanosecond as a 32.32 fixed-point number; None = ticks are nanoseconds.
    tsc_per_ns: Option<u64>,
    tsc_start: u64,
}

static SOURCE: Lazy<Source> = Lazy::new(calibrate);

#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn read_tsc() -> u64 {
    // SAFETY: rdtsc has no memory effects and exists on every x86_64 CPU.
    unsafe { core::arch::x86_64::_rdtsc() }
}

#[cfg(not(target_arch = "x86_64"))]
#[inline(always)]
fn read_tsc() -> u64 {
    0
}

fn invariant_tsc() -> bool {
    if !cfg!(target_arch = "x86_64") || std::env::var_os("SMARTCACHE_NO_TSC").is_some() {
        return false;
    }
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let flags = info.lines().find(|l| l.starts_with("flags")).unwrap_or("");
    let has = |f: &str| flags.split_whitespace().any(|w| w == f);
    has("constant_tsc") && has("nonstop_tsc")
}

/// One (TSC, Instant) pair read close together: the Instant is bracketed by two TSC reads and
/// the pair is retried until the bracket is tight, so a preemption between the two reads (the
/// machine may be busy) cannot skew the calibration.
fn paired_read() -> (u64, Instant) {
    let mut best: Option<(u64, u64, Instant)> = None;
    for _ in 0..50 {
        let t1 = read_tsc();
        let now = Instant::now();
        let t2 = read_tsc();
        let width = t2.wrapping_sub(t1);
        if best.map_or(true, |(w, _, _)| width < w) {
            best = Some((width, t1 + width / 2, now));
        }
        if width < 2_000 {
            break;
        }
    }
    let (_, tsc, now) = best.expect("at least one sample");
    (tsc, now)
}

fn calibrate() -> Source {
    let start = Instant::now();
    if !invariant_tsc() {
        return Source {
            start,
            tsc_per_ns: None,
            tsc_start: 0,
        };
    }
    let (tsc_start, t0) = paired_read();
    // 10 ms between two tight pairs: the pairing error (well under a microsecond) is then a
    // relative error below 1e-4, which the rounding below absorbs.
    while t0.elapsed() < Duration::from_millis(10) {
        std::hint::spin_loop();
    }
    let (tsc_end, t1) = paired_read();
    let ns = t1.duration_since(t0).as_nanos() as u64;
    let ticks = tsc_end.wrapping_sub(tsc_start);
    if ns == 0 || ticks == 0 {
        return Source {
            start,
            tsc_per_ns: None,
            tsc_start: 0,
        };
    }
    // Round the rate down by 0.1% so converted durations come out short (expire early).
    let rate = ((ticks as u128) << 32) / ns as u128;
    let rate = rate - rate / 1000;
    // Ticks count from t0; `start` is its Instant twin for the fallback path.
    Source {
        start: t0,
        tsc_per_ns: Some(rate as u64),
        tsc_start,
    }
}

/// Now, in ticks since the process's first use of the clock. Never 0.
#[inline]
pub fn now() -> Ticks {
    let s = &*SOURCE;
    match s.tsc_per_ns {
        Some(_) => read_tsc().wrapping_sub(s.tsc_start) | 1,
        None => s.start.elapsed().as_nanos() as u64 | 1,
    }
}

/// The number of ticks in `d` (rounded down, saturating).
pub fn ticks_in(d: Duration) -> Ticks {
    let ns = d.as_nanos().min(u64::MAX as u128);
    match SOURCE.tsc_per_ns {
        Some(rate) => ((ns * rate as u128) >> 32).min(u64::MAX as u128) as u64,
        None => ns as u64,
    }
}

/// The duration of `ticks` (rounded down).
pub fn duration_of(ticks: Ticks) -> Duration {
    match SOURCE.tsc_per_ns {
        Some(rate) => Duration::from_nanos((((ticks as u128) << 32) / rate as u128) as u64),
        None => Duration::from_nanos(ticks),
    }
}

/// The deadline `ttl` from now; None = never expires.
pub fn deadline_after(ttl: Option<Duration>) -> Option<Ticks> {
    ttl.map(|d| now().saturating_add(ticks_in(d)))
}

/// Wall-clock time now, in nanoseconds since the unix epoch (0 before it).
pub fn unix_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// The tick at which the wall clock reaches `unix_ns`, rounded early; None once it has passed.
/// The tick count is read before the wall clock, and the time left is counted from the wall
/// clock reading, so the tick returned is never later than the instant itself (the rate's
/// rounding, see `calibrate`, errs early too).
pub fn deadline_at_unix_ns(unix_ns: u64) -> Option<Ticks> {
    let ticks_now = now();
    let left = unix_ns.checked_sub(self::unix_ns()).filter(|&ns| ns > 0)?;
    Some(ticks_now.saturating_add(ticks_in(Duration::from_nanos(left))))
}

/// Time left until `deadline` (zero once passed).
pub fn remaining(deadline: Ticks) -> Duration {
    duration_of(deadline.saturating_sub(now()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monotonic_and_nonzero() {
        let a = now();
        let b = now();
        assert!(a > 0 && b >= a);
    }

    #[test]
    fn conversions_round_trip_within_a_tenth_percent() {
        for ms in [1u64, 50, 1000, 300_000] {
            let d = Duration::from_millis(ms);
            let back = duration_of(ticks_in(d));
            assert!(back <= d, "{back:?} > {d:?}");
            assert!(back >= d - d / 500, "{back:?} too short for {d:?}");
        }
    }

    #[test]
    fn a_wall_clock_deadline_becomes_a_tick_no_later_than_it() {
        assert_eq!(deadline_at_unix_ns(unix_ns() - 1), None);
        let wall = unix_ns() + 20_000_000;
        let dl = deadline_at_unix_ns(wall).expect("20 ms ahead");
        while unix_ns() < wall {
            std::hint::spin_loop();
        }
        assert!(
            now() >= dl,
            "the wall clock passed the deadline but the tick has not"
        );
    }

    #[test]
    fn deadline_never_later_than_wall_time_nor_much_earlier() {
        let t0 = Instant::now();
        let dl = deadline_after(Some(Duration::from_millis(30))).unwrap();
        while now() < dl {
            std::hint::spin_loop();
        }
        assert!(
            t0.elapsed() >= Duration::from_millis(29),
            "{:?}",
            t0.elapsed()
        );
        while t0.elapsed() < Duration::from_millis(30) {
            std::hint::spin_loop();
        }
        assert!(
            now() >= dl,
            "30 ms of wall time passed but the deadline has not"
        );
    }
}

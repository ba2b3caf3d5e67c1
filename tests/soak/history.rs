//! The operation log the soak's workers write, and the checker that replays it against the
//! same-host guarantee of docs/coherence.md: a `get` that begins after a `set`, `delete` or
//! `clear` of its key returned returns the value that write left or a newer one, never an older
//! one. A miss is never older, so only hits are checked.
//!
//! Each worker thread appends to its own file, one `write(2)` per line (nothing buffered, so a
//! SIGKILL loses nothing that was logged): a `B` line just before the call, an `E` line just
//! after it. Timestamps are CLOCK_MONOTONIC nanoseconds, one clock for every process of the host.
//!
//! ```text
//! B <seq> <kind> <start_ns> <key> <key> ...
//! E <seq> <end_ns> <outcome> [<value or -> ...]
//! ```

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::Path;

/// CLOCK_MONOTONIC: system-wide on Linux, so comparable between the soak's processes.
pub fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into the valid, exclusively borrowed `ts`.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_MONOTONIC)");
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

pub const KEYS: usize = 24;

pub fn key_name(k: usize) -> String {
    format!("soak-{k:02}")
}

/// The value writer thread `(worker, thread)` stores for `key` in its operation `seq`: it names
/// its write, and a filler of varying length makes values of different sizes (a value read back
/// torn or mixed with another would not regenerate to the same bytes).
pub fn value_for(worker: u32, thread: u32, seq: u64, key: usize) -> String {
    let mut v = format!("{worker}:{thread}:{seq}:{key}|");
    let fill = (seq as usize * 7 + key * 13) % 300;
    v.push_str(&((b'a' + (seq % 26) as u8) as char).to_string().repeat(fill));
    v
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    Get,
    GetMany,
    Set,
    SetMany,
    Delete,
    Clear,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Get => "get",
            Kind::GetMany => "get_many",
            Kind::Set => "set",
            Kind::SetMany => "set_many",
            Kind::Delete => "delete",
            Kind::Clear => "clear",
        }
    }
    fn parse(s: &str) -> Option<Kind> {
        [
            Kind::Get,
            Kind::GetMany,
            Kind::Set,
            Kind::SetMany,
            Kind::Delete,
            Kind::Clear,
        ]
        .into_iter()
        .find(|k| k.name() == s)
    }
    pub fn is_read(self) -> bool {
        matches!(self, Kind::Get | Kind::GetMany)
    }
}

/// One logged call.
#[derive(Debug)]
pub struct Op {
    pub worker: u32,
    pub thread: u32,
    pub seq: u64,
    pub kind: Kind,
    /// Key indexes; empty for `clear`.
    pub keys: Vec<usize>,
    pub start: u64,
    /// None: the process was SIGKILLed during the call.
    pub end: Option<u64>,
    /// The call returned Ok.
    pub ok: bool,
    /// Reads: per key, the value found (None: a miss).
    pub found: Vec<Option<String>>,
}

/// Appends the log lines of one worker thread.
pub struct Logger {
    file: std::fs::File,
    line: String,
}

impl Logger {
    pub fn create(path: &Path) -> Logger {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
        Logger {
            file,
            line: String::new(),
        }
    }

    /// Logs the start of a call; returns its start time.
    pub fn begin(&mut self, seq: u64, kind: Kind, keys: &[usize]) -> u64 {
        self.line.clear();
        let start = now_ns();
        write!(self.line, "B {seq} {} {start}", kind.name()).unwrap();
        keys.iter().for_each(|k| write!(self.line, " {k}").unwrap());
        self.flush();
        start
    }

    /// Logs the end of a call (taken as late as the call returned) and what reads found.
    pub fn end(&mut self, seq: u64, ok: bool, found: &[Option<&[u8]>]) {
        let end = now_ns();
        self.line.clear();
        write!(self.line, "E {seq} {end} {}", if ok { "ok" } else { "err" }).unwrap();
        for f in found {
            match f {
                Some(v) => write!(self.line, " {}", logged_form(v)).unwrap(),
                None => self.line.push_str(" -"),
            }
        }
        self.flush();
    }

    fn flush(&mut self) {
        use std::io::Write;
        self.line.push('\n');
        // One write(2) with O_APPEND: the line is in the page cache once it returns, so a
        // SIGKILL right after loses nothing.
        self.file.write_all(self.line.as_bytes()).expect("log line");
    }
}

/// The name of the write `(worker, thread, seq, key)` at the head of a value.
fn parse_head(v: &str) -> Option<(u32, u32, u64, usize)> {
    let head = v.split('|').next()?;
    let f: Vec<&str> = head.split(':').collect();
    let [w, t, s, key] = f[..] else { return None };
    Some((
        w.parse().ok()?,
        t.parse().ok()?,
        s.parse().ok()?,
        key.parse().ok()?,
    ))
}

/// How a value read is logged: the name of its write when its bytes are exactly what that
/// write stored (keeps logs small), else `?` and the bytes escaped, which the checker reports.
pub fn logged_form(v: &[u8]) -> String {
    let genuine = std::str::from_utf8(v)
        .ok()
        .and_then(|s| parse_head(s).map(|(w, t, q, k)| value_for(w, t, q, k) == s));
    match genuine {
        Some(true) => format!("{}", v.split(|&b| b == b'|').next().unwrap().escape_ascii()),
        _ => format!("?{}", v.escape_ascii()),
    }
}

/// Reads the log of thread `thread` of worker `worker`.
pub fn read_log(path: &Path, worker: u32, thread: u32) -> Vec<Op> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut ops: Vec<Op> = Vec::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        match f.first() {
            Some(&"B") => ops.push(Op {
                worker,
                thread,
                seq: f[1].parse().unwrap(),
                kind: Kind::parse(f[2]).unwrap(),
                start: f[3].parse().unwrap(),
                keys: f[4..].iter().map(|k| k.parse().unwrap()).collect(),
                end: None,
                ok: false,
                found: Vec::new(),
            }),
            Some(&"E") => {
                let op = ops.last_mut().expect("E line after its B line");
                assert_eq!(op.seq, f[1].parse::<u64>().unwrap(), "{}", path.display());
                op.end = Some(f[2].parse().unwrap());
                op.ok = f[3] == "ok";
                op.found = f[4..]
                    .iter()
                    .map(|v| (*v != "-").then(|| v.to_string()))
                    .collect();
            }
            _ => panic!("{}: bad log line {line:?}", path.display()),
        }
    }
    ops
}

/// What the checker counted.
#[derive(Default, Debug)]
pub struct Report {
    pub ops_by_kind: HashMap<&'static str, u64>,
    pub errors_by_kind: HashMap<&'static str, u64>,
    /// Calls cut short by a SIGKILL.
    pub killed_calls: u64,
    /// (write cut short by a SIGKILL, key) pairs some read saw: replacements from then on.
    pub killed_writes_seen: u64,
    /// Key reads that found a value, each checked.
    pub hits_checked: u64,
    pub misses: u64,
    pub violations: Vec<Violation>,
}

/// A hit on a replaced value: when its read began, and the history excerpt.
#[derive(Debug)]
pub struct Violation {
    pub read_start: u64,
    pub text: String,
}

/// How many violations `check` describes with a history excerpt.
pub const DESCRIBED: usize = 20;

/// A write of one key as the checker sees it.
#[derive(Clone, Copy)]
struct KeyWrite {
    op: usize,
    start: u64,
    /// When its effects ended at the latest: its return, or its process's death.
    end: u64,
    /// It returned Ok: reads that begin after it must not see what it replaced.
    completed: bool,
}

/// Checks every hit of `ops`. `death_ns[worker]` is a time after which the worker, SIGKILLed,
/// was reaped (so its unfinished call can change nothing afterwards).
///
/// A hit on value `v` of key `k` by a read `[rs, re]` is allowed iff `v` was written by a set
/// (or set_many) `W` of `k` that started before `re`, and no write `W2` of `k` (set, set_many,
/// delete, clear) that returned Ok before `rs` started after `W` ended. `W` in flight when the
/// read began, `W` concurrent with `W2`, `W` cut short by a SIGKILL (its effects end at the
/// death), `W` or `W2` failing with an error (maybe applied, maybe not): all allowed. A `W2`
/// cut short by a SIGKILL whose value some read returned counts as returned Ok when that read
/// ended: once anyone saw it, what it replaced must not come back.
pub fn check(ops: &[Op], death_ns: &HashMap<u32, u64>) -> Report {
    let mut report = Report::default();
    let mut by_id: HashMap<(u32, u32, u64), usize> = HashMap::new();
    let mut writes: Vec<Vec<KeyWrite>> = vec![Vec::new(); KEYS];
    // By op index: the op as a write (its span is the same for each of its keys).
    let mut as_write: Vec<Option<KeyWrite>> = vec![None; ops.len()];
    for (i, op) in ops.iter().enumerate() {
        *report.ops_by_kind.entry(op.kind.name()).or_default() += 1;
        if op.end.is_none() {
            report.killed_calls += 1;
        } else if !op.ok {
            *report.errors_by_kind.entry(op.kind.name()).or_default() += 1;
        }
        by_id.insert((op.worker, op.thread, op.seq), i);
        if op.kind.is_read() {
            continue;
        }
        let end = op.end.unwrap_or_else(|| {
            *death_ns
                .get(&op.worker)
                .unwrap_or_else(|| panic!("worker {} cut short but never killed", op.worker))
        });
        let w = KeyWrite {
            op: i,
            start: op.start,
            end,
            completed: op.end.is_some() && op.ok,
        };
        as_write[i] = Some(w);
        let keys: Vec<usize> = match op.kind {
            Kind::Clear => (0..KEYS).collect(),
            _ => op.keys.clone(),
        };
        keys.into_iter().for_each(|k| writes[k].push(w));
    }
    // A write cut short by a SIGKILL may or may not have happened, but once a read returned its
    // value it did: from the end of the first such read it replaces older values like a
    // completed write (its own span, as the value found, still ends at the death).
    let mut first_seen: HashMap<(usize, usize), u64> = HashMap::new();
    for read in ops.iter().filter(|o| o.kind.is_read() && o.ok) {
        let Some(re) = read.end else { continue };
        for (&k, found) in read.keys.iter().zip(&read.found) {
            let Some(wi) = found.as_deref().and_then(|v| identify(v, k, ops, &by_id)) else {
                continue;
            };
            if ops[wi].end.is_none() {
                let seen = first_seen.entry((wi, k)).or_insert(re);
                *seen = (*seen).min(re);
            }
        }
    }
    report.killed_writes_seen = first_seen.len() as u64;
    for (&(wi, k), &seen) in &first_seen {
        let w = as_write[wi].expect("identify finds sets only");
        writes[k].push(KeyWrite {
            end: seen.max(w.start),
            completed: true,
            ..w
        });
    }
    // Per key, the completed writes by end time, with the latest start among those ending
    // at or before each: a read beginning at `rs` finds by binary search the latest start
    // `s*` of a write completed before it; a write ending before `s*` is replaced.
    let completed: Vec<(Vec<u64>, Vec<u64>)> = writes
        .iter()
        .map(|ws| {
            let mut c: Vec<&KeyWrite> = ws.iter().filter(|w| w.completed).collect();
            c.sort_by_key(|w| w.end);
            let mut max_start = 0;
            let starts = c
                .iter()
                .map(|w| {
                    max_start = max_start.max(w.start);
                    max_start
                })
                .collect();
            (c.iter().map(|w| w.end).collect(), starts)
        })
        .collect();
    for read in ops.iter().filter(|o| o.kind.is_read() && o.ok) {
        let Some(re) = read.end else { continue };
        for (&k, found) in read.keys.iter().zip(&read.found) {
            let Some(v) = found else {
                report.misses += 1;
                continue;
            };
            report.hits_checked += 1;
            let (ends, starts) = &completed[k];
            let n = ends.partition_point(|&e| e < read.start);
            let latest_start = if n == 0 { 0 } else { starts[n - 1] };
            let writer = identify(v, k, ops, &by_id);
            let verdict = match writer {
                None => Err("no write stored this value".to_string()),
                Some(wi) => {
                    let w = as_write[wi].expect("identify finds sets only");
                    if w.start >= re {
                        Err("the write began after the read returned".to_string())
                    } else if w.end < latest_start {
                        Err(format!(
                            "replaced: a write of the key started {} ns after this one \
                             ended and returned before the read began",
                            latest_start - w.end
                        ))
                    } else {
                        Ok(())
                    }
                }
            };
            if let Err(why) = verdict {
                // The first ones with their history excerpt (each a scan of the key's writes).
                let described = report.violations.len() < DESCRIBED;
                report.violations.push(Violation {
                    read_start: read.start,
                    text: if !described {
                        why
                    } else {
                        describe(
                            read,
                            k,
                            v,
                            &why,
                            ops,
                            &writes[k],
                            writer.and_then(|wi| as_write[wi]),
                        )
                    },
                });
            }
        }
    }
    report
}

/// The set or set_many that wrote the value logged as `v` to key `k`.
fn identify(
    v: &str,
    k: usize,
    ops: &[Op],
    by_id: &HashMap<(u32, u32, u64), usize>,
) -> Option<usize> {
    if v.starts_with('?') {
        return None; // not the bytes its write stored (logged_form)
    }
    let (w, t, s, key) = parse_head(v)?;
    let i = *by_id.get(&(w, t, s))?;
    let op = &ops[i];
    let wrote = matches!(op.kind, Kind::Set | Kind::SetMany) && op.keys.contains(&k);
    (wrote && key == k).then_some(i)
}

/// A violation with its history excerpt: the read, and the writes of the key around it.
fn describe(
    read: &Op,
    k: usize,
    v: &str,
    why: &str,
    ops: &[Op],
    writes: &[KeyWrite],
    writer: Option<KeyWrite>,
) -> String {
    let head = v.split('|').next().unwrap_or("");
    let mut s = format!(
        "read {} by {}.{} #{} of key {k} [{} .. {}] found {head}: {why}\n",
        read.kind.name(),
        read.worker,
        read.thread,
        read.seq,
        read.start,
        read.end.unwrap_or(0)
    );
    // From the write that stored the value to the read: the writes that replaced it.
    let from = writer.map_or(read.start.saturating_sub(100_000_000), |w| w.start);
    let near = |w: &&KeyWrite| w.end >= from && w.start <= read.end.unwrap_or(u64::MAX);
    let mut shown: Vec<&KeyWrite> = writes.iter().filter(near).collect();
    shown.sort_by_key(|w| w.start);
    // The first few and the last few: the stored write and the latest replacements.
    let skip = shown.len().saturating_sub(12);
    for (i, w) in shown.iter().enumerate() {
        if (4..4 + skip).contains(&i) {
            if i == 4 {
                let _ = writeln!(s, "  ... {skip} more writes");
            }
            continue;
        }
        let op = &ops[w.op];
        let _ = writeln!(
            s,
            "  {} by {}.{} #{} [{} .. {}]{}{}",
            op.kind.name(),
            op.worker,
            op.thread,
            op.seq,
            op.start,
            w.end,
            if op.end.is_none() { " (killed)" } else { "" },
            if op.end.is_some() && !op.ok {
                " (error)"
            } else {
                ""
            },
        );
    }
    s
}

#[cfg(test)]
mod checker_tests {
    use super::*;

    fn op(thread: u32, seq: u64, kind: Kind, key: usize, span: (u64, Option<u64>)) -> Op {
        Op {
            worker: 1,
            thread,
            seq,
            kind,
            keys: if kind == Kind::Clear {
                Vec::new()
            } else {
                vec![key]
            },
            start: span.0,
            end: span.1,
            ok: true,
            found: Vec::new(),
        }
    }

    fn read(thread: u32, seq: u64, span: (u64, u64), found: Option<String>) -> Op {
        let mut r = op(thread, seq, Kind::Get, 0, (span.0, Some(span.1)));
        r.found = vec![found.map(|v| logged_form(v.as_bytes()))];
        r
    }

    fn violations(ops: &[Op]) -> usize {
        check(ops, &HashMap::from([(1, 1_000)])).violations.len()
    }

    #[test]
    fn a_value_replaced_before_the_read_began_is_a_violation() {
        let ops = [
            op(0, 1, Kind::Set, 0, (10, Some(20))),
            op(0, 2, Kind::Set, 0, (30, Some(40))),
            read(1, 1, (50, 60), Some(value_for(1, 0, 1, 0))),
        ];
        assert_eq!(violations(&ops), 1);
    }

    #[test]
    fn a_value_deleted_or_cleared_before_the_read_began_is_a_violation() {
        for kind in [Kind::Delete, Kind::Clear] {
            let ops = [
                op(0, 1, Kind::Set, 0, (10, Some(20))),
                op(0, 2, kind, 0, (30, Some(40))),
                read(1, 1, (50, 60), Some(value_for(1, 0, 1, 0))),
            ];
            assert_eq!(violations(&ops), 1, "{kind:?}");
        }
    }

    #[test]
    fn a_replacement_still_in_flight_or_overlapping_leaves_the_old_value_readable() {
        // The delete returns after the read began.
        let in_flight = [
            op(0, 1, Kind::Set, 0, (10, Some(20))),
            op(0, 2, Kind::Delete, 0, (30, Some(55))),
            read(1, 1, (50, 60), Some(value_for(1, 0, 1, 0))),
        ];
        assert_eq!(violations(&in_flight), 0);
        // Two sets overlapping each other: either may be the one left.
        let overlapping = [
            op(0, 1, Kind::Set, 0, (10, Some(30))),
            op(2, 1, Kind::Set, 0, (20, Some(40))),
            read(1, 1, (50, 60), Some(value_for(1, 0, 1, 0))),
        ];
        assert_eq!(violations(&overlapping), 0);
    }

    #[test]
    fn a_killed_write_may_have_happened_until_a_later_write_returns() {
        // Worker 1 dies at 1,000 during the set of seq 2 (no end).
        let before_rewrite = [
            op(0, 1, Kind::Set, 0, (10, Some(20))),
            op(0, 2, Kind::Set, 0, (30, None)),
            read(1, 1, (2_000, 2_010), Some(value_for(1, 0, 1, 0))),
            read(1, 2, (2_020, 2_030), Some(value_for(1, 0, 2, 0))),
        ];
        assert_eq!(violations(&before_rewrite), 0);
        let after_rewrite = [
            op(0, 2, Kind::Set, 0, (30, None)),
            op(2, 1, Kind::Delete, 0, (1_500, Some(1_600))),
            read(1, 1, (2_000, 2_010), Some(value_for(1, 0, 2, 0))),
        ];
        assert_eq!(violations(&after_rewrite), 1);
    }

    #[test]
    fn once_a_read_saw_a_killed_write_what_it_replaced_never_comes_back() {
        let ops = [
            op(0, 1, Kind::Set, 0, (10, Some(20))),
            op(0, 2, Kind::Set, 0, (30, None)),
            read(1, 1, (2_000, 2_010), Some(value_for(1, 0, 2, 0))),
            // Overlapping the first read that saw it: still allowed.
            read(2, 1, (2_005, 2_015), Some(value_for(1, 0, 1, 0))),
            // Begun after it: the older value came back.
            read(1, 2, (2_020, 2_030), Some(value_for(1, 0, 1, 0))),
        ];
        assert_eq!(violations(&ops), 1);
    }

    #[test]
    fn a_value_no_write_stored_or_not_yet_begun_is_a_violation() {
        let ops = [
            op(0, 1, Kind::Set, 0, (100, Some(120))),
            read(1, 1, (50, 60), Some(value_for(1, 0, 1, 0))),
            read(1, 2, (130, 140), Some(value_for(1, 0, 1, 0) + "x")),
            read(1, 3, (130, 140), Some(value_for(1, 0, 9, 0))),
        ];
        assert_eq!(violations(&ops), 3);
    }
}

//! The one module that calls hiredis (through hiredis-sys): a safe, blocking connection.
//!
//! Every other part of the tier sees [`Conn`], [`Reply`] and [`ConnError`] only. The socket
//! I/O is ours ([`super::transport`]: plain TCP, unix socket, or TLS through rustls); hiredis
//! 0.13 only parses replies (its `redisReader`), and commands are formatted here (RESP). What
//! this module guarantees:
//! - **A deadline per exchange**, not per syscall. Before every blocking syscall (each step of
//!   the transport blocks at most once, TLS included) we shorten the socket timeout to what is
//!   left of the caller's deadline (only when it differs by more than `SLACK`, so the usual
//!   one-write-one-read GET costs no extra syscall). A server that trickles bytes cannot
//!   stretch a call.
//! - **No SIGPIPE.** Every write is send(2) with MSG_NOSIGNAL: a peer that closed the socket
//!   gives EPIPE, not a signal whose default action kills the host process. Neither the
//!   thread's mask nor the process-wide disposition is touched.
//! - **Bounded replies.** hiredis 0.13 buffers a bulk string until all of its announced length
//!   has arrived (`$999999999999` then a stream of bytes grows the buffer without end), callocs
//!   an array header's element vector up front (`*100000000` = 800 MB), and nests up to seven
//!   levels. A hostile or broken server could so make one call hold gigabytes. Each reply is
//!   held to a budget (see [`ReplyBudget`]): every reply object hiredis builds is charged to it
//!   through our reply-function table, whose hooks refuse a string longer than the largest
//!   value plus its frame, an array longer than `MAX_ARRAY_LEN` or nested deeper than
//!   `MAX_DEPTH`, and anything past the budget; and the bytes waiting in the reader's buffer
//!   are checked against what is left of it after every read. A refusal is a protocol error:
//!   the connection is dropped and the call counted as an error. A connection thus holds at
//!   most about max_value_size + 1 MiB for a one-value reply (n values for an MGET of n keys).
//! - Binary-safe commands (argv + lengths), pipelining (append, then flush and read), and
//!   replies copied into an owned [`Reply`] so no hiredis memory escapes this module.
//!
//! Any failure other than a Redis error reply leaves the connection unusable (the reply stream
//! is out of step or the socket is dead); callers drop it.

use super::tls::TlsTarget;
use super::transport::{self, Transport};
use hiredis_sys as ffi;
use libc::{c_char, c_int, c_void, size_t};
use once_cell::sync::OnceCell;
use std::cell::Cell;
use std::ffi::CStr;
use std::fmt;
use std::path::PathBuf;
use std::ptr::{self, NonNull};
use std::time::{Duration, Instant};

/// How far the socket timeout may exceed the time left before we pay a setsockopt to shorten
/// it: bounds how late past its deadline a call can return.
const SLACK: Duration = Duration::from_millis(2);

/// Largest array reply accepted (MGET of this many keys, a SCAN batch is 500). Larger headers
/// are refused as protocol errors before hiredis allocates anything for them.
pub(crate) const MAX_ARRAY_LEN: usize = 1 << 20;

/// Deepest array nesting accepted: 0 is a top-level array; a cluster's `CLUSTER SLOTS`,
/// `[[start, end, [ip, port, id, [metadata]]]]`, is the deepest reply any of our commands
/// gets (SCAN's `[cursor, [keys]]` is 1). Every level is still charged to the reply's budget.
pub(crate) const MAX_DEPTH: usize = 3;

/// Deepest nesting any caller may allow (see `Conn::expect_nesting`); hiredis 0.13 itself
/// stops at seven levels.
const MAX_NESTING: usize = 2;

/// What a frame may add to a value on top of max_value_size (header, MAC, an incompressible
/// value's LZ4 framing), with room to spare.
pub(crate) const FRAME_SLACK: usize = 64 << 10;

/// Longest line accepted (status, error, integer, or a header): hiredis rescans an incomplete
/// line from its start on every read, so an endless one would cost quadratic time long before
/// it reached the byte budget. Redis's own lines are far shorter.
pub(crate) const MAX_LINE: usize = 64 << 10;

/// A reply may hold, besides its values, this much for everything else (array slots, nodes,
/// status lines, keys of a SCAN batch are budgeted separately).
pub(crate) const REPLY_OVERHEAD: usize = 1 << 20;

/// Bytes charged per reply object, on top of its string or slots: hiredis's redisReply (48)
/// and the allocator's header.
const NODE_BYTES: usize = 64;

/// The default max_value_size (16 MiB), for a connection nobody told otherwise.
const DEFAULT_MAX_STRING: usize = (16 << 20) + FRAME_SLACK;

/// The bytes a reply may still take, charged by the reply hooks while hiredis builds it.
/// Thread-local because hiredis gives the hooks no context we own; a reply is read start to
/// finish on one thread inside [`Conn::read_reply`], which installs the budget first.
#[derive(Debug, Clone, Copy)]
struct ReplyBudget {
    /// Bytes left for the reply's objects.
    left: usize,
    /// Longest single string.
    max_string: usize,
    /// Deepest array nesting accepted (0 = a top-level array).
    max_depth: usize,
    /// Why the hooks refused, for the error message.
    refused: Option<Refusal>,
}

#[derive(Debug, Clone, Copy)]
enum Refusal {
    String(usize),
    Array(i64),
    Depth,
    Budget,
    Line,
}

thread_local! {
    static BUDGET: Cell<ReplyBudget> = const {
        Cell::new(ReplyBudget {
            left: usize::MAX,
            max_string: usize::MAX,
            max_depth: MAX_DEPTH,
            refused: None,
        })
    };
}

/// hiredis's own reply functions, captured from its default table the first time we connect.
static DEFAULT_FUNCTIONS: OnceCell<ffi::redisReplyObjectFunctions> = OnceCell::new();
/// The reply functions every context's reader uses: hiredis's, each wrapped to charge the
/// budget first. Shared read-only (hiredis never writes through `reader->fn`).
static BOUNDED_FUNCTIONS: OnceCell<ffi::redisReplyObjectFunctions> = OnceCell::new();

/// Charges `bytes` to this thread's budget, or records `refusal` and returns false. Never
/// unwinds (called from C): a thread-local being destroyed refuses.
fn charge(bytes: usize, refusal: Option<Refusal>) -> bool {
    BUDGET
        .try_with(|b| {
            let mut budget = b.get();
            let refused = refusal.or((bytes > budget.left).then_some(Refusal::Budget));
            match refused {
                Some(r) => budget.refused = Some(r),
                None => budget.left -= bytes,
            }
            b.set(budget);
            refused.is_none()
        })
        .unwrap_or(false)
}

/// How many arrays enclose the object `task` describes (0 for a top-level reply).
///
/// # Safety
/// `task` is a task of hiredis's reader stack: its `parent` chain ends in NULL within the
/// reader's nine-entry stack.
unsafe fn depth(task: *const ffi::redisReadTask) -> usize {
    let mut n = 0;
    // SAFETY: per the contract, each parent is a live task of the same stack or NULL.
    let mut p = unsafe { (*task).parent };
    while !p.is_null() && n <= 9 {
        n += 1;
        // SAFETY: as above.
        p = unsafe { (*p).parent };
    }
    n
}

// The hooks below are only ever called by hiredis's reader, with its own task pointer and (for
// strings) a buffer of `len` bytes, both passed through untouched to hiredis's default. They
// must not unwind into C. Returning NULL makes the reader stop with an error.

extern "C" fn create_string_bounded(
    task: *const ffi::redisReadTask,
    s: *mut c_char,
    len: size_t,
) -> *mut c_void {
    let too_long = BUDGET
        .try_with(|b| len > b.get().max_string)
        .unwrap_or(true);
    let ok = charge(
        len.saturating_add(NODE_BYTES),
        too_long.then_some(Refusal::String(len)),
    );
    match DEFAULT_FUNCTIONS.get().and_then(|d| d.createString) {
        Some(default) if ok => default(task, s, len),
        _ => ptr::null_mut(),
    }
}

extern "C" fn create_array_bounded(
    task: *const ffi::redisReadTask,
    elements: c_int,
) -> *mut c_void {
    let max_depth = BUDGET.try_with(|b| b.get().max_depth).unwrap_or(0);
    // SAFETY: hiredis passes a task of its reader stack (see `depth`).
    let refusal = if unsafe { depth(task) } > max_depth {
        Some(Refusal::Depth)
    } else if !usize::try_from(elements).is_ok_and(|n| n <= MAX_ARRAY_LEN) {
        Some(Refusal::Array(i64::from(elements)))
    } else {
        None
    };
    let slots = usize::try_from(elements).unwrap_or(0);
    let ok = charge(slots * 8 + NODE_BYTES, refusal);
    match DEFAULT_FUNCTIONS.get().and_then(|d| d.createArray) {
        Some(default) if ok => default(task, elements),
        _ => ptr::null_mut(),
    }
}

extern "C" fn create_integer_bounded(
    task: *const ffi::redisReadTask,
    value: libc::c_longlong,
) -> *mut c_void {
    match DEFAULT_FUNCTIONS.get().and_then(|d| d.createInteger) {
        Some(default) if charge(NODE_BYTES, None) => default(task, value),
        _ => ptr::null_mut(),
    }
}

extern "C" fn create_nil_bounded(task: *const ffi::redisReadTask) -> *mut c_void {
    match DEFAULT_FUNCTIONS.get().and_then(|d| d.createNil) {
        Some(default) if charge(NODE_BYTES, None) => default(task),
        _ => ptr::null_mut(),
    }
}

/// Where a Redis server listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    Tcp { host: String, port: u16 },
    Unix { path: PathBuf },
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Tcp { host, port } if host.contains(':') => write!(f, "[{host}]:{port}"),
            Endpoint::Tcp { host, port } => write!(f, "{host}:{port}"),
            Endpoint::Unix { path } => write!(f, "{}", path.display()),
        }
    }
}

/// A reply, owned (copied out of hiredis).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Nil,
    Status(Vec<u8>),
    /// An error reply (`-ERR ...`): Redis answered; the connection is still in step.
    Error(String),
    Integer(i64),
    Bulk(Vec<u8>),
    Array(Vec<Reply>),
}

/// Why an exchange failed; each kind except `PoolBusy` leaves the connection broken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnErrorKind {
    /// Could not open the connection (refused, unreachable, no such socket).
    Connect,
    /// The deadline passed before the server answered.
    Timeout,
    /// The server closed the connection (EOF, EPIPE, reset).
    Closed,
    /// The bytes received are not RESP.
    Protocol,
    /// Any other I/O failure.
    Io,
    /// Every pooled connection stayed busy until the deadline (no socket was touched).
    PoolBusy,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnError {
    pub kind: ConnErrorKind,
    pub message: String,
}

impl fmt::Display for ConnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// One blocking connection: our socket (see [`transport`]), hiredis's reply reader.
pub struct Conn {
    transport: Transport,
    /// hiredis's reply parser, fed with what the transport reads.
    reader: NonNull<ffi::redisReader>,
    /// Commands formatted (RESP) and not yet written.
    obuf: Vec<u8>,
    /// Where reads land before the reader copies them; kept to spare a 16 KiB memset a read.
    ibuf: Box<[u8]>,
    peer: String,
    /// The configured per-call timeout (used in messages).
    timeout: Duration,
    /// What SO_RCVTIMEO/SO_SNDTIMEO are set to right now.
    sock_timeout: Duration,
    /// Commands appended whose replies have not been read.
    pending: usize,
    broken: bool,
    /// Longest string a reply may carry: max_value_size plus FRAME_SLACK.
    max_string: usize,
    /// The budget of the next reply read (see `expect_values`); reset to one value after it.
    next_budget: usize,
    /// Array nesting the next reply may have (see `expect_nesting`); reset after it.
    next_depth: usize,
}

// SAFETY: a Conn owns its redisReader exclusively (it is never aliased or shared) and the
// reader keeps no thread-local state (the budget is installed by the thread reading, for the
// duration of the read), so moving it to another thread is sound. It is not Sync: every
// method takes &mut self.
unsafe impl Send for Conn {}

impl Drop for Conn {
    fn drop(&mut self) {
        // SAFETY: reader came from redisReaderCreate, is owned by this Conn alone, and is
        // freed exactly once here. The socket closes when `transport` drops; nothing is
        // written, so no SIGPIPE either.
        unsafe { ffi::redisReaderFree(self.reader.as_ptr()) }
    }
}

/// Size of one read from the socket (hiredis read 16 KiB at a time too; a TLS record holds
/// at most 16 KiB of plaintext).
const READ_CHUNK: usize = 16 * 1024;

/// An output buffer grown past this (a large SET) is given back after the write.
const OBUF_KEEP: usize = 64 * 1024;

impl std::os::fd::AsRawFd for Conn {
    /// The socket, for waiting until it is readable (never for reading or writing past
    /// `receive`).
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.transport.raw_fd()
    }
}

fn ms(d: Duration) -> u128 {
    d.as_millis()
}

/// A reader whose reply functions charge the budget (see [`ReplyBudget`]).
fn bounded_reader() -> Option<NonNull<ffi::redisReader>> {
    // SAFETY: redisReaderCreate returns NULL (out of memory) or a reader we now own, with
    // `fns` pointing at hiredis's static default function table. We copy that table once (it
    // is immutable) and point this reader at our own 'static copy, which outlives every
    // reader; the reader only ever reads through the pointer.
    unsafe {
        let reader = NonNull::new(ffi::redisReaderCreate())?;
        let r = reader.as_ptr();
        if (*r).fns.is_null() {
            ffi::redisReaderFree(r);
            return None;
        }
        let table = BOUNDED_FUNCTIONS.get_or_init(|| {
            let d = &*(*r).fns;
            let _ = DEFAULT_FUNCTIONS.set(ffi::redisReplyObjectFunctions {
                createString: d.createString,
                createArray: d.createArray,
                createInteger: d.createInteger,
                createNil: d.createNil,
                freeObject: d.freeObject,
            });
            ffi::redisReplyObjectFunctions {
                createString: Some(create_string_bounded),
                createArray: Some(create_array_bounded),
                createInteger: Some(create_integer_bounded),
                createNil: Some(create_nil_bounded),
                freeObject: d.freeObject,
            }
        });
        (*r).fns = table as *const ffi::redisReplyObjectFunctions as *mut _;
        Some(reader)
    }
}

/// Appends `args` as one RESP command (`*N`, then `$len` and the bytes of each argument).
fn format_command(out: &mut Vec<u8>, args: &[&[u8]]) {
    fn header(out: &mut Vec<u8>, kind: u8, n: usize) {
        out.push(kind);
        let mut digits = [0u8; 20];
        let mut i = digits.len();
        let mut n = n;
        loop {
            i -= 1;
            digits[i] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        out.extend_from_slice(&digits[i..]);
        out.extend_from_slice(b"\r\n");
    }
    out.reserve(16 + args.iter().map(|a| a.len() + 16).sum::<usize>());
    header(out, b'*', args.len());
    for a in args {
        header(out, b'$', a.len());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
}

impl Conn {
    /// Connects in plain text (TCP or unix socket); see [`Conn::connect_tls`].
    pub fn connect(
        ep: &Endpoint,
        peer: String,
        timeout: Duration,
        deadline: Instant,
    ) -> Result<Conn, ConnError> {
        Conn::connect_tls(ep, peer, timeout, deadline, None)
    }

    /// Connects (and with `tls`, completes the TLS handshake), sets the command timeout and
    /// TCP keepalive, all before `deadline`. `peer` names the server in messages. A TCP host
    /// should be an IP address: a name would be looked up by the system, which no timeout
    /// bounds (see [`super::resolve`]).
    pub fn connect_tls(
        ep: &Endpoint,
        peer: String,
        timeout: Duration,
        deadline: Instant,
        tls: Option<&TlsTarget>,
    ) -> Result<Conn, ConnError> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(ConnError {
                kind: ConnErrorKind::Timeout,
                message: format!(
                    "no reply in {} ms from {peer} (the time ran out before connecting)",
                    ms(timeout)
                ),
            });
        }
        let sock = transport::connect(ep, left).map_err(|e| {
            let timed_out = matches!(
                e.kind(),
                std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
            ) || Instant::now() >= deadline;
            ConnError {
                kind: if timed_out {
                    ConnErrorKind::Timeout
                } else {
                    ConnErrorKind::Connect
                },
                message: format!("cannot connect to {peer} in {} ms: {e}", ms(timeout)),
            }
        })?;
        let transport = match tls {
            None => Transport::Plain(sock),
            Some(t) => {
                let session = t.tls.session(t.name.clone()).map_err(|e| ConnError {
                    kind: ConnErrorKind::Connect,
                    message: format!("cannot connect to {peer}: TLS: {e}"),
                })?;
                Transport::tls(sock, session)
            }
        };
        let reader = bounded_reader().ok_or_else(|| ConnError {
            kind: ConnErrorKind::Connect,
            message: format!("cannot connect to {peer}: out of memory"),
        })?;
        // From here on, Drop frees the reader and closes the socket on every early return.
        let mut conn = Conn {
            transport,
            reader,
            obuf: Vec::new(),
            ibuf: vec![0u8; READ_CHUNK].into_boxed_slice(),
            peer,
            timeout,
            sock_timeout: Duration::ZERO,
            pending: 0,
            broken: false,
            max_string: DEFAULT_MAX_STRING,
            next_budget: DEFAULT_MAX_STRING + REPLY_OVERHEAD,
            next_depth: MAX_DEPTH,
        };
        conn.set_socket_timeout(timeout)?;
        if let Err(mut e) = conn.handshake(deadline) {
            if tls.is_some() && e.kind == ConnErrorKind::Timeout {
                // A plain server on this port waits for a line that never comes.
                e.message
                    .push_str(" during the TLS handshake (is it a TLS port?)");
            }
            return Err(e);
        }
        Ok(conn)
    }

    /// Drives the TLS handshake to its end (nothing to do in plain text), each step armed.
    fn handshake(&mut self, deadline: Instant) -> Result<(), ConnError> {
        loop {
            self.arm(deadline)?;
            match self.transport.handshake_step() {
                Ok(true) => return Ok(()),
                Ok(false) => {}
                Err(e) if transport::is_tls_failure(&e) => {
                    let msg = format!("cannot connect to {}: TLS handshake: {e}", self.peer);
                    return Err(self.fail(ConnErrorKind::Connect, msg));
                }
                Err(e) => {
                    let mut err = self.io_failure(e, deadline, "TLS handshake");
                    if err.kind != ConnErrorKind::Timeout {
                        err.kind = ConnErrorKind::Connect;
                        err.message = format!("cannot connect to {}", err.message);
                    }
                    return Err(err);
                }
            }
        }
    }

    /// The `host:port` or socket path, for messages.
    pub fn peer(&self) -> &str {
        &self.peer
    }

    /// True once an exchange failed: the connection must not be reused.
    pub fn is_broken(&self) -> bool {
        self.broken
    }

    /// Sets the largest value a reply may carry (the cache's max_value_size; frames may add
    /// FRAME_SLACK). Replies are budgeted from it (see `expect_values`).
    pub fn set_max_value_size(&mut self, max_value_size: usize) {
        self.max_string = max_value_size.saturating_add(FRAME_SLACK);
        self.next_budget = self.one_value_budget();
    }

    fn one_value_budget(&self) -> usize {
        self.max_string.saturating_add(REPLY_OVERHEAD)
    }

    /// The next reply read may carry `n` values (an MGET of n keys) instead of one.
    pub fn expect_values(&mut self, n: usize) {
        self.next_budget = self
            .max_string
            .saturating_add(NODE_BYTES)
            .saturating_mul(n.max(1))
            .saturating_add(REPLY_OVERHEAD);
    }

    /// The next reply read is a batch of keys of up to `each` bytes (a SCAN batch): it gets the
    /// budget of one value, about max_value_size + 1 MiB, so a hostile server cannot make a
    /// SCAN hold more than a GET could. Returns how many keys to ask for (SCAN's COUNT, at most
    /// `most`) so that twice that many (COUNT is a hint; a batch may run past it) fit.
    pub fn expect_keys(&mut self, most: usize, each: usize) -> usize {
        self.next_budget = self.one_value_budget();
        let per_key = each.saturating_add(NODE_BYTES);
        (self.next_budget / per_key / 2).clamp(1, most)
    }

    /// The next reply may nest arrays `levels` deep (ROLE's list of replicas is `[role,
    /// offset, [[ip, port, offset], ...]]`: 2) instead of MAX_DEPTH.
    pub fn expect_nesting(&mut self, levels: usize) {
        self.next_depth = levels.min(MAX_NESTING);
    }

    /// Marks the connection unusable (the caller saw a reply it cannot trust).
    pub fn mark_broken(&mut self) {
        self.broken = true;
    }

    /// Sends one command and reads its reply before `deadline`.
    pub fn command(&mut self, args: &[&[u8]], deadline: Instant) -> Result<Reply, ConnError> {
        self.append(args)?;
        self.flush(deadline)?;
        self.read_reply(deadline)
    }

    /// Sends every appended command and reads all their replies, in order, before `deadline`.
    pub fn finish(&mut self, deadline: Instant) -> Result<Vec<Reply>, ConnError> {
        self.flush(deadline)?;
        let n = self.pending;
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            out.push(self.read_reply(deadline)?);
        }
        Ok(out)
    }

    /// Reads one reply the server sends unasked (a pub/sub message, see
    /// `super::invalidation`) or one still owed to a command, waiting no later than
    /// `deadline`. A connection that only listens should first wait for its descriptor to be
    /// readable (`as_raw_fd`) unless `has_buffered_input`: a deadline passing here breaks the
    /// connection, as for any exchange.
    pub fn receive(&mut self, deadline: Instant) -> Result<Reply, ConnError> {
        if self.broken {
            return Err(self.fail(ConnErrorKind::Io, "connection already failed".into()));
        }
        self.read_reply(deadline)
    }

    /// True when bytes already read from the socket wait to be made into replies (in the
    /// reply reader, or decrypted or still to decrypt in the TLS session): `receive` then
    /// goes on without the descriptor becoming readable again.
    pub fn has_buffered_input(&mut self) -> bool {
        self.buffered() > 0 || self.transport.has_buffered_input()
    }

    /// Queues a command in the output buffer (nothing is sent yet).
    pub fn append(&mut self, args: &[&[u8]]) -> Result<(), ConnError> {
        if self.broken {
            return Err(self.fail(ConnErrorKind::Io, "connection already failed".into()));
        }
        format_command(&mut self.obuf, args);
        self.pending += 1;
        Ok(())
    }

    /// Writes the output buffer to the socket (with MSG_NOSIGNAL: never a SIGPIPE).
    fn flush(&mut self, deadline: Instant) -> Result<(), ConnError> {
        let mut written = 0;
        let obuf = std::mem::take(&mut self.obuf);
        let result = loop {
            if let Err(e) = self.arm(deadline) {
                break Err(e);
            }
            match self.transport.write_step(&obuf, &mut written) {
                Ok(true) => break Ok(()),
                Ok(false) => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => break Err(self.io_failure(e, deadline, "write")),
            }
        };
        // Keep the allocation for the next command unless a large value grew it.
        if obuf.capacity() <= OBUF_KEEP {
            self.obuf = obuf;
            self.obuf.clear();
        }
        result
    }

    /// Reads one reply, waiting no later than `deadline`, within this reply's budget.
    fn read_reply(&mut self, deadline: Instant) -> Result<Reply, ConnError> {
        let one = self.one_value_budget();
        let budget = std::mem::replace(&mut self.next_budget, one);
        let max_depth = std::mem::replace(&mut self.next_depth, MAX_DEPTH);
        BUDGET.with(|b| {
            b.set(ReplyBudget {
                left: budget,
                max_string: self.max_string,
                max_depth,
                refused: None,
            })
        });
        loop {
            let mut raw: *mut c_void = ptr::null_mut();
            // SAFETY: reader is live and owned; `raw` is a valid out-pointer. On success it is
            // NULL (no complete reply buffered yet) or a reply object we must free.
            let rc = unsafe { ffi::redisReaderGetReply(self.reader.as_ptr(), &mut raw) };
            if rc != ffi::REDIS_OK {
                let refused = BUDGET.with(|b| b.get().refused);
                let why = match refused {
                    Some(r) => self.refusal_message(r, budget),
                    None => self.reader_error(),
                };
                let msg = format!("protocol error from {}: {why}", self.peer);
                return Err(self.fail(ConnErrorKind::Protocol, msg));
            }
            if !raw.is_null() {
                // SAFETY: raw is a complete redisReply tree created by hiredis's reply functions
                // (ours only charge the budget and delegate to the defaults); convert only
                // reads it, and it is freed exactly once right after.
                let reply = unsafe { convert(raw as *const ffi::redisReply) };
                // SAFETY: see above; nothing refers to the tree after conversion.
                unsafe { ffi::freeReplyObject(raw) };
                self.pending = self.pending.saturating_sub(1);
                return reply.map_err(|why| {
                    let msg = format!("protocol error from {}: {why}", self.peer);
                    self.fail(ConnErrorKind::Protocol, msg)
                });
            }
            // What is buffered will become this reply's objects: refuse it before it outgrows
            // what is left of the budget (a bulk header announcing gigabytes, a status line
            // that never ends).
            let left = BUDGET.with(|b| b.get().left);
            let refused = if self.buffered() > left.saturating_add(FRAME_SLACK) {
                Some(Refusal::Budget)
            } else if self.overlong_line() {
                Some(Refusal::Line)
            } else {
                None
            };
            if let Some(r) = refused {
                let why = self.refusal_message(r, budget);
                let msg = format!("protocol error from {}: {why}", self.peer);
                return Err(self.fail(ConnErrorKind::Protocol, msg));
            }
            self.arm(deadline)?;
            match self.transport.read_step(&mut self.ibuf) {
                Ok(Some(0)) => {
                    let msg = format!("{} closed the connection (read: EOF)", self.peer);
                    return Err(self.fail(ConnErrorKind::Closed, msg));
                }
                Ok(Some(n)) => {
                    // SAFETY: reader is live and owned; ibuf holds n initialised bytes, which
                    // hiredis copies into its own buffer.
                    let rc = unsafe {
                        ffi::redisReaderFeed(
                            self.reader.as_ptr(),
                            self.ibuf.as_ptr().cast::<c_char>(),
                            n,
                        )
                    };
                    if rc != ffi::REDIS_OK {
                        let msg = format!("reading from {}: {}", self.peer, self.reader_error());
                        return Err(self.fail(ConnErrorKind::Io, msg));
                    }
                }
                Ok(None) => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.io_failure(e, deadline, "read")),
            }
        }
    }

    /// Bytes the reader holds that no reply object has been made from yet.
    fn buffered(&self) -> usize {
        // SAFETY: reader is live and owned; reading two integer fields.
        unsafe {
            let r = self.reader.as_ptr();
            (*r).len.saturating_sub((*r).pos)
        }
    }

    /// True when the unparsed bytes start with more than MAX_LINE bytes and no newline: the
    /// reader is stuck in a line (hiredis leaves an incomplete item, a bulk string's header
    /// included, unconsumed until it is whole, so a bulk waiting for its data starts with a
    /// short header line).
    fn overlong_line(&self) -> bool {
        if self.buffered() <= MAX_LINE {
            return false;
        }
        // SAFETY: the reader is live (see `buffered`); `buf` holds `len` initialised bytes
        // and pos <= len, and buffered() > MAX_LINE bytes lie past `pos`. The slice is only
        // read, and dropped before hiredis is called again.
        let head = unsafe {
            let reader = &*self.reader.as_ptr();
            std::slice::from_raw_parts(reader.buf.add(reader.pos) as *const u8, MAX_LINE + 1)
        };
        !head.contains(&b'\n')
    }

    fn refusal_message(&self, r: Refusal, budget: usize) -> String {
        match r {
            Refusal::Line => {
                format!("a line of more than {MAX_LINE} bytes refused (no Redis reply has one)")
            }
            Refusal::String(n) => format!(
                "a {n} byte string refused (longest accepted: {} bytes, max_value_size plus \
                 its frame)",
                self.max_string
            ),
            Refusal::Array(n) => {
                format!("array reply of {n} elements refused (limit {MAX_ARRAY_LEN})")
            }
            Refusal::Depth => format!(
                "arrays nested deeper than {} levels refused (none of our commands gets such \
                 a reply)",
                MAX_DEPTH + 1
            ),
            Refusal::Budget => format!(
                "reply larger than {budget} bytes refused (max_value_size plus its frame for \
                 each value asked for, plus {REPLY_OVERHEAD} bytes)"
            ),
        }
    }

    /// Checks the deadline and makes the next blocking syscall end by it.
    fn arm(&mut self, deadline: Instant) -> Result<(), ConnError> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            let msg = format!("no reply in {} ms from {}", ms(self.timeout), self.peer);
            return Err(self.fail(ConnErrorKind::Timeout, msg));
        }
        let want = left.min(self.timeout);
        let diff = if self.sock_timeout > want {
            self.sock_timeout - want
        } else {
            want - self.sock_timeout
        };
        if diff > SLACK {
            self.set_socket_timeout(want)?;
        }
        Ok(())
    }

    fn set_socket_timeout(&mut self, t: Duration) -> Result<(), ConnError> {
        // A zero timeout means "no timeout" to the kernel; never pass one.
        let t = t.max(Duration::from_millis(1));
        if let Err(e) = self.transport.set_timeout(t) {
            return Err(self.fail(
                ConnErrorKind::Io,
                format!("setsockopt on {}: {e}", self.peer),
            ));
        }
        self.sock_timeout = t;
        Ok(())
    }

    fn io_failure(&mut self, e: std::io::Error, deadline: Instant, op: &str) -> ConnError {
        use std::io::ErrorKind as K;
        let (kind, msg) = if transport::is_tls_failure(&e) {
            (
                ConnErrorKind::Protocol,
                format!("TLS error from {} ({op}): {e}", self.peer),
            )
        } else if matches!(
            e.kind(),
            K::BrokenPipe | K::ConnectionReset | K::ConnectionAborted | K::UnexpectedEof
        ) {
            (
                ConnErrorKind::Closed,
                format!("{} closed the connection ({op}: {e})", self.peer),
            )
        } else if matches!(e.kind(), K::WouldBlock | K::TimedOut) || Instant::now() >= deadline {
            (
                ConnErrorKind::Timeout,
                format!("no reply in {} ms from {}", ms(self.timeout), self.peer),
            )
        } else {
            (
                ConnErrorKind::Io,
                format!("{op} from {} failed: {e}", self.peer),
            )
        };
        self.fail(kind, msg)
    }

    fn fail(&mut self, kind: ConnErrorKind, message: String) -> ConnError {
        self.broken = true;
        ConnError { kind, message }
    }

    fn reader_error(&self) -> String {
        // SAFETY: reader is live; err is an int and errstr a NUL-terminated 128-byte array
        // that hiredis always terminates (zeroed at creation, written with a bounded copy).
        unsafe {
            let r = &*self.reader.as_ptr();
            if r.err == 0 {
                return "unknown reader error".into();
            }
            CStr::from_ptr(r.errstr.as_ptr())
                .to_string_lossy()
                .into_owned()
        }
    }
}

/// Copies a hiredis reply tree into an owned [`Reply`]; `Err` for a tree hiredis 0.13 builds
/// from malformed input (an array header like `*-5` yields `elements = (size_t)-5` with no
/// element vector, which must not be walked).
///
/// # Safety
/// `r` must point to a valid redisReply built by hiredis's default reply functions (strings of
/// `len` bytes; arrays whose non-NULL `element` holds `elements` valid children), alive for the
/// duration of the call.
unsafe fn convert(r: *const ffi::redisReply) -> Result<Reply, String> {
    // SAFETY: guaranteed by the caller (see the function's contract).
    let r = unsafe { &*r };
    let bytes = || {
        if r.len <= 0 || r.string.is_null() {
            Vec::new()
        } else {
            // SAFETY: hiredis allocates `len` bytes at `str` for string, status and error
            // replies.
            unsafe { std::slice::from_raw_parts(r.string as *const u8, r.len as usize) }.to_vec()
        }
    };
    Ok(match r.kind {
        ffi::REDIS_REPLY_STRING => Reply::Bulk(bytes()),
        ffi::REDIS_REPLY_STATUS => Reply::Status(bytes()),
        ffi::REDIS_REPLY_ERROR => Reply::Error(String::from_utf8_lossy(&bytes()).into_owned()),
        ffi::REDIS_REPLY_INTEGER => Reply::Integer(r.integer),
        ffi::REDIS_REPLY_ARRAY if r.elements == 0 => Reply::Array(Vec::new()),
        ffi::REDIS_REPLY_ARRAY if r.element.is_null() || r.elements > isize::MAX as usize => {
            return Err(format!("invalid array length {}", r.elements as isize));
        }
        ffi::REDIS_REPLY_ARRAY => {
            let mut items = Vec::with_capacity(r.elements.min(1 << 16));
            for i in 0..r.elements {
                // SAFETY: `element` is non-NULL and holds `elements` slots (caller's contract).
                let child = unsafe { *r.element.add(i) };
                if child.is_null() {
                    return Err("incomplete array".into());
                }
                // SAFETY: a non-NULL slot points to a valid child reply of the same tree.
                items.push(unsafe { convert(child) }?);
            }
            Reply::Array(items)
        }
        // REDIS_REPLY_NIL, and nothing else exists in hiredis 0.13.
        _ => Reply::Nil,
    })
}

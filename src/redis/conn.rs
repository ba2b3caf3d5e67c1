//! The one module that calls hiredis (through hiredis-sys): a safe, blocking connection.
//!
//! Every other part of the tier sees [`Conn`], [`Reply`] and [`ConnError`] only. What this
//! wrapper adds to hiredis 0.13:
//! - **A deadline per exchange**, not per syscall. hiredis applies its timeout to each `read`
//!   and `write` (SO_RCVTIMEO / SO_SNDTIMEO), so a server that trickles bytes could stretch a
//!   call indefinitely. Before every blocking syscall we shorten the socket timeout to what is
//!   left of the caller's deadline (only when it differs by more than `SLACK`, so the usual
//!   one-write-one-read GET costs no extra syscall).
//! - **No SIGPIPE.** hiredis writes with write(2); on a socket the peer closed that raises
//!   SIGPIPE, whose default action kills the host process. We block SIGPIPE on the calling
//!   thread around writes and consume the one we caused before restoring the thread's mask.
//!   The process-wide disposition is never touched.
//! - **Bounded array replies.** hiredis 0.13 callocs an array header's element vector up front
//!   (`*100000000` = 800 MB) and frees it by walking every slot; a garbage-speaking server could
//!   make one call allocate gigabytes and spend seconds freeing. Each context's reader gets a
//!   reply-function table whose createArray refuses more than `MAX_ARRAY_LEN` elements.
//! - Binary-safe commands (argv + lengths), pipelining (append, then flush and read), and
//!   replies copied into an owned [`Reply`] so no hiredis memory escapes this module.
//!
//! Any failure other than a Redis error reply leaves the connection unusable (the reply stream
//! is out of step or the socket is dead); callers drop it.

use hiredis_sys as ffi;
use libc::{c_char, c_int, c_void, size_t};
use once_cell::sync::OnceCell;
use std::cell::Cell;
use std::ffi::{CStr, CString};
use std::fmt;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::ptr::{self, NonNull};
use std::time::{Duration, Instant};

/// How far the socket timeout may exceed the time left before we pay a setsockopt to shorten
/// it: bounds how late past its deadline a call can return.
const SLACK: Duration = Duration::from_millis(2);

/// Largest array reply accepted (MGET of this many keys, a SCAN batch is 500). Larger headers
/// are refused as protocol errors before hiredis allocates anything for them.
pub(crate) const MAX_ARRAY_LEN: usize = 1 << 20;

type CreateArray = extern "C" fn(*const ffi::redisReadTask, c_int) -> *mut c_void;

/// hiredis's own createArray, captured from its default table the first time we connect.
static DEFAULT_CREATE_ARRAY: OnceCell<CreateArray> = OnceCell::new();
/// The default reply functions with createArray replaced by [`create_array_bounded`]; shared
/// read-only by every context (hiredis never writes through `reader->fn`).
static BOUNDED_FUNCTIONS: OnceCell<ffi::redisReplyObjectFunctions> = OnceCell::new();

thread_local! {
    /// The array length the hook just refused on this thread, for the error message.
    static REFUSED_ARRAY: Cell<Option<c_int>> = const { Cell::new(None) };
}

/// createArray for hiredis's reader: refuses absurd lengths (NULL makes the reader stop with an
/// error), otherwise delegates to hiredis's default. Only hiredis's reader calls it, with its
/// own task pointer, which is passed through untouched. It must not unwind into C, hence
/// `try_with` (a thread-local being destroyed is simply not recorded).
extern "C" fn create_array_bounded(
    task: *const ffi::redisReadTask,
    elements: c_int,
) -> *mut c_void {
    let ok = usize::try_from(elements).is_ok_and(|n| n <= MAX_ARRAY_LEN);
    match DEFAULT_CREATE_ARRAY.get() {
        Some(default) if ok => default(task, elements),
        _ => {
            let _ = REFUSED_ARRAY.try_with(|r| r.set(Some(elements)));
            ptr::null_mut()
        }
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

/// One blocking hiredis connection.
pub struct Conn {
    ctx: NonNull<ffi::redisContext>,
    peer: String,
    /// The configured per-call timeout (used in messages).
    timeout: Duration,
    /// What SO_RCVTIMEO/SO_SNDTIMEO are set to right now.
    sock_timeout: Duration,
    /// Commands appended whose replies have not been read.
    pending: usize,
    broken: bool,
}

// SAFETY: a Conn owns its redisContext exclusively (it is never aliased or shared) and hiredis
// keeps no thread-local state for a blocking context, so moving it to another thread is sound.
// It is not Sync: every method takes &mut self.
unsafe impl Send for Conn {}

impl Drop for Conn {
    fn drop(&mut self) {
        // SAFETY: ctx came from a successful redisConnect* call, is owned by this Conn alone,
        // and is freed exactly once here. redisFree only closes the fd and frees memory; it
        // does not write, so it cannot raise SIGPIPE.
        unsafe { ffi::redisFree(self.ctx.as_ptr()) }
    }
}

fn timeval(d: Duration) -> libc::timeval {
    // A zero timeval means "no timeout" to the kernel; never pass one.
    let d = d.max(Duration::from_micros(1000));
    libc::timeval {
        tv_sec: d.as_secs() as libc::time_t,
        tv_usec: d.subsec_micros() as libc::suseconds_t,
    }
}

fn ms(d: Duration) -> u128 {
    d.as_millis()
}

impl Conn {
    /// Connects, sets the command timeout (and TCP keepalive), all before `deadline`.
    /// `peer` names the server in messages. A TCP host should be an IP address: hiredis would
    /// look a name up with getaddrinfo, which no timeout bounds (see [`super::resolve`]).
    pub fn connect(
        ep: &Endpoint,
        peer: String,
        timeout: Duration,
        deadline: Instant,
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
        let connect_err = |peer: &str, why: &str| ConnError {
            kind: ConnErrorKind::Connect,
            message: format!("cannot connect to {peer}: {why}"),
        };
        let raw = match ep {
            Endpoint::Tcp { host, port } => {
                let host =
                    CString::new(host.as_bytes()).map_err(|_| connect_err(&peer, "NUL in host"))?;
                // SAFETY: host is a valid NUL-terminated string that outlives the call; hiredis
                // copies it. The result is NULL (out of memory) or a context we now own.
                unsafe {
                    ffi::redisConnectWithTimeout(host.as_ptr(), c_int::from(*port), timeval(left))
                }
            }
            Endpoint::Unix { path } => {
                let path = CString::new(path.as_os_str().as_bytes())
                    .map_err(|_| connect_err(&peer, "NUL in socket path"))?;
                // SAFETY: as above, for the path string.
                unsafe { ffi::redisConnectUnixWithTimeout(path.as_ptr(), timeval(left)) }
            }
        };
        let ctx = NonNull::new(raw).ok_or_else(|| connect_err(&peer, "out of memory"))?;
        // From here on, Drop frees the context on every early return.
        let mut conn = Conn {
            ctx,
            peer,
            timeout,
            sock_timeout: timeout,
            pending: 0,
            broken: false,
        };
        // SAFETY: ctx is a live context from redisConnect*, whose reader hiredis created
        // (NULL only if out of memory) with its default function table.
        unsafe { bound_reader((*conn.ctx.as_ptr()).reader) };
        if let Some(why) = conn.context_error() {
            let kind = if Instant::now() >= deadline {
                ConnErrorKind::Timeout
            } else {
                ConnErrorKind::Connect
            };
            return Err(ConnError {
                kind,
                message: format!(
                    "cannot connect to {} in {} ms: {why}",
                    conn.peer,
                    ms(timeout)
                ),
            });
        }
        conn.set_socket_timeout(timeout)?;
        if matches!(ep, Endpoint::Tcp { .. }) {
            // SAFETY: ctx is a live, connected context owned by conn.
            if unsafe { ffi::redisEnableKeepAlive(conn.ctx.as_ptr()) } != ffi::REDIS_OK {
                let why = conn.context_error().unwrap_or_default();
                return Err(connect_err(&conn.peer, &format!("keepalive: {why}")));
            }
        }
        Ok(conn)
    }

    /// The `host:port` or socket path, for messages.
    pub fn peer(&self) -> &str {
        &self.peer
    }

    /// True once an exchange failed: the connection must not be reused.
    pub fn is_broken(&self) -> bool {
        self.broken
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

    /// Queues a command in hiredis's output buffer (nothing is sent yet).
    pub fn append(&mut self, args: &[&[u8]]) -> Result<(), ConnError> {
        if self.broken {
            return Err(self.fail(ConnErrorKind::Io, "connection already failed".into()));
        }
        const INLINE: usize = 8;
        let mut ptrs_inline = [ptr::null::<c_char>(); INLINE];
        let mut lens_inline = [0 as size_t; INLINE];
        let (mut ptrs_heap, mut lens_heap);
        let (ptrs, lens): (&mut [*const c_char], &mut [size_t]) = if args.len() <= INLINE {
            (
                &mut ptrs_inline[..args.len()],
                &mut lens_inline[..args.len()],
            )
        } else {
            ptrs_heap = vec![ptr::null::<c_char>(); args.len()];
            lens_heap = vec![0 as size_t; args.len()];
            (&mut ptrs_heap[..], &mut lens_heap[..])
        };
        for (i, a) in args.iter().enumerate() {
            ptrs[i] = a.as_ptr().cast();
            lens[i] = a.len();
        }
        let argc = c_int::try_from(args.len())
            .map_err(|_| self.fail(ConnErrorKind::Io, "too many arguments".into()))?;
        // SAFETY: ctx is live and owned; ptrs/lens hold argc valid (pointer, length) pairs into
        // `args`, which outlive the call; hiredis copies the bytes into its output buffer and
        // reads argv as const despite the binding's *mut.
        let rc = unsafe {
            ffi::redisAppendCommandArgv(self.ctx.as_ptr(), argc, ptrs.as_mut_ptr(), lens.as_ptr())
        };
        if rc != ffi::REDIS_OK {
            let why = self.context_error().unwrap_or_default();
            return Err(self.fail(ConnErrorKind::Io, format!("cannot queue command: {why}")));
        }
        self.pending += 1;
        Ok(())
    }

    /// Writes hiredis's output buffer to the socket, with SIGPIPE blocked on this thread.
    fn flush(&mut self, deadline: Instant) -> Result<(), ConnError> {
        let mut guard = SigpipeGuard::block();
        loop {
            self.arm(deadline)?;
            let mut done: c_int = 0;
            // SAFETY: ctx is live and owned; `done` is a valid out-pointer for the call.
            let rc = unsafe { ffi::redisBufferWrite(self.ctx.as_ptr(), &mut done) };
            if rc != ffi::REDIS_OK {
                let errno = std::io::Error::last_os_error().raw_os_error();
                guard.write_failed = true;
                return Err(self.io_failure(errno, deadline, "write"));
            }
            if done != 0 {
                return Ok(());
            }
        }
    }

    /// Reads one reply, waiting no later than `deadline`.
    fn read_reply(&mut self, deadline: Instant) -> Result<Reply, ConnError> {
        loop {
            // SAFETY: ctx is live and owned, and its reader was set up by bound_reader.
            match unsafe { next_reply((*self.ctx.as_ptr()).reader) } {
                Ok(Some(reply)) => {
                    self.pending = self.pending.saturating_sub(1);
                    return Ok(reply);
                }
                Ok(None) => {}
                Err(why) => {
                    let msg = format!("protocol error from {}: {why}", self.peer);
                    return Err(self.fail(ConnErrorKind::Protocol, msg));
                }
            }
            self.arm(deadline)?;
            // SAFETY: ctx is live and owned; a blocking read bounded by SO_RCVTIMEO.
            if unsafe { ffi::redisBufferRead(self.ctx.as_ptr()) } != ffi::REDIS_OK {
                let errno = std::io::Error::last_os_error().raw_os_error();
                return Err(self.io_failure(errno, deadline, "read"));
            }
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
        // SAFETY: ctx is live and owned; redisSetTimeout only calls setsockopt on its fd.
        if unsafe { ffi::redisSetTimeout(self.ctx.as_ptr(), timeval(t)) } != ffi::REDIS_OK {
            let why = self.context_error().unwrap_or_default();
            return Err(self.fail(
                ConnErrorKind::Io,
                format!("setsockopt on {}: {why}", self.peer),
            ));
        }
        self.sock_timeout = t;
        Ok(())
    }

    fn io_failure(&mut self, errno: Option<i32>, deadline: Instant, op: &str) -> ConnError {
        // SAFETY: ctx is live; reading a plain int field.
        let err = unsafe { (*self.ctx.as_ptr()).err };
        let why = self.context_error().unwrap_or_default();
        let timed_out = matches!(errno, Some(libc::EAGAIN) | Some(libc::ETIMEDOUT))
            || Instant::now() >= deadline;
        let (kind, msg) = if err == ffi::REDIS_ERR_EOF
            || matches!(errno, Some(libc::EPIPE) | Some(libc::ECONNRESET))
        {
            (
                ConnErrorKind::Closed,
                format!("{} closed the connection ({op}: {why})", self.peer),
            )
        } else if err == ffi::REDIS_ERR_IO && timed_out {
            (
                ConnErrorKind::Timeout,
                format!("no reply in {} ms from {}", ms(self.timeout), self.peer),
            )
        } else {
            (
                ConnErrorKind::Io,
                format!("{op} from {} failed: {why}", self.peer),
            )
        };
        self.fail(kind, msg)
    }

    fn fail(&mut self, kind: ConnErrorKind, message: String) -> ConnError {
        self.broken = true;
        ConnError { kind, message }
    }

    fn context_error(&self) -> Option<String> {
        // SAFETY: ctx is live; err is an int and errstr a NUL-terminated 128-byte array that
        // hiredis always terminates (it is zeroed at creation and written with strncpy + NUL).
        unsafe {
            let c = &*self.ctx.as_ptr();
            (c.err != 0).then(|| {
                CStr::from_ptr(c.errstr.as_ptr())
                    .to_string_lossy()
                    .into_owned()
            })
        }
    }
}

/// Points a hiredis reader at our reply-function table (hiredis's defaults with createArray
/// bounded). The table is copied from the first reader's defaults once (it is immutable) into a
/// 'static that outlives every reader; hiredis only ever reads through the pointer.
///
/// # Safety
/// `reader` is NULL or a live reader that hiredis created with its default function table.
unsafe fn bound_reader(reader: *mut ffi::redisReader) {
    // SAFETY: per the contract; a NULL reader or table is left alone.
    unsafe {
        if reader.is_null() || (*reader).fns.is_null() {
            return;
        }
        let table = BOUNDED_FUNCTIONS.get_or_init(|| {
            let d = &*(*reader).fns;
            if let Some(f) = d.createArray {
                let _ = DEFAULT_CREATE_ARRAY.set(f);
            }
            ffi::redisReplyObjectFunctions {
                createString: d.createString,
                createArray: Some(create_array_bounded),
                createInteger: d.createInteger,
                createNil: d.createNil,
                freeObject: d.freeObject,
            }
        });
        (*reader).fns = table as *const ffi::redisReplyObjectFunctions as *mut _;
    }
}

/// Takes the next complete reply out of a reader's buffer: `Ok(None)` when the bytes so far
/// do not complete one, `Err` (the message for a protocol error) when they are not RESP or
/// describe a reply we refuse. After an `Err` the reader is unusable.
///
/// # Safety
/// `reader` is a live hiredis reader set up by [`bound_reader`], used by one thread.
unsafe fn next_reply(reader: *mut ffi::redisReader) -> Result<Option<Reply>, String> {
    let mut raw: *mut c_void = ptr::null_mut();
    // SAFETY: reader is live (contract); `raw` is a valid out-pointer. On success it is NULL
    // (no complete reply buffered yet) or a reply object we must free.
    if unsafe { ffi::redisReaderGetReply(reader, &mut raw) } != ffi::REDIS_OK {
        return Err(match REFUSED_ARRAY.try_with(Cell::take).ok().flatten() {
            Some(n) => format!("array reply of {n} elements refused (limit {MAX_ARRAY_LEN})"),
            // SAFETY: errstr is a 128-byte array that hiredis always NUL-terminates (it is set
            // to "" at creation and every message is truncated to 127 bytes plus NUL).
            None => unsafe { CStr::from_ptr((*reader).errstr.as_ptr()) }
                .to_string_lossy()
                .into_owned(),
        });
    }
    if raw.is_null() {
        return Ok(None);
    }
    // SAFETY: raw is a complete redisReply tree created by hiredis's reply functions (ours only
    // wraps createArray and delegates to the default); convert only reads it.
    let reply = unsafe { convert(raw as *const ffi::redisReply) };
    // SAFETY: see above; freed exactly once, and nothing refers to the tree after conversion.
    unsafe { ffi::freeReplyObject(raw) };
    reply.map(Some)
}

/// Parses `bytes` as the stream a server sends, with the reader set up exactly as a connection
/// sets up its own: every complete reply in order, then the protocol error that stopped the
/// reader, if any. For the fuzz targets (`crate::fuzzing`), which cannot open a socket per input.
pub(crate) fn parse_reply_stream(bytes: &[u8]) -> (Vec<Reply>, Option<String>) {
    // SAFETY: redisReaderCreate has no preconditions; it returns NULL or a reader we own.
    let Some(reader) = NonNull::new(unsafe { ffi::redisReaderCreate() }) else {
        return (Vec::new(), Some("out of memory".into()));
    };
    let reader = reader.as_ptr();
    let mut replies = Vec::new();
    // SAFETY: reader is live and owned by this function until redisReaderFree below; Feed
    // copies `bytes` (valid for bytes.len()) into the reader's own buffer.
    let error = unsafe {
        bound_reader(reader);
        if ffi::redisReaderFeed(reader, bytes.as_ptr().cast(), bytes.len()) != ffi::REDIS_OK {
            Some("feed failed".to_string())
        } else {
            loop {
                match next_reply(reader) {
                    Ok(Some(r)) => replies.push(r),
                    Ok(None) => break None,
                    Err(why) => break Some(why),
                }
            }
        }
    };
    // SAFETY: reader came from redisReaderCreate and is freed exactly once.
    unsafe { ffi::redisReaderFree(reader) };
    (replies, error)
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

/// Blocks SIGPIPE on this thread for its lifetime; on drop consumes a SIGPIPE our failed
/// write raised (unless one was already pending before, which belongs to the host) and
/// restores the thread's previous mask. The process-wide disposition is never changed.
struct SigpipeGuard {
    old: libc::sigset_t,
    /// The thread already blocked SIGPIPE: leave its mask alone.
    was_blocked: bool,
    /// A SIGPIPE was pending before we started: not ours to consume.
    was_pending: bool,
    write_failed: bool,
}

impl SigpipeGuard {
    fn block() -> SigpipeGuard {
        // SAFETY: sigset_t is plain data; sigemptyset/sigaddset/pthread_sigmask/sigpending/
        // sigismember only write into the sets we pass, which live on this stack frame.
        unsafe {
            let mut pipe: libc::sigset_t = std::mem::zeroed();
            let mut old: libc::sigset_t = std::mem::zeroed();
            let mut pending: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut pipe);
            libc::sigaddset(&mut pipe, libc::SIGPIPE);
            libc::pthread_sigmask(libc::SIG_BLOCK, &pipe, &mut old);
            let was_blocked = libc::sigismember(&old, libc::SIGPIPE) == 1;
            // A SIGPIPE can only be pending here if the thread already blocked it (an
            // unblocked one is delivered on the way out of the kernel), so the common case
            // skips the sigpending syscall.
            let was_pending = was_blocked && {
                libc::sigemptyset(&mut pending);
                libc::sigpending(&mut pending);
                libc::sigismember(&pending, libc::SIGPIPE) == 1
            };
            SigpipeGuard {
                old,
                was_blocked,
                was_pending,
                write_failed: false,
            }
        }
    }
}

impl Drop for SigpipeGuard {
    fn drop(&mut self) {
        // SAFETY: as in `block`: the sets and the zero timespec live on this stack frame.
        // sigtimedwait with a zero timeout never blocks; it returns EAGAIN when nothing is
        // pending. SIGPIPE is still blocked here, so a signal we raised is pending, not
        // delivered, until we take it.
        unsafe {
            if self.write_failed && !self.was_pending {
                let mut pipe: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&mut pipe);
                libc::sigaddset(&mut pipe, libc::SIGPIPE);
                let zero = libc::timespec {
                    tv_sec: 0,
                    tv_nsec: 0,
                };
                while libc::sigtimedwait(&pipe, ptr::null_mut(), &zero) == -1
                    && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR)
                {
                }
            }
            if !self.was_blocked {
                libc::pthread_sigmask(libc::SIG_SETMASK, &self.old, ptr::null_mut());
            }
        }
    }
}

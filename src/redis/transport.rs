//! The socket under a [`super::conn::Conn`]: plain TCP, a unix socket, or TLS over TCP.
//!
//! The library does its own socket I/O (hiredis only parses replies), so one place decides:
//! - **No SIGPIPE:** every write is `send(2)` with `MSG_NOSIGNAL`, TLS records included, so a
//!   peer that closed its end gives EPIPE, never a signal that would kill the host process.
//! - **One blocking syscall per step:** `write_step`, `read_step` and `handshake_step` each
//!   block at most once, so the caller can shorten the socket timeout to what is left of its
//!   deadline before every step (a TLS server that trickles bytes cannot stretch a call).
//! - TLS is a rustls client session driven by hand (`read_tls` / `write_tls`) for that reason,
//!   not a `StreamOwned`, which loops over many reads inside one call.

use super::conn::Endpoint;
use rustls::ClientConnection;
use socket2::{Domain, Protocol, SockAddr, Socket, TcpKeepalive, Type};
use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::time::Duration;

/// TCP keepalive as hiredis set it (redisEnableKeepAlive): first probe after 15 s idle, then
/// every 5 s, dead after 3 unanswered: a silently vanished server is noticed by an idle pool.
const KEEPALIVE: Duration = Duration::from_secs(15);

pub enum Transport {
    Plain(Socket),
    Tls(Box<TlsStream>),
}

pub struct TlsStream {
    session: ClientConnection,
    sock: Socket,
}

/// The socket as rustls sees it: reads with recv, writes with send(MSG_NOSIGNAL).
struct NoSignal<'a>(&'a Socket);

impl Read for NoSignal<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        (&mut &*self.0).read(buf)
    }
}

impl Write for NoSignal<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.send_with_flags(buf, libc::MSG_NOSIGNAL)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A TLS failure as an io::Error (kind InvalidData), its message rustls's.
fn tls_error(e: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, TlsFailure(e))
}

/// Marks an io::Error as coming from TLS, so the connection can say so.
#[derive(Debug)]
pub struct TlsFailure(pub rustls::Error);

impl std::fmt::Display for TlsFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl std::error::Error for TlsFailure {}

/// True when `e` is a TLS failure (bad certificate, alert, a peer that does not speak TLS).
pub fn is_tls_failure(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|inner| inner.is::<TlsFailure>())
}

/// Opens a socket to `ep`, waiting at most `timeout` for the connection.
pub fn connect(ep: &Endpoint, timeout: Duration) -> io::Result<Socket> {
    match ep {
        Endpoint::Tcp { host, port } => {
            // The pool hands us numeric addresses (it resolves names itself, within the
            // deadline); a name here is looked up by the system, unbounded.
            let addr = match host.parse::<IpAddr>() {
                Ok(ip) => SocketAddr::new(ip, *port),
                Err(_) => (host.as_str(), *port)
                    .to_socket_addrs()?
                    .next()
                    .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no address"))?,
            };
            let sock = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
            sock.connect_timeout(&addr.into(), timeout)?;
            // Pipelined commands and one-write requests must not wait for Nagle.
            sock.set_tcp_nodelay(true)?;
            let keepalive = TcpKeepalive::new()
                .with_time(KEEPALIVE)
                .with_interval(KEEPALIVE / 3)
                .with_retries(3);
            sock.set_tcp_keepalive(&keepalive)?;
            Ok(sock)
        }
        Endpoint::Unix { path } => {
            let sock = Socket::new(Domain::UNIX, Type::STREAM, None)?;
            sock.connect_timeout(&SockAddr::unix(path)?, timeout)?;
            Ok(sock)
        }
    }
}

impl Transport {
    /// A TLS session over `sock`; the handshake is driven by `handshake_step`.
    pub fn tls(sock: Socket, session: ClientConnection) -> Transport {
        Transport::Tls(Box::new(TlsStream { session, sock }))
    }

    fn socket(&self) -> &Socket {
        match self {
            Transport::Plain(s) => s,
            Transport::Tls(t) => &t.sock,
        }
    }

    /// The socket's descriptor, for poll(2).
    pub fn raw_fd(&self) -> std::os::fd::RawFd {
        std::os::fd::AsRawFd::as_raw_fd(self.socket())
    }

    /// True when the TLS session holds input already read from the socket: plaintext not yet
    /// taken, or records not yet decrypted. (A plain socket buffers nothing of ours.) An
    /// error counts as input: reading it is how the caller learns of it.
    pub fn has_buffered_input(&mut self) -> bool {
        match self {
            Transport::Plain(_) => false,
            Transport::Tls(t) => t
                .session
                .process_new_packets()
                .map_or(true, |state| state.plaintext_bytes_to_read() > 0),
        }
    }

    /// Bounds every later blocking read and write (SO_RCVTIMEO, SO_SNDTIMEO).
    pub fn set_timeout(&self, t: Duration) -> io::Result<()> {
        let s = self.socket();
        s.set_read_timeout(Some(t))?;
        s.set_write_timeout(Some(t))
    }

    /// One step of the TLS handshake (at most one blocking syscall); true once it is done.
    /// A plain transport has none.
    pub fn handshake_step(&mut self) -> io::Result<bool> {
        let Transport::Tls(t) = self else {
            return Ok(true);
        };
        if t.session.wants_write() {
            t.session.write_tls(&mut NoSignal(&t.sock))?;
            return Ok(false);
        }
        if !t.session.is_handshaking() {
            return Ok(true);
        }
        if t.session.read_tls(&mut NoSignal(&t.sock))? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the server closed the connection during the TLS handshake",
            ));
        }
        t.session.process_new_packets().map_err(tls_error)?;
        Ok(false)
    }

    /// Sends what it can of `buf[*written..]` (at most one blocking syscall), advancing
    /// `written`; true once all of `buf` is with the kernel.
    pub fn write_step(&mut self, buf: &[u8], written: &mut usize) -> io::Result<bool> {
        match self {
            Transport::Plain(s) => {
                let n = s.send_with_flags(&buf[*written..], libc::MSG_NOSIGNAL)?;
                if n == 0 && *written < buf.len() {
                    return Err(io::ErrorKind::WriteZero.into());
                }
                *written += n;
                Ok(*written == buf.len())
            }
            Transport::Tls(t) => {
                if *written < buf.len() {
                    // Encrypts into rustls's send buffer; no I/O.
                    *written += t.session.writer().write(&buf[*written..])?;
                }
                if t.session.wants_write() {
                    t.session.write_tls(&mut NoSignal(&t.sock))?;
                }
                Ok(*written == buf.len() && !t.session.wants_write())
            }
        }
    }

    /// Reads at most one socket's worth into `buf` (at most one blocking syscall).
    /// `Some(0)` is end of stream, `None` means progress without plaintext yet (a TLS record
    /// not complete, a handshake message): call again.
    pub fn read_step(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        match self {
            Transport::Plain(s) => (&mut &*s).read(buf).map(Some),
            Transport::Tls(t) => {
                match t.session.reader().read(buf) {
                    Ok(n) => return Ok(Some(n)),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e),
                }
                if t.session.wants_write() {
                    t.session.write_tls(&mut NoSignal(&t.sock))?;
                    return Ok(None);
                }
                if t.session.read_tls(&mut NoSignal(&t.sock))? == 0 {
                    return Ok(Some(0));
                }
                t.session.process_new_packets().map_err(tls_error)?;
                Ok(None)
            }
        }
    }
}

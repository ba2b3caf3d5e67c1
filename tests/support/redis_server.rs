//! A throwaway redis-server for one test: its own temp dir, a free loopback port (never 6379),
//! no persistence, killed by pid on drop. Also a tiny RESP client over std's TcpStream, so
//! tests check what is in Redis independently of the code under test.
//!
//! redis-server is found on PATH or at $REDIS_SERVER. If it is missing the test FAILS with an
//! explanation: CI installs it, and a silently skipped fault test proves nothing.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

static SEQ: AtomicUsize = AtomicUsize::new(0);

/// A RESP reply as the raw client sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resp {
    Simple(String),
    Error(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(Option<Vec<Resp>>),
}

impl Resp {
    pub fn int(&self) -> i64 {
        match self {
            Resp::Int(n) => *n,
            other => panic!("expected an integer reply, got {other:?}"),
        }
    }
    pub fn bulk(&self) -> Option<Vec<u8>> {
        match self {
            Resp::Bulk(b) => b.clone(),
            other => panic!("expected a bulk reply, got {other:?}"),
        }
    }
    pub fn assert_ok(&self) {
        assert_eq!(self, &Resp::Simple("OK".into()));
    }
}

pub fn redis_server_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("REDIS_SERVER") {
        let p = PathBuf::from(p);
        assert!(p.is_file(), "REDIS_SERVER={} is not a file", p.display());
        return p;
    }
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|d| d.join("redis-server"))
                .find(|p| p.is_file())
        })
        .unwrap_or_else(|| {
            panic!(
                "redis-server not found on PATH and REDIS_SERVER is not set: these tests need a \
                 real Redis (apt-get install -y redis-server)"
            )
        })
}

/// The highest port whose cluster bus port (port + 10000) exists.
const MAX_PORT_WITH_BUS: u16 = u16::MAX - 10_000;

/// A port nobody listens on right now (bind port 0, read it, release it).
pub fn free_port() -> u16 {
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .expect("bind 127.0.0.1:0")
            .local_addr()
            .unwrap()
            .port();
        // A cluster node also listens on port + 10000 (its bus): ports above 55535 leave it
        // none, and the kernel hands out ephemeral ports up to 60999.
        if port != 6379 && port <= MAX_PORT_WITH_BUS {
            return port;
        }
    }
}

pub struct RedisServer {
    child: Option<Child>,
    dir: PathBuf,
    port: u16,
    args: Vec<String>,
    /// Used by the raw client (`requirepass`).
    pub password: Option<String>,
}

impl RedisServer {
    pub fn start() -> RedisServer {
        Self::start_with(&[])
    }

    /// Starts with extra redis-server arguments, e.g. `["--requirepass", "pw"]`.
    pub fn start_with(extra: &[&str]) -> RedisServer {
        let bin = redis_server_binary();
        let dir = std::env::temp_dir().join(format!(
            "sc-redis-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let password = extra
            .windows(2)
            .find(|w| w[0] == "--requirepass")
            .map(|w| w[1].to_string());
        let args: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        // Another process may grab the port between free_port and redis-server's bind: retry.
        for _ in 0..5 {
            let mut s = RedisServer {
                child: None,
                dir: dir.clone(),
                port: free_port(),
                args: args.clone(),
                password: password.clone(),
            };
            if s.spawn(&bin) {
                return s;
            }
        }
        panic!(
            "redis-server would not start; see logs in {}",
            dir.display()
        );
    }

    fn spawn(&mut self, bin: &Path) -> bool {
        let mut cmd = Command::new(bin);
        // SAFETY: the closure runs in the forked child before exec and only calls prctl, which
        // is async-signal-safe. If the test process dies without running Drop (a crash, a
        // signal), the kernel kills the server instead of leaving it orphaned. (The signal
        // follows the spawning *thread*; servers are dropped by the thread that made them.)
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = cmd
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .arg("--pidfile")
            .arg(self.dir.join("redis.pid"))
            .arg("--logfile")
            .arg(self.dir.join("redis.log"))
            .arg("--unixsocket")
            .arg(self.socket_path())
            .args(["--unixsocketperm", "700"])
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-server");
        self.child = Some(child);
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(10) {
            if let Some(Ok(Some(_))) = self.child.as_mut().map(|c| c.try_wait()) {
                self.child = None;
                return false; // exited: port taken or bad args
            }
            if self.ping() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill();
        false
    }

    fn ping(&self) -> bool {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        s.set_read_timeout(Some(Duration::from_millis(500))).ok();
        if s.write_all(b"PING\r\n").is_err() {
            return false;
        }
        let mut line = String::new();
        BufReader::new(s).read_line(&mut line).is_ok()
            && (line.starts_with("+PONG") || line.starts_with("-NOAUTH"))
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// False once `stop` killed it.
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("server running").id()
    }

    /// `redis://127.0.0.1:<port>/<db>`.
    pub fn url(&self, db: u32) -> String {
        format!("redis://127.0.0.1:{}/{db}", self.port)
    }

    pub fn socket_path(&self) -> PathBuf {
        self.dir.join("redis.sock")
    }

    fn signal(&self, sig: i32) {
        let pid = self.pid() as libc::pid_t;
        // SAFETY: kill(2) with the pid of our own live child process.
        let rc = unsafe { libc::kill(pid, sig) };
        assert_eq!(rc, 0, "kill({pid}, {sig})");
    }

    /// SIGSTOP: the kernel still accepts connections; nothing answers.
    pub fn pause(&self) {
        self.signal(libc::SIGSTOP);
    }

    /// SIGCONT.
    pub fn resume(&self) {
        self.signal(libc::SIGCONT);
    }

    /// Kills the server (SIGKILL, like a crash) and reaps it.
    pub fn stop(&mut self) {
        self.kill();
    }

    /// Starts the server again on the same port with the same arguments (empty dataset).
    pub fn restart(&mut self) {
        self.kill();
        let bin = redis_server_binary();
        let t = Instant::now();
        while !self.spawn(&bin) {
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "could not restart redis-server on port {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill(); // SIGKILL by pid; works on a stopped process too
            let _ = c.wait();
        }
    }

    /// Sends one command over a fresh connection (after AUTH if the server has a password).
    pub fn cmd(&self, args: &[&[u8]]) -> Resp {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).expect("connect to redis");
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut r = BufReader::new(s.try_clone().unwrap());
        if let Some(pw) = &self.password {
            write_command(&mut s, &[b"AUTH", pw.as_bytes()]);
            read_resp(&mut r).assert_ok();
        }
        write_command(&mut s, args);
        read_resp(&mut r)
    }

    /// `cmd` with text arguments.
    pub fn cmd_str(&self, args: &[&str]) -> Resp {
        let a: Vec<&[u8]> = args.iter().map(|s| s.as_bytes()).collect();
        self.cmd(&a)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub fn write_command(w: &mut impl Write, args: &[&[u8]]) {
    let mut buf = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        buf.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        buf.extend_from_slice(a);
        buf.extend_from_slice(b"\r\n");
    }
    w.write_all(&buf).expect("write command");
}

pub fn read_resp(r: &mut impl BufRead) -> Resp {
    let mut line = Vec::new();
    r.read_until(b'\n', &mut line).expect("read reply");
    assert!(line.ends_with(b"\r\n"), "truncated reply {line:?}");
    let text = String::from_utf8_lossy(&line[1..line.len() - 2]).into_owned();
    match line[0] {
        b'+' => Resp::Simple(text),
        b'-' => Resp::Error(text),
        b':' => Resp::Int(text.parse().unwrap()),
        b'$' => {
            let n: i64 = text.parse().unwrap();
            if n < 0 {
                return Resp::Bulk(None);
            }
            let mut b = vec![0; n as usize + 2];
            r.read_exact(&mut b).unwrap();
            b.truncate(n as usize);
            Resp::Bulk(Some(b))
        }
        b'*' => {
            let n: i64 = text.parse().unwrap();
            if n < 0 {
                return Resp::Array(None);
            }
            Resp::Array(Some((0..n).map(|_| read_resp(r)).collect()))
        }
        other => panic!("not RESP: {:?}", other as char),
    }
}

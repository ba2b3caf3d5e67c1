//! Redis Sentinels for one test: `redis-server <conf> --sentinel` on free loopback ports,
//! each with its own temp dir and config file (Sentinel rewrites it), killed on drop.

use super::redis_server::{free_port, read_resp, redis_server_binary, write_command, Resp};
use std::io::BufReader;
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

static SEQ: AtomicUsize = AtomicUsize::new(0);

pub struct Sentinel {
    child: Child,
    dir: PathBuf,
    pub port: u16,
}

impl Sentinel {
    /// A Sentinel watching `master` at 127.0.0.1:`master_port` with quorum 2, declaring it
    /// down after 1 s without answer.
    pub fn start(master: &str, master_port: u16) -> Sentinel {
        let dir = std::env::temp_dir().join(format!(
            "sc-sentinel-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        for _ in 0..5 {
            let port = free_port();
            let conf = dir.join("sentinel.conf");
            std::fs::write(
                &conf,
                format!(
                    "port {port}\nbind 127.0.0.1\ndaemonize no\ndir {dir}\n\
                     logfile {dir}/sentinel.log\n\
                     sentinel monitor {master} 127.0.0.1 {master_port} 2\n\
                     sentinel down-after-milliseconds {master} 1000\n\
                     sentinel failover-timeout {master} 10000\n\
                     sentinel parallel-syncs {master} 1\n",
                    dir = dir.display()
                ),
            )
            .unwrap();
            let mut cmd = Command::new(redis_server_binary());
            // SAFETY: the closure runs in the forked child before exec and only calls prctl
            // (async-signal-safe): the Sentinel dies with the test process.
            unsafe {
                cmd.pre_exec(|| {
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                    Ok(())
                });
            }
            let mut child = cmd
                .arg(&conf)
                .arg("--sentinel")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn redis-server --sentinel");
            let t = Instant::now();
            while t.elapsed() < Duration::from_secs(10) {
                if let Ok(Some(_)) = child.try_wait() {
                    break; // port taken: try another
                }
                if matches!(try_cmd(port, &["PING"]), Some(Resp::Simple(s)) if s == "PONG") {
                    return Sentinel { child, dir, port };
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("sentinel would not start; see {}", dir.display());
    }

    pub fn cmd(&self, args: &[&str]) -> Resp {
        try_cmd(self.port, args).unwrap_or_else(|| panic!("sentinel {} did not answer", self.port))
    }

    /// The port of the master this Sentinel names now.
    pub fn master_port(&self, master: &str) -> Option<u16> {
        match self.cmd(&["SENTINEL", "get-master-addr-by-name", master]) {
            Resp::Array(Some(parts)) => {
                let port = parts.get(1)?.bulk()?;
                String::from_utf8(port).ok()?.parse().ok()
            }
            _ => None,
        }
    }
}

/// One command to 127.0.0.1:`port` on a fresh connection; None if it does not answer.
pub fn try_cmd(port: u16, args: &[&str]) -> Option<Resp> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut r = BufReader::new(s.try_clone().ok()?);
    let a: Vec<&[u8]> = args.iter().map(|x| x.as_bytes()).collect();
    // write_command and read_resp panic on a closed connection: that is "no answer".
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        write_command(&mut s, &a);
        read_resp(&mut r)
    }))
    .ok()
}

impl Drop for Sentinel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

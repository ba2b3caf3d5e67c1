//! Test certificates made by the test (rcgen): a CA, server certificates it signs for chosen
//! names (valid or expired), a client certificate, written as PEM files into a temp dir.

use super::redis_server::{free_port, RedisServer};
use rcgen::{BasicConstraints, Certificate, CertificateParams, IsCa, KeyPair};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

static SEQ: AtomicUsize = AtomicUsize::new(0);

/// A certificate authority and the directory its files go to.
pub struct TestCa {
    cert: Certificate,
    key: KeyPair,
    dir: PathBuf,
    pub ca_file: PathBuf,
}

/// A certificate and its key as PEM files.
pub struct Issued {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

impl TestCa {
    pub fn new(name: &str) -> TestCa {
        let dir = std::env::temp_dir().join(format!(
            "sc-tls-{}-{}-{name}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(
            rcgen::DnType::CommonName,
            format!("smartcache test CA {name}"),
        );
        let cert = params.self_signed(&key).unwrap();
        let ca_file = dir.join("ca.pem");
        std::fs::write(&ca_file, cert.pem()).unwrap();
        TestCa {
            cert,
            key,
            dir,
            ca_file,
        }
    }

    /// A certificate for `names` (DNS names or IP addresses), valid now.
    pub fn issue(&self, file: &str, names: &[&str]) -> Issued {
        self.issue_with(file, names, false)
    }

    /// A certificate for `names` that expired in 2001.
    pub fn issue_expired(&self, file: &str, names: &[&str]) -> Issued {
        self.issue_with(file, names, true)
    }

    fn issue_with(&self, file: &str, names: &[&str], expired: bool) -> Issued {
        let key = KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let mut params = CertificateParams::new(names).unwrap();
        if expired {
            params.not_before = rcgen::date_time_ymd(2000, 1, 1);
            params.not_after = rcgen::date_time_ymd(2001, 1, 1);
        }
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        let issued = Issued {
            cert_file: self.dir.join(format!("{file}.pem")),
            key_file: self.dir.join(format!("{file}.key")),
        };
        std::fs::write(&issued.cert_file, cert.pem()).unwrap();
        std::fs::write(&issued.key_file, key.serialize_pem()).unwrap();
        issued
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for TestCa {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub fn path_str(p: &Path) -> String {
    p.to_str().unwrap().to_string()
}

/// A redis-server with its plain port (for the test's own checks) and a TLS port serving
/// `cert`, trusting `ca` for client certificates (required when `auth_clients`).
pub struct TlsRedis {
    pub server: RedisServer,
    pub tls_port: u16,
}

pub fn start_tls_redis(ca: &TestCa, cert: &Issued, auth_clients: bool) -> TlsRedis {
    let tls_port = free_port();
    let args = tls_server_args(ca, cert, tls_port, auth_clients);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let server = RedisServer::start_with(&args);
    TlsRedis { server, tls_port }
}

/// The redis-server arguments for a TLS port `tls_port` serving `cert`, trusting `ca` for
/// client certificates (required when `auth_clients`).
pub fn tls_server_args(
    ca: &TestCa,
    cert: &Issued,
    tls_port: u16,
    auth_clients: bool,
) -> Vec<String> {
    [
        "--tls-port",
        &tls_port.to_string(),
        "--tls-cert-file",
        &path_str(&cert.cert_file),
        "--tls-key-file",
        &path_str(&cert.key_file),
        "--tls-ca-cert-file",
        &path_str(&ca.ca_file),
        "--tls-auth-clients",
        if auth_clients { "yes" } else { "no" },
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

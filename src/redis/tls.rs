//! TLS client settings for `rediss://` URLs (rustls, with the ring crypto provider).
//!
//! The server's certificate is verified against the CA file named by `redis_tls_ca_file`
//! (PEM, one or more certificates) or, without it, the system's trust store (read once per
//! process by rustls-native-certs, as OpenSSL-based clients do). The name checked is the URL's
//! host (a DNS name or an IP address), or `redis_tls_server_name` when set: the way to reach a
//! server by an address its certificate does not name (a Sentinel reports IP addresses).
//! `redis_tls_cert_file` and `redis_tls_key_file` (PEM) together give a client certificate
//! for servers that require one (`tls-auth-clients yes`). A file that cannot be read or holds
//! no usable certificate or key is a config error at open, never a failure on first use.

use once_cell::sync::OnceCell;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore};
use std::sync::Arc;

/// The TLS options of a cache, as configured (empty = unset).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsOptions {
    pub ca_file: Option<String>,
    pub cert_file: Option<String>,
    pub key_file: Option<String>,
    pub server_name: Option<String>,
}

/// A built client configuration: every connection of a tier shares it (and so its session
/// cache, which lets a redial resume instead of paying a full handshake).
#[derive(Clone)]
pub struct Tls {
    config: Arc<ClientConfig>,
    server_name: Option<ServerName<'static>>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tls(server_name: {:?})", self.server_name)
    }
}

/// The system's trust store, loaded on first use: reading it costs a directory walk, and its
/// contents do not change under a running process often enough to matter.
static SYSTEM_ROOTS: OnceCell<Arc<RootCertStore>> = OnceCell::new();

fn system_roots() -> Result<Arc<RootCertStore>, String> {
    SYSTEM_ROOTS
        .get_or_try_init(|| {
            let found = rustls_native_certs::load_native_certs();
            let mut roots = RootCertStore::empty();
            let (added, _ignored) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err(format!(
                    "no CA certificate found in the system trust store ({}); set \
                     redis_tls_ca_file",
                    found
                        .errors
                        .first()
                        .map_or("it is empty".to_string(), |e| e.to_string())
                ));
            }
            Ok(Arc::new(roots))
        })
        .cloned()
}

fn ca_roots(path: &str) -> Result<Arc<RootCertStore>, String> {
    let mut roots = RootCertStore::empty();
    for cert in read_certs("redis_tls_ca_file", path)? {
        roots
            .add(cert)
            .map_err(|e| format!("redis_tls_ca_file '{path}': {e}"))?;
    }
    Ok(Arc::new(roots))
}

fn read_certs(option: &str, path: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("{option} '{path}': {e}"))?;
    if certs.is_empty() {
        return Err(format!("{option} '{path}': no PEM certificate in it"));
    }
    Ok(certs)
}

impl Tls {
    /// Builds the client configuration; `Err` is a message for a config error.
    pub fn new(opts: &TlsOptions) -> Result<Tls, String> {
        let roots = match &opts.ca_file {
            Some(path) => ca_roots(path)?,
            None => system_roots()?,
        };
        // ring: it builds with a C compiler alone (aws-lc-rs needs cmake). rustls deprecates
        // its ring provider only for lacking post-quantum key exchange, which Redis servers
        // (OpenSSL) do not negotiate by default either.
        #[allow(deprecated)]
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS setup: {e}"))?
            .with_root_certificates(roots);
        let config = match (&opts.cert_file, &opts.key_file) {
            (None, None) => builder.with_no_client_auth(),
            (Some(cert), Some(key)) => {
                let certs = read_certs("redis_tls_cert_file", cert)?;
                let key = PrivateKeyDer::from_pem_file(key)
                    .map_err(|e| format!("redis_tls_key_file '{key}': {e}"))?;
                builder
                    .with_client_auth_cert(certs, key)
                    .map_err(|e| format!("redis_tls_cert_file and redis_tls_key_file: {e}"))?
            }
            (Some(_), None) => return Err("redis_tls_cert_file needs redis_tls_key_file".into()),
            (None, Some(_)) => return Err("redis_tls_key_file needs redis_tls_cert_file".into()),
        };
        let server_name = opts
            .server_name
            .as_deref()
            .map(|n| {
                ServerName::try_from(n.to_string())
                    .map_err(|_| format!("redis_tls_server_name '{n}' is not a DNS name or IP"))
            })
            .transpose()?;
        Ok(Tls {
            config: Arc::new(config),
            server_name,
        })
    }

    /// The name a server reached as `host` must show in its certificate.
    pub fn server_name(&self, host: &str) -> Result<ServerName<'static>, String> {
        if let Some(n) = &self.server_name {
            return Ok(n.clone());
        }
        ServerName::try_from(host.to_string())
            .map_err(|_| format!("'{host}' is not a DNS name or IP address to verify"))
    }

    /// These settings for a server reached as `host`.
    pub fn target(&self, host: &str) -> Result<TlsTarget, String> {
        Ok(TlsTarget {
            tls: self.clone(),
            name: self.server_name(host)?,
        })
    }

    /// A client session for one connection to `name`.
    pub fn session(&self, name: ServerName<'static>) -> Result<ClientConnection, rustls::Error> {
        ClientConnection::new(Arc::clone(&self.config), name)
    }
}

/// A TLS client set up for one server: what [`super::conn::Conn::connect_tls`] needs.
#[derive(Debug, Clone)]
pub struct TlsTarget {
    pub tls: Tls,
    pub name: ServerName<'static>,
}

//! HTTPS on the proxy: which certificates it serves for which names, the HTTP-01 answers and the
//! HTTP -> HTTPS redirect. The router decides (certificate files, ACME); this only renders it.

use std::fmt;

/// Where the proxy answers ACME HTTP-01 challenges from, inside the Lua directory: the router
/// writes `<token>` files there and the plain listener serves `/.well-known/acme-challenge/<token>`.
pub const ACME_CHALLENGE_DIR: &str = "acme-challenge";

/// Prefix of the certificate files the router writes into the Lua directory (chain and key in one
/// file, named by a hash of its content, so a new certificate is a new file and a reload).
pub const CERT_FILE_PREFIX: &str = "clearml_tls_";

/// HTTPS settings of the proxy; the default is plain HTTP only.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsLayout {
    /// The port the proxy serves HTTPS on (`None`: no HTTPS listener).
    pub https_port: Option<u16>,
    /// Plain HTTP answers a redirect to HTTPS (but for ACME challenges) once a certificate serves.
    pub redirect: bool,
    /// The plain listener serves ACME HTTP-01 answers from [`ACME_CHALLENGE_DIR`].
    pub acme_challenges: bool,
    /// The certificates to serve, the default one (for clients without SNI or an unknown name)
    /// first. Each name appears in one certificate only.
    pub certs: Vec<TlsCert>,
}

impl TlsLayout {
    /// HTTPS is served: a port and at least one certificate.
    pub fn serving(&self) -> bool {
        self.https_port.is_some() && !self.certs.is_empty()
    }
}

/// One certificate the proxy serves: the names (`*.example.com` for a wildcard) and the PEM text
/// of the chain followed by the private key.
#[derive(Clone, PartialEq, Eq)]
pub struct TlsCert {
    pub names: Vec<String>,
    pub pem: Vec<u8>,
}

impl TlsCert {
    /// The file it is written to in the Lua directory.
    pub fn file_name(&self) -> String {
        let hash = super::sha256_hex(&[&self.pem]);
        format!("{CERT_FILE_PREFIX}{}.pem", &hash[..16])
    }
}

/// The PEM holds a private key: never printed.
impl fmt::Debug for TlsCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsCert").field("names", &self.names).field("file", &self.file_name()).finish()
    }
}

/// A server name as nginx reads it: a DNS name, or `*.` and a DNS name.
pub fn valid_server_name(name: &str) -> bool {
    let bare = name.strip_prefix("*.").unwrap_or(name);
    !bare.is_empty()
        && bare.len() <= 253
        && bare.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        })
}

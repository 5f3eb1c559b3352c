//! Certificate files: read a PEM chain and its key, check that they belong together and learn the
//! names and validity the proxy serves them for.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// A checked certificate with its key, ready to serve.
#[derive(Clone, PartialEq, Eq)]
pub struct LoadedCert {
    /// The file it came from (for messages and the status page).
    pub file: PathBuf,
    /// DNS names of the leaf (subject alternative names, else the common name), lowercase;
    /// `*.example.com` for a wildcard.
    pub names: Vec<String>,
    pub not_before: SystemTime,
    pub not_after: SystemTime,
    /// The leaf's serial number, hex.
    pub serial: String,
    /// Chain then key, PEM.
    pub pem: Vec<u8>,
}

impl std::fmt::Debug for LoadedCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedCert")
            .field("file", &self.file)
            .field("names", &self.names)
            .field("serial", &self.serial)
            .finish()
    }
}

impl LoadedCert {
    /// Whether the certificate covers `host` (exactly, or one label under a wildcard).
    pub fn covers(&self, host: &str) -> bool {
        self.names.iter().any(|n| name_covers(n, host))
    }

    /// Less than a third of its lifetime left (Let's Encrypt's advice for renewals).
    pub fn due_for_renewal(&self, now: SystemTime) -> bool {
        let lifetime = self.not_after.duration_since(self.not_before).unwrap_or_default();
        self.not_after.duration_since(now).map_or(true, |left| left < lifetime / 3)
    }
}

/// Whether a certificate name covers `host`: exactly, or one label under a wildcard.
pub fn name_covers(name: &str, host: &str) -> bool {
    match name.strip_prefix("*.") {
        Some(base) => host.split_once('.').is_some_and(|(label, rest)| !label.is_empty() && rest == base),
        None => name == host,
    }
}

/// Reads a certificate chain and its key. `key_pem` is `None` when the key is in `chain_pem`.
pub fn load(file: &Path, chain_pem: &[u8], key_pem: Option<&[u8]>) -> Result<LoadedCert, String> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(chain_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("not a PEM certificate chain: {e}"))?;
    let leaf = chain.first().ok_or("holds no CERTIFICATE block")?;
    let key_source = key_pem.unwrap_or(chain_pem);
    let key = PrivateKeyDer::from_pem_slice(key_source).map_err(|e| {
        let place = if key_pem.is_some() {
            "its .key file"
        } else {
            "the file (and there is no .key file beside it)"
        };
        format!("no usable private key in {place}: {e}")
    })?;
    let (_, cert) = x509_parser::parse_x509_certificate(leaf.as_ref())
        .map_err(|e| format!("the first certificate does not parse: {e}"))?;
    check_key_matches(&key, cert.tbs_certificate.subject_pki.raw)?;
    let mut names: Vec<String> = match cert.subject_alternative_name() {
        Ok(Some(san)) => san
            .value
            .general_names
            .iter()
            .filter_map(|n| match n {
                x509_parser::extensions::GeneralName::DNSName(d) => Some(d.to_ascii_lowercase()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    if names.is_empty() {
        names.extend(
            cert.subject().iter_common_name().filter_map(|cn| cn.as_str().ok()).map(str::to_ascii_lowercase),
        );
    }
    names.retain(|n| gateway_render::tls::valid_server_name(n));
    names.sort();
    names.dedup();
    if names.is_empty() {
        return Err("the certificate names no DNS name (subject alternative names or common name)".into());
    }
    let time = |t: x509_parser::time::ASN1Time| UNIX_EPOCH + Duration::from_secs(t.timestamp().max(0) as u64);
    let not_before = time(cert.validity().not_before);
    let not_after = time(cert.validity().not_after);
    if not_after <= SystemTime::now() {
        return Err(format!("the certificate expired on {}", gateway_core::time::rfc3339(not_after)));
    }
    let mut pem = chain_pem.to_vec();
    if let Some(key) = key_pem {
        if !pem.ends_with(b"\n") {
            pem.push(b'\n');
        }
        pem.extend_from_slice(key);
    }
    Ok(LoadedCert {
        file: file.to_owned(),
        names,
        not_before,
        not_after,
        serial: hex::encode(cert.tbs_certificate.raw_serial()),
        pem,
    })
}

/// The key must be the certificate's: nginx would refuse the whole config otherwise.
fn check_key_matches(key: &PrivateKeyDer<'_>, cert_spki: &[u8]) -> Result<(), String> {
    let signer = rustls::crypto::ring::sign::any_supported_type(key)
        .map_err(|e| format!("the private key is not usable: {e}"))?;
    match signer.public_key() {
        Some(spki) if spki.as_ref() != cert_spki => {
            Err("the private key does not belong to the certificate (their public keys differ)".into())
        }
        _ => Ok(()),
    }
}

/// A certificate file and what reading it gave.
pub type Scanned = (PathBuf, Result<LoadedCert, String>);

/// The certificate files of a folder: `*.pem` / `*.crt` with the key inside or in `<stem>.key`.
/// Returns each file's path and outcome, sorted by path.
pub fn scan_dir(dir: &Path) -> Result<Vec<Scanned>, String> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| format!("{}: cannot read the folder: {e}", dir.display()))?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("pem" | "crt")))
        // Kubernetes secrets mount `..data` links and dot-files: only the plain names.
        .filter(|p| !p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with('.')))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    Ok(files
        .into_iter()
        .map(|path| {
            let outcome = read_pair(&path);
            (path, outcome)
        })
        .collect())
}

fn read_pair(path: &Path) -> Result<LoadedCert, String> {
    let chain = std::fs::read(path).map_err(|e| format!("cannot read: {e}"))?;
    let key_path = path.with_extension("key");
    let key = match std::fs::read(&key_path) {
        Ok(k) => Some(k),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(format!("cannot read {}: {e}", key_path.display())),
    };
    load(path, &chain, key.as_deref())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(names: &[&str]) -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let params =
            rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
        let cert = params.self_signed(&key).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    #[test]
    fn a_certificate_is_read_with_its_names_and_a_wrong_key_is_refused() {
        let (chain, key) = cert(&["app.example.com", "*.gw.example.com"]);
        let loaded = load(Path::new("a.pem"), format!("{chain}{key}").as_bytes(), None).unwrap();
        assert_eq!(loaded.names, vec!["*.gw.example.com", "app.example.com"]);
        assert!(loaded.covers("x.gw.example.com") && !loaded.covers("a.b.gw.example.com"));
        assert!(!loaded.due_for_renewal(SystemTime::now()));
        let (_, other_key) = cert(&["other.example.com"]);
        let err = load(Path::new("a.pem"), chain.as_bytes(), Some(other_key.as_bytes())).unwrap_err();
        assert!(err.contains("does not belong"), "{err}");
        let err = load(Path::new("a.pem"), chain.as_bytes(), None).unwrap_err();
        assert!(err.contains("no usable private key"), "{err}");
        let err = load(Path::new("a.pem"), b"junk", None).unwrap_err();
        assert!(err.contains("no CERTIFICATE"), "{err}");
    }
}

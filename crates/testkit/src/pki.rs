//! A test PKI made with the `openssl` command line: a CA and the certificates it signs, for the
//! HTTPS tests and benchmark.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A CA in `dir` (`ca.crt`, `ca.key`).
pub struct Pki {
    pub dir: PathBuf,
    pub ca_crt: PathBuf,
    pub ca_key: PathBuf,
}

/// Runs `openssl` with whitespace-separated arguments (the paths are temporary folders: no spaces).
fn openssl(args: &str) {
    let args: Vec<&str> = args.split_whitespace().collect();
    let out = Command::new("openssl").args(&args).output().expect("openssl runs");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A new P-256 key, unencrypted.
const NEW_KEY: &str = "-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes";

impl Pki {
    pub fn new(dir: &Path) -> Pki {
        std::fs::create_dir_all(dir).unwrap();
        let (ca_crt, ca_key) = (dir.join("ca.crt"), dir.join("ca.key"));
        openssl(&format!(
            "req -x509 {NEW_KEY} -days 3 -subj /CN=gateway-test-CA -keyout {} -out {}",
            ca_key.display(),
            ca_crt.display()
        ));
        Pki { dir: dir.to_owned(), ca_crt, ca_key }
    }

    /// A certificate for `sans` (`DNS:x`, `IP:y`) signed by the CA: `(<stem>.crt, <stem>.key)` in `out`.
    pub fn issue(&self, out: &Path, stem: &str, sans: &[&str]) -> (PathBuf, PathBuf) {
        let (crt, key) = (out.join(format!("{stem}.crt")), out.join(format!("{stem}.key")));
        let (csr, ext) = (self.dir.join("req.csr"), self.dir.join("ext.cnf"));
        std::fs::write(&ext, format!("subjectAltName={}\n", sans.join(","))).unwrap();
        openssl(&format!(
            "req {NEW_KEY} -subj /CN=gateway-test -keyout {} -out {}",
            key.display(),
            csr.display()
        ));
        openssl(&format!(
            "x509 -req -in {} -CA {} -CAkey {} -CAcreateserial -days 2 -extfile {} -out {}",
            csr.display(),
            self.ca_crt.display(),
            self.ca_key.display(),
            ext.display(),
            crt.display()
        ));
        (crt, key)
    }

    /// The CA certificate (PEM), for clients that trust it.
    pub fn root(&self) -> Vec<u8> {
        std::fs::read(&self.ca_crt).unwrap()
    }
}

//! A certificate authority made for one test (rcgen): the OP's HTTPS certificate and client
//! certificates for mutual TLS are issued by it, and its PEM is what the bridge's `ca_file`
//! points at. Nothing here is trusted by anything else.

use std::path::PathBuf;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};

/// The CA and the directory its files are written to (removed when dropped).
pub struct TestCa {
    pub dir: tempfile::TempDir,
    /// The CA certificate, PEM.
    pub pem: String,
    /// `pem` written to a file, for `ca_file`.
    pub ca_file: PathBuf,
    cert: rcgen::Certificate,
    key: KeyPair,
}

/// A certificate and its key, as files.
pub struct Issued {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

impl TestCa {
    pub fn new(name: &str) -> TestCa {
        let dir = tempfile::tempdir().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let pem = cert.pem();
        let ca_file = dir.path().join(format!("{name}.pem"));
        std::fs::write(&ca_file, &pem).unwrap();
        TestCa {
            dir,
            pem,
            ca_file,
            cert,
            key,
        }
    }

    /// A leaf certificate for `names` (host names or IP addresses), written as
    /// `<file_stem>.crt` / `<file_stem>.key`.
    pub fn issue(&self, file_stem: &str, names: &[&str]) -> Issued {
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let mut params = CertificateParams::new(names).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, file_stem);
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        let cert_file = self.dir.path().join(format!("{file_stem}.crt"));
        let key_file = self.dir.path().join(format!("{file_stem}.key"));
        std::fs::write(&cert_file, cert.pem()).unwrap();
        std::fs::write(&key_file, key.serialize_pem()).unwrap();
        Issued {
            cert_file,
            key_file,
        }
    }
}

//! Outbound HTTPS, to the IdP and to Discourse: which certificate authorities are trusted (the
//! built-in public roots plus a PEM `ca_file`), which client certificate is presented (RFC 8705
//! mutual TLS), which proxy carries the requests (`HTTPS_PROXY` / `HTTP_PROXY` / `NO_PROXY`, or
//! `[server] outbound_proxy`), and how a failed handshake is described to an operator.
//!
//! [`load_ca_file`] is the one reader of CA bundles; every TLS client of the bridge (the
//! PostgreSQL store included) uses it so a bundle means the same everywhere.

use std::path::Path;
use std::time::Duration;

use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use url::Url;

/// Why a PEM file (CA bundle, client certificate or key) cannot be used. Names the file, never
/// its contents.
#[derive(Debug, thiserror::Error)]
pub enum PemFileError {
    #[error("cannot read {path}: {source}")]
    Unreadable {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} holds no PEM certificate (-----BEGIN CERTIFICATE-----)")]
    NoCertificate { path: String },
    #[error("{path}: certificate {index} is not a usable X.509 certificate ({reason})")]
    BadCertificate {
        path: String,
        index: usize,
        reason: String,
    },
    #[error(
        "{path} holds no private key (PKCS#8 \"PRIVATE KEY\", PKCS#1 \"RSA PRIVATE KEY\" or SEC1 \
         \"EC PRIVATE KEY\", unencrypted)"
    )]
    NoKey { path: String },
    #[error("{path}: the private key is not an RSA or P-256/P-384 EC key the bridge can sign with")]
    UnsupportedKey { path: String },
    #[error("{key} does not belong to the certificate in {cert}")]
    KeyCertMismatch { key: String, cert: String },
}

fn read(path: &Path) -> Result<Vec<u8>, PemFileError> {
    std::fs::read(path).map_err(|source| PemFileError::Unreadable {
        path: path.display().to_string(),
        source,
    })
}

/// The certificates of a PEM bundle (one or more `CERTIFICATE` blocks; other blocks and text
/// between them are skipped), each checked to parse as a trust anchor. At least one is required.
pub fn load_ca_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, PemFileError> {
    let certs = load_certs(path)?;
    for (index, cert) in certs.iter().enumerate() {
        let mut probe = rustls::RootCertStore::empty();
        if let Err(error) = probe.add(cert.clone()) {
            return Err(PemFileError::BadCertificate {
                path: path.display().to_string(),
                index: index + 1,
                reason: error.to_string(),
            });
        }
    }
    Ok(certs)
}

/// The certificates of a PEM file, in file order; at least one.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, PemFileError> {
    let bytes = read(path)?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&bytes)
        .filter_map(Result::ok)
        .collect();
    if certs.is_empty() {
        return Err(PemFileError::NoCertificate {
            path: path.display().to_string(),
        });
    }
    Ok(certs)
}

/// The private key of a PEM file (PKCS#8, PKCS#1 or SEC1), as a rustls signing key.
pub fn load_signing_key(
    path: &Path,
) -> Result<std::sync::Arc<dyn rustls::sign::SigningKey>, PemFileError> {
    let bytes = read(path)?;
    let der = PrivateKeyDer::from_pem_slice(&bytes).map_err(|_| PemFileError::NoKey {
        path: path.display().to_string(),
    })?;
    rustls::crypto::ring::sign::any_supported_type(&der).map_err(|_| PemFileError::UnsupportedKey {
        path: path.display().to_string(),
    })
}

/// A client certificate (chain) and its key for mutual TLS (RFC 8705 `tls_client_auth`), checked
/// to belong together.
#[derive(Clone)]
pub struct ClientIdentity {
    /// The certificate chain and the key, concatenated as PEM, as reqwest reads them.
    pem: Vec<u8>,
}

impl std::fmt::Debug for ClientIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientIdentity([key redacted])")
    }
}

impl ClientIdentity {
    /// Reads `cert_file` (leaf first, intermediates after) and `key_file`, and checks that the
    /// key's public half is the leaf certificate's.
    pub fn load(cert_file: &Path, key_file: &Path) -> Result<Self, PemFileError> {
        let certs = load_certs(cert_file)?;
        let key = load_signing_key(key_file)?;
        let certified = rustls::sign::CertifiedKey::new(certs, key);
        if certified.keys_match().is_err() {
            return Err(PemFileError::KeyCertMismatch {
                key: key_file.display().to_string(),
                cert: cert_file.display().to_string(),
            });
        }
        let mut pem = read(cert_file)?;
        pem.push(b'\n');
        pem.extend(read(key_file)?);
        Ok(Self { pem })
    }

    fn reqwest(&self) -> reqwest::Result<reqwest::Identity> {
        reqwest::Identity::from_pem(&self.pem)
    }
}

/// Everything an outbound client is built from.
#[derive(Debug, Clone)]
pub struct OutboundSettings {
    /// Bound on every request.
    pub timeout: Duration,
    /// Trust the public roots built into the binary (off with `server.trust_store = "os"`,
    /// whose certificates then come in `extra_roots`).
    pub builtin_roots: bool,
    /// Trusted in addition to (or, without `builtin_roots`, instead of) the built-in roots.
    pub extra_roots: Vec<CertificateDer<'static>>,
    /// Presented when the server asks for a client certificate.
    pub identity: Option<ClientIdentity>,
    /// Every request goes through this proxy (except hosts `NO_PROXY` names); `None` follows
    /// `HTTPS_PROXY` / `HTTP_PROXY` / `ALL_PROXY` / `NO_PROXY` from the environment.
    pub proxy: Option<Url>,
}

impl Default for OutboundSettings {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(10),
            builtin_roots: true,
            extra_roots: Vec::new(),
            identity: None,
            proxy: None,
        }
    }
}

/// The operating system's trusted certificates (rustls-native-certs). An error when none could
/// be loaded, with the reasons the loader gave.
pub fn load_os_roots() -> Result<Vec<CertificateDer<'static>>, String> {
    let loaded = rustls_native_certs::load_native_certs();
    if loaded.certs.is_empty() {
        let reasons: Vec<String> = loaded.errors.iter().map(ToString::to_string).collect();
        return Err(if reasons.is_empty() {
            "the operating system's trust store holds no certificates (install ca-certificates, \
             or set SSL_CERT_FILE)"
                .to_owned()
        } else {
            format!(
                "the operating system's trust store could not be read: {}",
                reasons.join("; ")
            )
        });
    }
    Ok(loaded.certs)
}

impl OutboundSettings {
    /// Builds the client: bounded timeouts, no redirects (SSRF and token leakage), the roots,
    /// identity and proxy above.
    pub fn client(&self) -> reqwest::Result<reqwest::Client> {
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(self.timeout)
            .connect_timeout(self.timeout.min(Duration::from_secs(5)))
            .user_agent(concat!("discourse-oidc-bridge/", env!("CARGO_PKG_VERSION")))
            .use_rustls_tls()
            .tls_built_in_root_certs(self.builtin_roots);
        for cert in &self.extra_roots {
            builder = builder.add_root_certificate(reqwest::Certificate::from_der(cert)?);
        }
        if let Some(identity) = &self.identity {
            builder = builder.identity(identity.reqwest()?);
        }
        if let Some(proxy) = &self.proxy {
            builder = builder
                .proxy(reqwest::Proxy::all(proxy.as_str())?.no_proxy(reqwest::NoProxy::from_env()));
        }
        builder.build()
    }
}

/// The operator-facing description of a failed outbound request: when a TLS certificate was
/// refused anywhere in the error's source chain, "TLS certificate of `host` rejected: reason"
/// with a hint at `hint_key` (the `ca_file` key to set); otherwise the chain's messages.
pub fn describe(error: &(dyn std::error::Error + 'static), url: &Url, hint_key: &str) -> String {
    let host = url.host_str().unwrap_or("?");
    match certificate_problem(error) {
        Some(reason) => format!(
            "TLS certificate of {host} rejected: {reason}; if {host} uses a private certificate \
             authority, set {hint_key} to its PEM bundle"
        ),
        None => crate::telemetry::Chain(error).to_string(),
    }
}

/// The rustls error anywhere in `error`'s chain, looking inside `io::Error`s (their `source`
/// skips the wrapped error itself) and boxed reqwest errors (openidconnect keeps the transport
/// error as `Box<reqwest::Error>`, which does not downcast to `reqwest::Error`).
pub fn certificate_problem(error: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut current = Some(error);
    while let Some(e) = current {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return Some(tls_reason(tls));
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && let Some(inner) = io.get_ref()
            && let Some(found) = certificate_problem(inner)
        {
            return Some(found);
        }
        if let Some(boxed) = e.downcast_ref::<Box<reqwest::Error>>() {
            return certificate_problem(&**boxed);
        }
        current = e.source();
    }
    None
}

/// Whether a transport error (DNS, connection, TLS, timeout: a `reqwest::Error`, boxed or not)
/// is anywhere in `error`'s chain.
pub fn is_transport_error(error: &(dyn std::error::Error + 'static)) -> bool {
    std::iter::successors(Some(error), |e| e.source()).any(|e| {
        e.downcast_ref::<reqwest::Error>().is_some()
            || e.downcast_ref::<Box<reqwest::Error>>().is_some()
    })
}

fn tls_reason(error: &rustls::Error) -> String {
    use rustls::CertificateError as C;
    match error {
        rustls::Error::InvalidCertificate(C::UnknownIssuer) => {
            "issued by an unknown certificate authority (UnknownIssuer)".to_owned()
        }
        rustls::Error::InvalidCertificate(C::Expired | C::ExpiredContext { .. }) => {
            "expired".to_owned()
        }
        rustls::Error::InvalidCertificate(
            C::NotValidForName | C::NotValidForNameContext { .. },
        ) => "not valid for this host name".to_owned(),
        rustls::Error::InvalidCertificate(other) => format!("invalid certificate ({other:?})"),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> std::path::PathBuf {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    fn ca() -> rcgen::CertifiedKey {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        rcgen::CertifiedKey {
            cert,
            key_pair: key,
        }
    }

    #[test]
    fn a_bundle_of_several_certificates_loads_and_an_empty_one_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (ca(), ca());
        let bundle = format!("# comment\n{}\n{}", a.cert.pem(), b.cert.pem());
        let path = write(&dir, "bundle.pem", &bundle);
        assert_eq!(load_ca_file(&path).unwrap().len(), 2);

        let empty = write(&dir, "empty.pem", "nothing here\n");
        let error = load_ca_file(&empty).unwrap_err().to_string();
        assert!(
            error.contains("empty.pem") && error.contains("no PEM certificate"),
            "{error}"
        );
        let missing = load_ca_file(&dir.path().join("absent.pem")).unwrap_err();
        assert!(matches!(missing, PemFileError::Unreadable { .. }));
    }

    #[test]
    fn a_client_key_must_match_its_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let leaf = rcgen::generate_simple_self_signed(vec!["client".to_owned()]).unwrap();
        let other = rcgen::KeyPair::generate().unwrap();
        let cert = write(&dir, "cert.pem", &leaf.cert.pem());
        let key = write(&dir, "key.pem", &leaf.key_pair.serialize_pem());
        let wrong = write(&dir, "wrong.pem", &other.serialize_pem());
        assert!(ClientIdentity::load(&cert, &key).is_ok());
        assert!(matches!(
            ClientIdentity::load(&cert, &wrong),
            Err(PemFileError::KeyCertMismatch { .. })
        ));
        assert!(matches!(
            ClientIdentity::load(&cert, &cert),
            Err(PemFileError::NoKey { .. })
        ));
    }

    #[test]
    fn certificate_problems_are_found_inside_io_errors() {
        let tls = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        let io = std::io::Error::new(std::io::ErrorKind::InvalidData, tls);
        let url = Url::parse("https://idp.corp.example/realms/x").unwrap();
        let text = describe(&io, &url, "oidc.ca_file");
        assert!(text.contains("idp.corp.example"), "{text}");
        assert!(
            text.contains("UnknownIssuer") && text.contains("oidc.ca_file"),
            "{text}"
        );
    }
}

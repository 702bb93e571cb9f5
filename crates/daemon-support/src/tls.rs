//! rustls configuration from PEM files, for listeners (server side) and for connections to
//! upstreams (client side).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};

/// What went wrong while reading TLS material.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read or held no usable PEM item.
    #[error("{path}: {message}")]
    File {
        /// The file named in the configuration.
        path: PathBuf,
        /// What was wrong with it.
        message: String,
    },
    /// rustls refused the combination of certificates and key.
    #[error("TLS configuration: {0}")]
    Config(#[from] rustls::Error),
    /// The client-certificate verifier could not be built.
    #[error("client certificate verification: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
}

fn file_error(path: &Path, message: impl std::fmt::Display) -> TlsError {
    TlsError::File {
        path: path.to_path_buf(),
        message: message.to_string(),
    }
}

/// Reads every certificate in a PEM file.
///
/// # Errors
/// When the file cannot be read or holds no certificate.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = std::fs::read(path).map_err(|e| file_error(path, e))?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error(path, format!("invalid PEM: {e}")))?;
    if certs.is_empty() {
        return Err(file_error(path, "no certificate found"));
    }
    Ok(certs)
}

/// Reads the first private key (PKCS#1, PKCS#8 or SEC1) in a PEM file.
///
/// # Errors
/// When the file cannot be read or holds no unencrypted key.
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = std::fs::read(path).map_err(|e| file_error(path, e))?;
    if bytes.windows(b"ENCRYPTED".len()).any(|w| w == b"ENCRYPTED") {
        return Err(file_error(
            path,
            "encrypted private keys are not supported; decrypt it first (openssl pkey -in KEY -out PLAIN)",
        ));
    }
    PrivateKeyDer::from_pem_slice(&bytes)
        .map_err(|e| file_error(path, format!("no private key: {e}")))
}

fn root_store(ca: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in load_certs(ca)? {
        roots
            .add(cert)
            .map_err(|e| file_error(ca, format!("unusable CA certificate: {e}")))?;
    }
    Ok(roots)
}

/// Server side of a listener.
#[derive(Debug, Clone, Default)]
pub struct ServerTls {
    /// Certificate chain (PEM).
    pub cert: PathBuf,
    /// Private key (PEM).
    pub key: PathBuf,
    /// CA for client certificates; used only when `request_client_cert` is set.
    pub client_ca: Option<PathBuf>,
    /// Ask clients for a certificate, verified against `client_ca`.
    pub request_client_cert: bool,
    /// Refuse clients that present no valid certificate.
    pub require_client_cert: bool,
    /// ALPN protocols to offer, most preferred first (e.g. `h2`, `http/1.1`).
    pub alpn: Vec<Vec<u8>>,
    /// Offer TLS 1.3 only (otherwise 1.2 and 1.3).
    pub tls13_only: bool,
}

impl ServerTls {
    /// Builds the rustls configuration.
    ///
    /// # Errors
    /// When a file is unreadable or the key does not match the certificate.
    pub fn build(&self) -> Result<Arc<ServerConfig>, TlsError> {
        let certs = load_certs(&self.cert)?;
        let key = load_key(&self.key)?;
        let builder = if self.tls13_only {
            ServerConfig::builder_with_protocol_versions(&[&rustls::version::TLS13])
        } else {
            ServerConfig::builder()
        };
        let builder = match (&self.client_ca, self.request_client_cert) {
            (Some(ca), true) => {
                let verifier = WebPkiClientVerifier::builder(Arc::new(root_store(ca)?));
                let verifier = if self.require_client_cert {
                    verifier.build()?
                } else {
                    verifier.allow_unauthenticated().build()?
                };
                builder.with_client_cert_verifier(verifier)
            }
            _ => builder.with_no_client_auth(),
        };
        let mut config = builder.with_single_cert(certs, key)?;
        config.alpn_protocols.clone_from(&self.alpn);
        Ok(Arc::new(config))
    }
}

/// Client side, for connections to `https://` upstreams.
#[derive(Debug, Clone, Default)]
pub struct ClientTls {
    /// Trust these CAs instead of the built-in web roots.
    pub ca: Option<PathBuf>,
    /// Client certificate chain (PEM), sent when the upstream asks for one.
    pub cert: Option<PathBuf>,
    /// Key of the client certificate.
    pub key: Option<PathBuf>,
    /// Skip verification of upstream certificates entirely.
    pub insecure: bool,
}

impl ClientTls {
    /// Builds the rustls configuration; ALPN is left for the connector to set.
    ///
    /// # Errors
    /// When a file is unreadable, or only one of `cert` and `key` is given.
    pub fn build(&self) -> Result<ClientConfig, TlsError> {
        let roots = match &self.ca {
            Some(ca) => root_store(ca)?,
            None => RootCertStore::from_iter(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        };
        let builder = ClientConfig::builder().with_root_certificates(roots);
        let mut config = match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => {
                builder.with_client_auth_cert(load_certs(cert)?, load_key(key)?)?
            }
            (None, None) => builder.with_no_client_auth(),
            (Some(path), None) | (None, Some(path)) => {
                return Err(file_error(
                    path,
                    "a client certificate needs both a certificate and a key",
                ));
            }
        };
        if self.insecure {
            config
                .dangerous()
                .set_certificate_verifier(Arc::new(NoVerification::new()));
        }
        Ok(config)
    }
}

/// Accepts any upstream certificate (`--insecure`): signatures are still checked so that the
/// handshake itself is sound, but the chain and the name are not.
#[derive(Debug)]
struct NoVerification {
    schemes: Vec<SignatureScheme>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl NoVerification {
    fn new() -> Self {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        Self {
            schemes: provider
                .signature_verification_algorithms
                .supported_schemes(),
            provider,
        }
    }
}

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.schemes.clone()
    }
}

//! Throw-away certificates for TLS tests: one CA that signs a server certificate (valid for
//! `127.0.0.1`, `::1` and `localhost`) and a client certificate, all written as PEM files.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// A CA plus a server and a client certificate it signed, stored in a temporary directory.
#[derive(Debug)]
pub struct TestCerts {
    dir: tempfile::TempDir,
    /// PEM of the CA certificate.
    pub ca_pem: String,
    /// PEM of the server certificate.
    pub server_cert_pem: String,
    /// PEM of the server key.
    pub server_key_pem: String,
    /// PEM of the client certificate.
    pub client_cert_pem: String,
    /// PEM of the client key.
    pub client_key_pem: String,
}

impl TestCerts {
    /// Generates a fresh CA, server and client certificate with the common name prefix `name`.
    pub fn generate(name: &str) -> anyhow::Result<Self> {
        crate::init_crypto();
        let ca_key = KeyPair::generate()?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params
            .distinguished_name
            .push(DnType::CommonName, format!("{name} test CA"));
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = ca_params.self_signed(&ca_key)?;
        let issuer = Issuer::new(ca_params, ca_key);

        let server_key = KeyPair::generate()?;
        let mut server_params = CertificateParams::new(vec![
            "localhost".to_owned(),
            "127.0.0.1".to_owned(),
            "::1".to_owned(),
        ])?;
        server_params
            .distinguished_name
            .push(DnType::CommonName, format!("{name} server"));
        server_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let server_cert = server_params.signed_by(&server_key, &issuer)?;

        let client_key = KeyPair::generate()?;
        let mut client_params = CertificateParams::new(vec!["client.test".to_owned()])?;
        client_params
            .distinguished_name
            .push(DnType::CommonName, format!("{name} client"));
        client_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let client_cert = client_params.signed_by(&client_key, &issuer)?;

        let certs = TestCerts {
            dir: tempfile::tempdir()?,
            ca_pem: ca_cert.pem(),
            server_cert_pem: server_cert.pem(),
            server_key_pem: server_key.serialize_pem(),
            client_cert_pem: client_cert.pem(),
            client_key_pem: client_key.serialize_pem(),
        };
        std::fs::write(certs.ca_path(), &certs.ca_pem)?;
        std::fs::write(certs.server_cert_path(), &certs.server_cert_pem)?;
        std::fs::write(certs.server_key_path(), &certs.server_key_pem)?;
        std::fs::write(certs.client_cert_path(), &certs.client_cert_pem)?;
        std::fs::write(certs.client_key_path(), &certs.client_key_pem)?;
        Ok(certs)
    }

    /// The directory holding the PEM files.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
    /// `ca.pem`.
    pub fn ca_path(&self) -> PathBuf {
        self.dir().join("ca.pem")
    }
    /// `server.pem`.
    pub fn server_cert_path(&self) -> PathBuf {
        self.dir().join("server.pem")
    }
    /// `server-key.pem`.
    pub fn server_key_path(&self) -> PathBuf {
        self.dir().join("server-key.pem")
    }
    /// `client.pem`.
    pub fn client_cert_path(&self) -> PathBuf {
        self.dir().join("client.pem")
    }
    /// `client-key.pem`.
    pub fn client_key_path(&self) -> PathBuf {
        self.dir().join("client-key.pem")
    }

    fn ca_der(&self) -> anyhow::Result<CertificateDer<'static>> {
        Ok(CertificateDer::from_pem_slice(self.ca_pem.as_bytes())?)
    }
    fn chain(pem: &str) -> anyhow::Result<Vec<CertificateDer<'static>>> {
        Ok(vec![CertificateDer::from_pem_slice(pem.as_bytes())?])
    }
    fn key(pem: &str) -> anyhow::Result<PrivateKeyDer<'static>> {
        Ok(PrivateKeyDer::from_pem_slice(pem.as_bytes())?)
    }

    /// A root store trusting only this CA.
    pub fn roots(&self) -> anyhow::Result<rustls::RootCertStore> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca_der()?)?;
        Ok(roots)
    }

    /// A server configuration with the server certificate. With `require_client_cert`, clients
    /// must present a certificate signed by this CA. `alpn` lists the protocols offered.
    pub fn server_config(
        &self,
        require_client_cert: bool,
        alpn: &[&[u8]],
    ) -> anyhow::Result<Arc<rustls::ServerConfig>> {
        crate::init_crypto();
        let builder = rustls::ServerConfig::builder();
        let builder = if require_client_cert {
            let verifier =
                rustls::server::WebPkiClientVerifier::builder(Arc::new(self.roots()?)).build()?;
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        let mut config = builder.with_single_cert(
            Self::chain(&self.server_cert_pem)?,
            Self::key(&self.server_key_pem)?,
        )?;
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(Arc::new(config))
    }

    /// A client configuration trusting this CA, optionally presenting the client certificate,
    /// offering the given ALPN protocols.
    pub fn client_config(
        &self,
        with_client_cert: bool,
        alpn: &[&[u8]],
    ) -> anyhow::Result<rustls::ClientConfig> {
        crate::init_crypto();
        let builder = rustls::ClientConfig::builder().with_root_certificates(self.roots()?);
        let mut config = if with_client_cert {
            builder.with_client_auth_cert(
                Self::chain(&self.client_cert_pem)?,
                Self::key(&self.client_key_pem)?,
            )?
        } else {
            builder.with_no_client_auth()
        };
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(config)
    }

    /// A reqwest client trusting this CA (HTTP/1.1 and HTTP/2 offered), optionally with the
    /// client certificate.
    pub fn reqwest_client(&self, with_client_cert: bool) -> anyhow::Result<reqwest::Client> {
        let tls = self.client_config(with_client_cert, &[b"h2", b"http/1.1"])?;
        Ok(reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(crate::IO_TIMEOUT)
            .build()?)
    }

    /// Opens a TLS connection to `127.0.0.1:port` (server name `localhost`).
    pub async fn connect(
        &self,
        port: u16,
        with_client_cert: bool,
        alpn: &[&[u8]],
    ) -> anyhow::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
        let config = self.client_config(with_client_cert, alpn)?;
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let tcp = tokio::net::TcpStream::connect(crate::loopback(port)).await?;
        let name = rustls::pki_types::ServerName::try_from("localhost")?;
        Ok(connector.connect(name, tcp).await?)
    }
}

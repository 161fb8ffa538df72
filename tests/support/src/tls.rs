//! A throwaway certificate authority for the HTTPS origin.
//!
//! Each [`TestCa`] is fresh: a CA certificate (written to a PEM file so curl
//! can trust it with `--cacert`) and a server certificate it signed for
//! `localhost` and the IP `127.0.0.1`. Tunnel tests then prove end-to-end TLS
//! through the bridge: curl only completes the handshake if the bytes it sees
//! are exactly the origin's.

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tempfile::NamedTempFile;

/// A test CA and the TLS server configuration of a certificate it issued.
pub struct TestCa {
    ca_pem: NamedTempFile,
    server_config: Arc<rustls::ServerConfig>,
}

impl TestCa {
    /// Generates a CA and a server certificate for `localhost` / `127.0.0.1`.
    pub fn generate() -> Self {
        let ca_key = KeyPair::generate().expect("generate CA key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "Gangway Test CA");
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = ca_params.self_signed(&ca_key).expect("self-sign CA");

        let server_key = KeyPair::generate().expect("generate server key");
        let mut server_params =
            CertificateParams::new(vec!["localhost".to_owned()]).expect("server params");
        server_params
            .subject_alt_names
            .push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        server_params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        server_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let server_cert = server_params
            .signed_by(&server_key, &ca_cert, &ca_key)
            .expect("sign server certificate");

        let mut ca_pem = tempfile::Builder::new()
            .prefix("gangway-test-ca-")
            .suffix(".pem")
            .tempfile()
            .expect("create CA PEM file");
        ca_pem
            .write_all(ca_cert.pem().as_bytes())
            .expect("write CA PEM file");
        ca_pem.flush().expect("flush CA PEM file");

        let chain: Vec<CertificateDer<'static>> =
            vec![server_cert.der().clone(), ca_cert.der().clone()];
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server_key.serialize_der()));
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("rustls protocol versions")
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .expect("rustls server certificate");
        // The origin speaks HTTP/1.1 only; say so, so curl does not try h2.
        config.alpn_protocols = vec![b"http/1.1".to_vec()];

        TestCa {
            ca_pem,
            server_config: Arc::new(config),
        }
    }

    /// The CA certificate as a PEM file, for `curl --cacert`.
    pub fn ca_file(&self) -> &Path {
        self.ca_pem.path()
    }

    /// The server side: the issued certificate and its key.
    pub fn server_config(&self) -> Arc<rustls::ServerConfig> {
        Arc::clone(&self.server_config)
    }
}

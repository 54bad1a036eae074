//! TLS for `rediss://` URLs with rustls (ring): trust the CA of `redis.ca_file` (else the
//! system roots), present a client certificate when `cert_file` and `key_file` are set, and
//! skip certificate checks only with the explicit `insecure_skip_verify = true`.

use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, ring};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use super::RedisConfig;

/// What is wrong, naming the config key.
pub type TlsError = (&'static str, String);

fn certs(key: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    crate::pem::certificates(path).map_err(|e| (key, e))
}

fn roots(config: &RedisConfig) -> Result<RootCertStore, TlsError> {
    let mut store = RootCertStore::empty();
    match &config.ca_file {
        Some(path) => {
            for cert in certs("redis.ca_file", path)? {
                store
                    .add(cert)
                    .map_err(|e| ("redis.ca_file", format!("{}: {e}", path.display())))?;
            }
        }
        None => {
            let native = rustls_native_certs::load_native_certs();
            store.add_parsable_certificates(native.certs);
            if store.is_empty() {
                return Err(("redis.ca_file", "no system CA certificates found; set redis.ca_file to the CA that signed Redis's certificate".into()));
            }
        }
    }
    Ok(store)
}

/// Accepts any certificate: only with `insecure_skip_verify = true`.
#[derive(Debug)]
struct NoVerification(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
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
            &self.0.signature_verification_algorithms,
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
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The rustls client configuration for `config`.
pub fn client_config(config: &RedisConfig) -> Result<ClientConfig, TlsError> {
    let provider = Arc::new(ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| ("redis.url", e.to_string()))?;
    let builder = if config.insecure_skip_verify {
        tracing::warn!("redis.insecure_skip_verify = true: Redis's TLS certificate is NOT checked");
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerification(provider)))
    } else {
        builder.with_root_certificates(roots(config)?)
    };
    match (&config.cert_file, &config.key_file) {
        (Some(cert), Some(key)) => {
            let chain = certs("redis.cert_file", cert)?;
            let key = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| ("redis.key_file", format!("{}: {e}", key.display())))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| ("redis.key_file", e.to_string()))
        }
        (None, None) => Ok(builder.with_no_client_auth()),
        _ => Err((
            "redis.cert_file",
            "set both redis.cert_file and redis.key_file for a client certificate, or neither"
                .into(),
        )),
    }
}

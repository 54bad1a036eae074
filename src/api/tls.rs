//! HTTPS for the engine's listener (`[http] tls_cert_file` + `tls_key_file`), with rustls
//! (ring), so tokens do not cross a network in clear text. The handshake runs on the
//! connection's own task in [`super::server`], under the header timeout and the connection
//! cap: a client that connects and says nothing holds up no one.

use std::io;
use std::path::Path;
use std::sync::Arc;

use rustls::ServerConfig;
use rustls::crypto::ring;
use rustls::pki_types::PrivateKeyDer;
use rustls::pki_types::pem::PemObject;
use tokio_rustls::TlsAcceptor;

fn bad(path: &Path, e: impl std::fmt::Display) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("{}: {e}", path.display()),
    )
}

/// The acceptor for the server's TLS settings from PEM files (certificate chain, private key).
pub fn acceptor(cert: &Path, key: &Path) -> io::Result<TlsAcceptor> {
    let chain = crate::pem::certificates(cert)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| bad(key, e))?;
    let config = ServerConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(cert, e))?
        .with_no_client_auth()
        .with_single_cert(chain, key_der)
        .map_err(|e| bad(cert, e))?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

//! PEM certificate files, read one way for Redis's TLS, the HTTPS listener and https
//! webhooks, and the client TLS config built from them for webhooks and the OTLP exporter.

use std::path::Path;
use std::sync::Arc;

use rustls::crypto::ring;
use rustls::{ClientConfig, RootCertStore};

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// Every certificate in the PEM file at `path`. The error names the file: unreadable, not
/// PEM, or holding no certificate.
pub(crate) fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{} holds no PEM certificate", path.display()));
    }
    Ok(certs)
}

/// The client TLS of https webhooks and the OTLP exporter: rustls (ring) trusting the CA
/// certificates of `ca_file`, else the system's. Without any,
/// an `https://` URL is refused at start (every request would fail); an `http://` one does
/// not need them.
pub(crate) fn client_config(https: bool, ca_file: Option<&Path>) -> Result<ClientConfig, String> {
    let mut roots = RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let read = certificates(path).map_err(|e| format!("handler.ca_file {e}"))?;
            let (added, _) = roots.add_parsable_certificates(read);
            if added == 0 {
                return Err(format!(
                    "handler.ca_file {}: none of its certificates can serve as a CA",
                    path.display()
                ));
            }
        }
        // An http:// webhook has no use for the system's store.
        None if https => {
            roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
        }
        None => {}
    }
    if https && roots.is_empty() {
        return Err("no system CA certificates found for the https:// endpoint (a webhook, the OTLP collector); install ca-certificates, or point SSL_CERT_FILE at the CA that signed the endpoint's certificate".into());
    }
    let config = ClientConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS for an https:// endpoint: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(config)
}

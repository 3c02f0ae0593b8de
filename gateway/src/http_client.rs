//! The HTTP client the sync reaches peers (and this server's own API) with: reqwest over rustls,
//! with *ring* as its cryptography (already built for NATS' TLS: reqwest's default, aws-lc-rs,
//! would compile a second C library for nothing) and the platform's root certificates, plus the
//! CA a scheme's own peers may use (`--peer-ca`).

use std::path::Path;
use std::time::Duration;

/// Makes *ring* the process's TLS provider. reqwest is built without one and refuses to build a
/// client before; every binary (and test) calls this first. Calling it again does nothing.
pub fn install_crypto_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // an error means a provider is installed already, which is what is wanted
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// A client with this timeout per request, trusting also the PEM certificates of `ca` when given.
pub fn client(timeout: Duration, ca: Option<&Path>) -> Result<reqwest::Client, String> {
    install_crypto_provider();
    let mut builder = reqwest::Client::builder().timeout(timeout);
    if let Some(path) = ca {
        let pem = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let certificates = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| format!("{}: not PEM certificates: {e}", path.display()))?;
        if certificates.is_empty() {
            return Err(format!("{}: holds no PEM certificate", path.display()));
        }
        builder = builder.tls_certs_merge(certificates);
    }
    builder.build().map_err(|e| format!("HTTP client: {e}"))
}

/// An error with the causes under it ("error sending request: … invalid peer certificate:
/// UnknownIssuer"): reqwest's own message names only the request.
pub fn why(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let said = cause.to_string();
        if !text.contains(&said) {
            text = format!("{text}: {said}");
        }
        source = cause.source();
    }
    text
}

//! The run's one HTTP client, for tokens and lookups alike: one proxy path
//! (`HTTPS_PROXY`/`NO_PROXY`), one timeout, one set of TLS roots, no redirect followed, one
//! describer of failures. (Lookups went through hyper directly for 18% less
//! CPU per row on an unlimited benchmark: 0.05% of a core at the default 20 a second.)

use std::error::Error as StdError;
use std::time::Duration;

/// The `User-Agent` of every request.
pub const AGENT: &str = concat!("callinfo/", env!("CARGO_PKG_VERSION"));

/// One pooled keep-alive reqwest client for the whole run: the token requests and the
/// lookups. reqwest's own retry of refused requests is off: a
/// lookup is retried by the one retry loop (`engine::lookup`), which paces and counts it.
pub fn reqwest_client(
    timeout: Duration,
    pool: usize,
    mut tls: rustls::ClientConfig,
) -> reqwest::Result<reqwest::Client> {
    tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .timeout(timeout)
        .connect_timeout(connect_timeout(timeout))
        .pool_max_idle_per_host(pool)
        .tcp_nodelay(true)
        .retry(reqwest::retry::never().max_retries_per_request(0))
        // A redirect is never followed: the token request would post the app secret again
        // to wherever the answer points, and a lookup's bearer token with it.
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(AGENT)
        .build()
}

fn connect_timeout(timeout: Duration) -> Duration {
    timeout.min(Duration::from_secs(10))
}

/// The certificates of a PEM bundle (`--ca-cert`); none if it holds no certificate.
pub fn pem_certificates(pem: &[u8]) -> Vec<rustls::pki_types::CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::pem_slice_iter(pem)
        .filter_map(Result::ok)
        .collect()
}

/// TLS: rustls with the system's roots plus webpki's, and `--ca-cert`'s; HTTP/2 when the
/// server offers it (ALPN). There is no switch to turn certificate checks off.
pub fn tls_config(ca_cert: Option<&[u8]>) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    // A system store that cannot be read (no /etc/ssl) leaves webpki's roots.
    roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    roots.add_parsable_certificates(ca_cert.map(pem_certificates).unwrap_or_default());
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports TLS 1.2 and 1.3")
        .with_root_certificates(roots)
        .with_no_client_auth()
}

/// A reqwest failure in a few words (see [`describe`]); its own message names the URL,
/// so only its causes are read.
pub fn describe_reqwest(e: &reqwest::Error) -> String {
    let what = if e.is_connect() {
        "cannot connect"
    } else if e.is_body() || e.is_decode() {
        "connection lost while reading the answer"
    } else {
        "request failed"
    };
    match e.source() {
        Some(cause) => describe(what, cause),
        None => what.to_owned(),
    }
}

/// A transport failure as `what` plus the innermost of `e` and its causes ("connection
/// refused"), without the request's URL or headers, and what to check.
fn describe(what: &str, e: &(dyn StdError + 'static)) -> String {
    let mut cause = e;
    while let Some(inner) = cause.source() {
        cause = inner;
    }
    let cause = cause.to_string();
    format!("{what}: {cause}{}", hint(&cause))
}

/// What to check for a transport failure, where its cause says.
fn hint(cause: &str) -> &'static str {
    let lower = cause.to_ascii_lowercase();
    if lower.contains("invalidcontenttype") || lower.contains("corrupt message") {
        "; the server answered in plain HTTP, not TLS: use http:// in --base-url"
    } else if lower.contains("certificate") || lower.contains("tls") {
        "; TLS: the server's certificate is not trusted by this machine (see --ca-cert)"
    } else if lower.contains("refused") {
        "; nothing listens there: check the host and port of --base-url"
    } else if lower.contains("dns") || lower.contains("resolve") || lower.contains("lookup address")
    {
        "; DNS: the host name does not resolve"
    } else if lower.contains("proxy") {
        "; check HTTPS_PROXY / NO_PROXY"
    } else {
        ""
    }
}

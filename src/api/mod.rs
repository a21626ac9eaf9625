//! The CEC API: wire types, the token provider and the one-request client.

pub mod auth;
pub mod client;
pub mod model;

use std::time::Duration;

/// One pooled keep-alive client for the whole run (HTTP/2 when the server offers it via
/// ALPN). TLS is rustls with the system's roots plus webpki's; there is no switch to turn
/// certificate checks off. reqwest's own retry of refused requests is off: a lookup is
/// retried by the one retry loop (`engine::lookup`), which paces and counts it, and the
/// request copy that retry layer makes for every request was measurable per row.
pub fn http_client(
    timeout: Duration,
    pool: usize,
    ca_cert: Option<&[u8]>,
) -> reqwest::Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder();
    for cert in ca_cert
        .map(reqwest::Certificate::from_pem_bundle)
        .transpose()?
        .unwrap_or_default()
    {
        builder = builder.add_root_certificate(cert);
    }
    builder
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .pool_max_idle_per_host(pool)
        .tcp_nodelay(true)
        .retry(reqwest::retry::never().max_retries_per_request(0))
        .user_agent(concat!("callinfo/", env!("CARGO_PKG_VERSION")))
        .build()
}

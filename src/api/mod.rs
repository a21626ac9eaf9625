//! The CEC API: wire types, the token provider and the one-request client.

pub mod auth;
pub mod client;
pub mod model;

use std::time::Duration;

/// One pooled keep-alive client for the whole run (HTTP/2 when the server offers it via
/// ALPN). TLS is rustls with the system's roots plus webpki's; there is no switch to turn
/// certificate checks off.
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
        .user_agent(concat!("callinfo/", env!("CARGO_PKG_VERSION")))
        .build()
}

//! The CEC API: wire types, the token provider, the one-request client and its transport.

pub mod auth;
pub mod client;
pub mod gateway;
pub mod model;
pub mod transport;

use crate::config::Api;

/// The run's HTTP clients over one TLS set-up: reqwest for the token requests, and the
/// lookup client, `pool` keep-alive connections each.
pub fn clients(api: &Api, pool: usize) -> Result<(reqwest::Client, client::Client), String> {
    let tls = transport::tls_config(api.ca_cert.as_deref());
    let http = transport::reqwest_client(api.timeout, pool, tls.clone())
        .map_err(|e| format!("cannot set up the HTTP client: {e}"))?;
    let lookups = client::Client::new(http.clone(), tls, api, pool);
    Ok((http, lookups))
}

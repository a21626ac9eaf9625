//! The CEC API: wire types, the token provider, the one-request client, and the one HTTP
//! client both use.

pub mod auth;
pub mod client;
pub mod gateway;
pub mod model;
pub mod transport;

use crate::config::Api;

/// The run's one HTTP client (`pool` keep-alive connections), for the token requests, and
/// the lookup client over it.
pub fn clients(api: &Api, pool: usize) -> Result<(reqwest::Client, client::Client), String> {
    let tls = transport::tls_config(api.ca_cert.as_deref());
    let http = transport::reqwest_client(api.timeout, pool, tls)
        .map_err(|e| format!("cannot set up the HTTP client: {e}"))?;
    let lookups = client::Client::new(http.clone(), api);
    Ok((http, lookups))
}

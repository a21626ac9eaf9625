//! How a lookup request reaches the server, and what comes back: a status, headers and the
//! whole body, or why none came.
//!
//! Straight through hyper's pooled client when no proxy applies to the base URL. reqwest
//! 0.12 parses every request's URL twice more (its redirect policy, then the response's
//! URL) and wraps each request in its tower layers: in `perf` on the no-limit benchmark,
//! 18% of the CPU per row was reqwest's own, above hyper. Through reqwest when
//! `HTTP(S)_PROXY` applies, because reqwest speaks proxies (absolute-form requests,
//! CONNECT tunnels, proxy credentials) and hyper's client does not. Token requests, which
//! are rare, always go through reqwest. Both paths trust the same roots (`tls_config`).

use std::error::Error as StdError;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use reqwest::header::{HeaderMap, HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE, USER_AGENT};

use super::model::APP_KEY_HEADER;

/// The `User-Agent` of every request.
pub const AGENT: &str = concat!("callinfo/", env!("CARGO_PKG_VERSION"));

/// A complete HTTP answer.
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// No complete answer.
#[derive(Debug)]
pub enum Failed {
    /// Nothing, or not all of it, within `--timeout`; `status` when the head had come.
    Timeout { status: Option<u16> },
    /// The connection failed or broke; `status` when the head had come.
    Network {
        status: Option<u16>,
        message: String,
    },
}

/// Where lookups go, parsed once: parsing per request showed in profiles.
pub struct Target {
    url: reqwest::Url,
    uri: http::Uri,
}

impl Target {
    /// The request URI is read from the URL as normalised (an IDN host in punycode, odd
    /// characters percent-encoded), which is what reqwest would send too.
    pub fn parse(url: &str) -> Option<Target> {
        let url = reqwest::Url::parse(url).ok()?;
        let uri = url.as_str().parse().ok()?;
        Some(Target { url, uri })
    }

    pub fn as_str(&self) -> &str {
        self.url.as_str()
    }
}

type Hyper =
    hyper_util::client::legacy::Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

pub enum Transport {
    Direct {
        client: Box<Hyper>,
        timeout: Duration,
    },
    Proxied(reqwest::Client),
}

impl Transport {
    /// The direct path unless the environment's proxy settings apply to `target`, in which
    /// case `proxied` (reqwest, which reads the same variables) carries the lookups too.
    pub fn new(
        target: &Target,
        proxied: reqwest::Client,
        tls: rustls::ClientConfig,
        timeout: Duration,
        pool: usize,
    ) -> Transport {
        let matcher = hyper_util::client::proxy::matcher::Matcher::from_system();
        if matcher.intercept(&target.uri).is_some() {
            return Transport::Proxied(proxied);
        }
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(connect_timeout(timeout)));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_all_versions()
            .wrap_connector(http);
        let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(pool)
            .build(https);
        Transport::Direct {
            client: Box::new(client),
            timeout,
        }
    }

    /// POST a JSON `body` with the lookup's headers.
    pub async fn post(
        &self,
        target: &Target,
        bearer: &HeaderValue,
        app_key: &HeaderValue,
        body: Vec<u8>,
    ) -> Result<Reply, Failed> {
        match self {
            Transport::Direct { client, timeout } => {
                let mut request = http::Request::new(Full::new(Bytes::from(body)));
                *request.method_mut() = http::Method::POST;
                *request.uri_mut() = target.uri.clone();
                // Room for ours and the Host and Content-Length hyper adds: growing the map
                // on the way (twice, with a copy each time) showed in the profile.
                let headers = request.headers_mut();
                *headers = HeaderMap::with_capacity(8);
                headers.insert(AUTHORIZATION, bearer.clone());
                headers.insert(APP_KEY_HEADER, app_key.clone());
                headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
                headers.insert(ACCEPT, HeaderValue::from_static("*/*"));
                headers.insert(USER_AGENT, HeaderValue::from_static(AGENT));
                let mut status = None;
                let exchange = async {
                    let response = client.request(request).await.map_err(|e| {
                        if e.is_connect() && timed_out(&e) {
                            return Failed::Timeout { status: None };
                        }
                        let what = if e.is_connect() {
                            "cannot connect"
                        } else {
                            "request failed"
                        };
                        Failed::Network {
                            status: None,
                            message: describe(what, &e),
                        }
                    })?;
                    status = Some(response.status().as_u16());
                    let (head, body) = response.into_parts();
                    let body = body.collect().await.map_err(|e| Failed::Network {
                        status: Some(head.status.as_u16()),
                        message: describe("connection lost while reading the answer", &e),
                    })?;
                    Ok(Reply {
                        status: head.status.as_u16(),
                        headers: head.headers,
                        body: body.to_bytes(),
                    })
                };
                match tokio::time::timeout(*timeout, exchange).await {
                    Ok(done) => done,
                    Err(_) => Err(Failed::Timeout { status }),
                }
            }
            Transport::Proxied(client) => {
                let response = client
                    .post(target.url.clone())
                    .header(AUTHORIZATION, bearer.clone())
                    .header(APP_KEY_HEADER, app_key.clone())
                    .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
                    .body(body)
                    .send()
                    .await
                    .map_err(|e| failed(&e, None))?;
                let status = response.status().as_u16();
                let headers = response.headers().clone();
                let body = response
                    .bytes()
                    .await
                    .map_err(|e| failed(&e, Some(status)))?;
                Ok(Reply {
                    status,
                    headers,
                    body,
                })
            }
        }
    }
}

fn failed(e: &reqwest::Error, status: Option<u16>) -> Failed {
    if e.is_timeout() {
        Failed::Timeout { status }
    } else {
        Failed::Network {
            status,
            message: describe_reqwest(e),
        }
    }
}

/// One pooled keep-alive reqwest client for the whole run: the token requests, and the
/// lookups when they go through a proxy. reqwest's own retry of refused requests is off: a
/// lookup is retried by the one retry loop (`engine::lookup`), which paces and counts it.
pub fn reqwest_client(
    timeout: Duration,
    pool: usize,
    mut tls: rustls::ClientConfig,
) -> reqwest::Result<reqwest::Client> {
    // hyper-rustls sets ALPN itself and refuses a config that has it; reqwest does not.
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

/// TLS for both paths: rustls with the system's roots plus webpki's, and `--ca-cert`'s;
/// HTTP/2 when the server offers it (ALPN, set by each path). There is no switch to turn certificate checks off.
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

/// A connection attempt that ran out of time is a timeout, as reqwest counts it.
fn timed_out(e: &(dyn StdError + 'static)) -> bool {
    let mut cause = e.source();
    while let Some(c) = cause {
        if c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
        {
            return true;
        }
        cause = c.source();
    }
    false
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_as_normalised() {
        let t = Target::parse("https://例え.jp/a b/x").unwrap();
        assert_eq!(t.uri.host(), Some("xn--r8jz45g.jp"));
        assert_eq!(t.uri.path(), "/a%20b/x");
        assert_eq!(t.as_str(), "https://xn--r8jz45g.jp/a%20b/x");
        assert!(Target::parse("http://127.0.0.1:8080/p").is_some());
    }
}

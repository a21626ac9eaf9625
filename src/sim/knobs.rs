//! The simulator's command-line knobs: how it should misbehave. With none given it answers
//! every valid request correctly, at once, with no limit.

use crate::secret::Secret;

/// Flags of `callinfo simulate`, flattened into its subcommand by the CLI.
///
/// Every random share is drawn from `--seed`, so a failing test can be replayed exactly.
#[derive(clap::Args, Clone, Debug)]
pub struct Knobs {
    /// App key the token endpoint accepts.
    #[arg(
        long,
        env = "CEC_APP_KEY",
        default_value = "demo",
        hide_env_values = true
    )]
    pub app_key: String,
    /// App secret the token endpoint accepts (a [`Secret`]: never in a log line, even a
    /// simulator's).
    #[arg(
        long,
        env = "CEC_APP_SECRET",
        default_value = "demo",
        hide_env_values = true,
        value_parser = |s: &str| Ok::<_, std::convert::Infallible>(Secret::new(s))
    )]
    pub app_secret: Secret,
    /// Seeds every random share (per-request faults, token errors).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Cap in seconds on the token lifetime granted (the platform's own cap is 3600).
    #[arg(long, value_name = "SECS", default_value_t = 3600)]
    pub token_lifetime: u64,
    /// At most N requests (token + lookup) accepted in any sliding second; 0 = no limit.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub limit: u32,
    /// At most N requests (token + lookup) accepted in any sliding minute; 0 = no limit.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub limit_per_minute: u32,
    /// How errors are answered: `plain`, as the API document says; or `apig`, as Huawei's
    /// API gateway in front of CEC does: a code, message and request ID in every error body,
    /// `X-Request-Id` on every answer, no `Retry-After`, and the limit stated in a 429's
    /// message (`limit:10,time:1 second`).
    #[arg(long, value_enum, default_value_t = Gateway::Plain)]
    pub gateway: Gateway,
    /// Seconds announced in `Retry-After` on a 429.
    #[arg(long, value_name = "SECS", default_value_t = 1)]
    pub retry_after: u64,
    /// Send `Retry-After` as an HTTP date instead of seconds (gateways do both).
    #[arg(long)]
    pub retry_after_date: bool,
    /// Delay added before every lookup answer.
    #[arg(long, value_name = "MS", default_value_t = 0)]
    pub latency_ms: u64,
    /// Share of lookups answered with `--error-status`.
    #[arg(long, value_name = "F", default_value_t = 0.0, value_parser = parse_share)]
    pub error_share: f64,
    /// Status of the injected errors.
    #[arg(long, value_name = "CODE", default_value_t = 503,
          value_parser = clap::value_parser!(u16).range(400..=599))]
    pub error_status: u16,
    /// Share of lookups whose connection is cut in the middle of the answer.
    #[arg(long, value_name = "F", default_value_t = 0.0, value_parser = parse_share)]
    pub drop_share: f64,
    /// Share of lookups never answered (the client's timeout must fire).
    #[arg(long, value_name = "F", default_value_t = 0.0, value_parser = parse_share)]
    pub hang_share: f64,
    /// Share of lookups answered 200 with a body that is not JSON.
    #[arg(long, value_name = "F", default_value_t = 0.0, value_parser = parse_share)]
    pub malformed_share: f64,
    /// Share of call IDs answered `{}` (a function of the call ID alone).
    #[arg(long, value_name = "F", default_value_t = 0.0, value_parser = parse_share)]
    pub not_found_share: f64,
    /// Share of call IDs whose caller and called have 20 to 25 digits.
    #[arg(long, value_name = "F", default_value_t = 0.0, value_parser = parse_share)]
    pub long_number_share: f64,
    /// Send caller and called as JSON strings instead of numbers.
    #[arg(long)]
    pub string_numbers: bool,
    /// Share of token requests answered 503.
    #[arg(long, value_name = "F", default_value_t = 0.0, value_parser = parse_share)]
    pub token_error_share: f64,
    /// Delay added before every token answer (a slow identity service).
    #[arg(long, value_name = "MS", default_value_t = 0)]
    pub token_latency_ms: u64,
    /// Token requests from number N (0-based) on are answered 503 ...
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub token_fail_from: u64,
    /// ... this many of them (0: none) ...
    #[arg(long, value_name = "K", default_value_t = 0)]
    pub token_fail_count: u64,
    /// ... with this status (429 comes with `Retry-After`, as the limiter's).
    #[arg(long, value_name = "CODE", default_value_t = 503,
          value_parser = clap::value_parser!(u16).range(400..=599))]
    pub token_fail_status: u16,
    /// Send this in the token answer's `Expires` instead of the lifetime granted (a
    /// platform that misreports it); the token still dies after the real lifetime.
    #[arg(long, value_name = "SECS")]
    pub token_expires: Option<u64>,
    /// How long lookups of `simslow-` call IDs take before their (correct) answer.
    #[arg(long, value_name = "MS", default_value_t = 10_000)]
    pub slow_ms: u64,
    /// Serve HTTPS with a throwaway CA, written to DIR/ca.pem for clients.
    #[arg(long, value_name = "DIR")]
    pub tls_dir: Option<std::path::PathBuf>,
    /// The day's quota: after this many requests (token and lookup) every request is
    /// answered as the gateway answers a used-up daily quota (429, `Daily quota exhausted`,
    /// no `Retry-After`) until `GET /__sim/quota?left=N` (or `left=none`) sets what is left.
    #[arg(long, value_name = "N")]
    pub daily_quota: Option<u64>,
    /// Answer every token request `307` to the same path under this base URL (a client
    /// that follows it posts the app secret there).
    #[arg(long, value_name = "URL")]
    pub token_redirect: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Gateway {
    Plain,
    Apig,
}

/// Must match the clap defaults above (a unit test checks it), so in-process tests get the
/// same simulator as `callinfo simulate` with no flags.
impl Default for Knobs {
    fn default() -> Self {
        Knobs {
            app_key: "demo".into(),
            app_secret: Secret::new("demo"),
            seed: 1,
            token_lifetime: 3600,
            limit: 0,
            limit_per_minute: 0,
            gateway: Gateway::Plain,
            retry_after: 1,
            retry_after_date: false,
            latency_ms: 0,
            error_share: 0.0,
            error_status: 503,
            drop_share: 0.0,
            hang_share: 0.0,
            malformed_share: 0.0,
            not_found_share: 0.0,
            long_number_share: 0.0,
            string_numbers: false,
            token_error_share: 0.0,
            token_latency_ms: 0,
            token_fail_from: 0,
            token_fail_count: 0,
            token_fail_status: 503,
            token_expires: None,
            slow_ms: 10_000,
            tls_dir: None,
            token_redirect: None,
            daily_quota: None,
        }
    }
}

fn parse_share(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(f) if (0.0..=1.0).contains(&f) => Ok(f),
        _ => Err(format!("`{s}` is not a share between 0 and 1")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        knobs: Knobs,
    }

    #[test]
    fn default_matches_flag_defaults() {
        let mut parsed = Cli::parse_from(["simulate"]).knobs;
        // The environment of the test run may set these two.
        parsed.app_key = "demo".into();
        parsed.app_secret = Secret::new("demo");
        assert_eq!(format!("{parsed:?}"), format!("{:?}", Knobs::default()));
    }

    #[test]
    fn shares_are_checked() {
        assert!(Cli::try_parse_from(["simulate", "--error-share", "1.5"]).is_err());
        let cli = Cli::try_parse_from(["simulate", "--drop-share", "0.25", "--limit", "7"]);
        let knobs = cli.unwrap().knobs;
        assert_eq!((knobs.drop_share, knobs.limit), (0.25, 7));
    }
}

//! Configuration of the S3 backend (explicit, or from `-o` options and the environment) and
//! the SDK client it drives.
//!
//! No `aws-config`: credentials are static, the region is given, and nothing probes instance
//! metadata or reads `~/.aws`. TLS is rustls with ring, so no C crypto library is built.

use std::fmt;
use std::time::Duration;

use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region, RequestChecksumCalculation};
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};

use crate::url::{BackendOptions, UrlError};

/// How long to wait for a TCP (and TLS) connection.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default for [`S3Config::read_timeout`].
pub const READ_TIMEOUT: Duration = Duration::from_secs(60);
/// The slowest upload rate tolerated before a request counts as hung, in bytes per second.
/// Bounds a big upload's time (60 s + size / rate) without failing slow but working links.
pub(crate) const MIN_UPLOAD_RATE: u64 = 16 << 10;

/// S3's smallest multipart part (all but the last).
pub const MIN_PART_SIZE: u64 = 5 << 20;
/// S3's largest part count.
pub(crate) const MAX_PARTS: u64 = 10_000;

/// Which service the bucket lives on; decides the cost class and how the location reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavor {
    /// Any S3-compatible service.
    S3,
    /// Backblaze B2 through its S3-compatible API.
    B2,
}

impl Flavor {
    /// "s3" or "b2".
    pub fn name(self) -> &'static str {
        match self {
            Flavor::S3 => "s3",
            Flavor::B2 => "b2",
        }
    }
}

/// Static credentials. `Debug` shows only the access key id.
#[derive(Clone)]
pub struct S3Credentials {
    /// The access key id (B2: the application key id).
    pub access_key_id: String,
    /// The secret access key (B2: the application key).
    pub secret_access_key: String,
    /// An STS session token, if the key is temporary.
    pub session_token: Option<String>,
}

impl S3Credentials {
    /// A key pair without session token.
    pub fn new(access_key_id: impl Into<String>, secret_access_key: impl Into<String>) -> Self {
        Self {
            access_key_id: access_key_id.into(),
            secret_access_key: secret_access_key.into(),
            session_token: None,
        }
    }
}

impl fmt::Debug for S3Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"***")
            .field("session_token", &self.session_token.as_ref().map(|_| "***"))
            .finish()
    }
}

/// Everything the S3 backend needs; build it with [`S3Config::new`] and adjust the fields,
/// or let [`Location::open`](crate::Location::open) build it from options and the environment.
#[derive(Clone, Debug)]
pub struct S3Config {
    /// Endpoint URL, `http://` or `https://`, without a path.
    pub endpoint: String,
    /// Bucket name.
    pub bucket: String,
    /// Repository prefix inside the bucket (no leading or trailing `/`; may be empty).
    pub prefix: String,
    /// Signing region.
    pub region: String,
    /// Credentials.
    pub credentials: S3Credentials,
    /// Path-style addressing (`endpoint/bucket/key`) instead of `bucket.endpoint/key`.
    pub path_style: bool,
    /// Requests in flight at once (reported in the backend's properties).
    pub connections: usize,
    /// File bodies larger than this go up as multipart uploads.
    pub multipart_threshold: u64,
    /// Size of each multipart part (at least [`MIN_PART_SIZE`]).
    pub part_size: u64,
    /// S3 or B2.
    pub flavor: Flavor,
    /// How long a request may wait for its answer, or a download for its next bytes, before
    /// it fails as transient (uploads get more: see `MIN_UPLOAD_RATE`).
    pub read_timeout: Duration,
    /// Keys per listing page (`max-keys`); `None` leaves it to the server (1,000 on S3).
    pub list_page_size: Option<u32>,
    /// Whether the server honours `If-None-Match: *` on PutObject; `None` (the default)
    /// lets the first exclusive create find out.
    pub conditional_writes: Option<bool>,
    /// Whether a delete removes every version of the key (ListObjectVersions, then
    /// DeleteObject with each version id) instead of a plain DeleteObject, which on B2 (and
    /// any versioned bucket) only hides the file: hidden versions stay billed until a
    /// lifecycle rule removes them. On by default for `b2:`; needs a key that may delete
    /// file versions (B2's `deleteFiles`). `-o s3.delete-versions=false` turns it off.
    pub delete_versions: bool,
}

impl S3Config {
    /// Defaults: region us-east-1, path-style, 8 connections, multipart above 64 MiB in
    /// 16 MiB parts, 60 s read timeout. Packs are about 16 MiB after padding, so each goes up
    /// as one PutObject: a multipart upload of the same pack bills a create, every part and a
    /// complete (4 class-A requests instead of 1), for no gain at this size.
    pub fn new(
        endpoint: impl Into<String>,
        bucket: impl Into<String>,
        prefix: impl Into<String>,
        credentials: S3Credentials,
    ) -> Self {
        Self {
            endpoint: endpoint.into().trim_end_matches('/').to_owned(),
            bucket: bucket.into(),
            prefix: prefix.into().trim_matches('/').to_owned(),
            region: "us-east-1".into(),
            credentials,
            path_style: true,
            connections: 8,
            multipart_threshold: 64 << 20,
            part_size: 16 << 20,
            flavor: Flavor::S3,
            read_timeout: READ_TIMEOUT,
            list_page_size: None,
            conditional_writes: None,
            delete_versions: false,
        }
    }

    /// Checks the fields that would otherwise fail confusingly on the first request.
    pub fn validate(&self) -> Result<(), String> {
        if !(self.endpoint.starts_with("http://") || self.endpoint.starts_with("https://")) {
            return Err(format!(
                "endpoint {:?} must start with http:// or https://",
                self.endpoint
            ));
        }
        if self.bucket.is_empty() || self.bucket.contains('/') {
            return Err(format!("bucket name {:?} is not valid", self.bucket));
        }
        if self.credentials.access_key_id.is_empty()
            || self.credentials.secret_access_key.is_empty()
        {
            return Err("the access key id and secret key must not be empty".into());
        }
        if self.connections == 0 {
            return Err("connections must be at least 1".into());
        }
        if self.list_page_size == Some(0) {
            return Err("the list page size must be at least 1".into());
        }
        if self.part_size < MIN_PART_SIZE {
            return Err(format!("part size must be at least {MIN_PART_SIZE} bytes"));
        }
        Ok(())
    }

    /// For an `s3:` location: credentials from `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY`
    /// (+ `AWS_SESSION_TOKEN`); region from `s3.region`, `AWS_DEFAULT_REGION`, `AWS_REGION`,
    /// else us-east-1. `env` looks up an environment variable (tests pass a map).
    pub fn for_s3(
        endpoint: &str,
        bucket: &str,
        prefix: &str,
        opts: &BackendOptions,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, UrlError> {
        check_option_keys(opts)?;
        let creds = aws_credentials(env).ok_or_else(|| {
            UrlError::Open(
                "s3 needs credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY".into(),
            )
        })?;
        let mut cfg = Self::new(endpoint, bucket, prefix, creds);
        cfg.region = opts
            .get("s3.region")
            .map(str::to_owned)
            .or_else(|| env("AWS_DEFAULT_REGION"))
            .or_else(|| env("AWS_REGION"))
            .unwrap_or_else(|| "us-east-1".into());
        apply_common_options(&mut cfg, opts)?;
        Ok(cfg)
    }

    /// For a `b2:` location, through B2's S3-compatible API: endpoint from `b2.endpoint` or
    /// `B2_ENDPOINT`, else built from the region (`b2.region` or `B2_REGION`, e.g.
    /// us-west-004); credentials from `B2_ACCOUNT_ID` / `B2_ACCOUNT_KEY`, else the AWS ones.
    pub fn for_b2(
        bucket: &str,
        prefix: &str,
        opts: &BackendOptions,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, UrlError> {
        check_option_keys(opts)?;
        let region = opts
            .get("b2.region")
            .map(str::to_owned)
            .or_else(|| env("B2_REGION"));
        let endpoint = opts
            .get("b2.endpoint")
            .map(str::to_owned)
            .or_else(|| env("B2_ENDPOINT"));
        let (endpoint, region) =
            match (endpoint, region) {
                (Some(e), r) => {
                    let r = r.or_else(|| region_of_b2_endpoint(&e));
                    (e, r.unwrap_or_else(|| "us-east-1".into()))
                }
                (None, Some(r)) => (format!("https://s3.{r}.backblazeb2.com"), r),
                (None, None) => return Err(UrlError::Open(
                    "b2 needs the bucket's region or endpoint: set B2_REGION (e.g. us-west-004, \
                     shown on the bucket's page) or B2_ENDPOINT, or pass -o b2.region=..."
                        .into(),
                )),
            };
        let id = env("B2_ACCOUNT_ID").filter(|s| !s.is_empty());
        let key = env("B2_ACCOUNT_KEY").filter(|s| !s.is_empty());
        let creds = match (id, key) {
            (Some(id), Some(key)) => Some(S3Credentials::new(id, key)),
            _ => aws_credentials(env),
        }
        .ok_or_else(|| {
            UrlError::Open(
                "b2 needs an application key: set B2_ACCOUNT_ID (the key id) and \
                 B2_ACCOUNT_KEY (the application key)"
                    .into(),
            )
        })?;
        let mut cfg = Self::new(endpoint, bucket, prefix, creds);
        cfg.region = region;
        cfg.flavor = Flavor::B2;
        cfg.delete_versions = true;
        apply_common_options(&mut cfg, opts)?;
        Ok(cfg)
    }
}

/// `s3.us-west-004.backblazeb2.com` → `us-west-004`.
fn region_of_b2_endpoint(endpoint: &str) -> Option<String> {
    let host = endpoint.split_once("://").map_or(endpoint, |(_, h)| h);
    let host = host.split(['/', ':']).next()?;
    let rest = host.strip_prefix("s3.")?;
    let region = rest.strip_suffix(".backblazeb2.com")?;
    (!region.is_empty()).then(|| region.to_owned())
}

fn aws_credentials(env: &dyn Fn(&str) -> Option<String>) -> Option<S3Credentials> {
    let id = env("AWS_ACCESS_KEY_ID").filter(|s| !s.is_empty())?;
    let secret = env("AWS_SECRET_ACCESS_KEY").filter(|s| !s.is_empty())?;
    Some(S3Credentials {
        access_key_id: id,
        secret_access_key: secret,
        session_token: env("AWS_SESSION_TOKEN").filter(|s| !s.is_empty()),
    })
}

/// Options this backend understands; other `s3.*` / `b2.*` keys are typos worth reporting.
const KNOWN_OPTIONS: &[&str] = &[
    "s3.region",
    "s3.path-style",
    "s3.connections",
    "s3.multipart-threshold",
    "s3.part-size",
    "s3.list-page-size",
    "s3.delete-versions",
    "b2.region",
    "b2.endpoint",
];

fn check_option_keys(opts: &BackendOptions) -> Result<(), UrlError> {
    for k in opts.keys() {
        if (k.starts_with("s3.") || k.starts_with("b2.")) && !KNOWN_OPTIONS.contains(&k) {
            return Err(UrlError::Option(format!(
                "{k} is unknown (known: {})",
                KNOWN_OPTIONS.join(", ")
            )));
        }
    }
    Ok(())
}

fn apply_common_options(cfg: &mut S3Config, opts: &BackendOptions) -> Result<(), UrlError> {
    let flag = |key: &str| -> Result<Option<bool>, UrlError> {
        opts.get(key)
            .map(|v| match v {
                "true" | "1" | "yes" => Ok(true),
                "false" | "0" | "no" => Ok(false),
                _ => Err(UrlError::Option(format!(
                    "{key}={v:?}: expected true or false"
                ))),
            })
            .transpose()
    };
    if let Some(b) = flag("s3.path-style")? {
        cfg.path_style = b;
    }
    if let Some(b) = flag("s3.delete-versions")? {
        cfg.delete_versions = b;
    }
    let number = |key: &str| -> Result<Option<u64>, UrlError> {
        opts.get(key)
            .map(|v| {
                parse_size(v)
                    .ok_or_else(|| UrlError::Option(format!("{key}={v:?}: expected a number")))
            })
            .transpose()
    };
    if let Some(n) = number("s3.connections")? {
        cfg.connections = usize::try_from(n)
            .map_err(|_| UrlError::Option(format!("s3.connections={n} is too large")))?;
    }
    if let Some(n) = number("s3.multipart-threshold")? {
        cfg.multipart_threshold = n;
    }
    if let Some(n) = number("s3.part-size")? {
        cfg.part_size = n;
    }
    if let Some(n) = number("s3.list-page-size")? {
        cfg.list_page_size = Some(
            u32::try_from(n)
                .map_err(|_| UrlError::Option(format!("s3.list-page-size={n} is too large")))?,
        );
    }
    cfg.validate().map_err(UrlError::Option)
}

/// `123`, `64k`, `16M`, `1G` (binary units).
fn parse_size(v: &str) -> Option<u64> {
    let v = v.trim();
    let (num, shift) = match v.chars().last()? {
        'k' | 'K' => (&v[..v.len() - 1], 10),
        'm' | 'M' => (&v[..v.len() - 1], 20),
        'g' | 'G' => (&v[..v.len() - 1], 30),
        _ => (v, 0),
    };
    num.parse::<u64>().ok()?.checked_mul(1 << shift)
}

/// The SDK client for a configuration. Must be called inside the backend's runtime (the
/// HTTP connector registers with it).
pub(crate) fn sdk_client(cfg: &S3Config, metering: super::meter::Metering) -> aws_sdk_s3::Client {
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
        .build_https();
    let c = &cfg.credentials;
    let creds = Credentials::new(
        &c.access_key_id,
        &c.secret_access_key,
        c.session_token.clone(),
        None,
        "cairn",
    );
    let conf = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(cfg.region.clone()))
        .endpoint_url(&cfg.endpoint)
        .force_path_style(cfg.path_style)
        .credentials_provider(creds)
        .http_client(http)
        // Retries belong to cairn's retry decorator, which sits outside the request
        // accounting: an SDK retry would be an attempt nobody counts (and B2 bills).
        .retry_config(RetryConfig::disabled())
        // The read timeout is enforced per request by the backend, scaled by body size:
        // the connector's read timeout would also cover sending a 16 MiB part.
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(CONNECT_TIMEOUT)
                .build(),
        )
        // We send Content-MD5 ourselves, which every S3-compatible service checks; the SDK's
        // default CRC32 trailers (aws-chunked) are not accepted everywhere.
        .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
        .interceptor(metering)
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}

/// The process environment, for [`S3Config::for_s3`] and [`S3Config::for_b2`].
pub(crate) fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |k| m.get(k).cloned()
    }

    fn opts(items: &[&str]) -> BackendOptions {
        match BackendOptions::parse(items.iter().copied()) {
            Ok(o) => o,
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn s3_region_precedence() {
        let env = env_of(&[
            ("AWS_ACCESS_KEY_ID", "id"),
            ("AWS_SECRET_ACCESS_KEY", "secret"),
            ("AWS_REGION", "eu-west-1"),
        ]);
        let c =
            S3Config::for_s3("https://h", "b", "p", &opts(&[]), &env).map_err(|e| e.to_string());
        assert_eq!(c.map(|c| c.region), Ok("eu-west-1".into()));
        let c = S3Config::for_s3("https://h", "b", "p", &opts(&["s3.region=ap-1"]), &env)
            .map_err(|e| e.to_string());
        assert_eq!(c.map(|c| c.region), Ok("ap-1".into()));
        let none = env_of(&[("AWS_ACCESS_KEY_ID", "id"), ("AWS_SECRET_ACCESS_KEY", "s")]);
        let c =
            S3Config::for_s3("https://h", "b", "", &opts(&[]), &none).map_err(|e| e.to_string());
        assert_eq!(c.map(|c| c.region), Ok("us-east-1".into()));
    }

    #[test]
    fn s3_without_credentials_says_what_to_set() {
        let e = S3Config::for_s3("https://h", "b", "p", &opts(&[]), &env_of(&[]));
        assert!(matches!(e, Err(UrlError::Open(m)) if m.contains("AWS_ACCESS_KEY_ID")));
    }

    #[test]
    fn b2_endpoint_from_region_or_env() {
        let keys = [("B2_ACCOUNT_ID", "kid"), ("B2_ACCOUNT_KEY", "k")];
        let mut pairs = keys.to_vec();
        pairs.push(("B2_REGION", "us-west-004"));
        let c =
            S3Config::for_b2("bkt", "/p/", &opts(&[]), &env_of(&pairs)).map_err(|e| e.to_string());
        let c = match c {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(c.endpoint, "https://s3.us-west-004.backblazeb2.com");
        assert_eq!(c.region, "us-west-004");
        assert_eq!(c.prefix, "p");
        assert_eq!(c.credentials.access_key_id, "kid");
        assert_eq!(c.flavor, Flavor::B2);

        let c = S3Config::for_b2(
            "bkt",
            "p",
            &opts(&["b2.endpoint=https://s3.eu-central-003.backblazeb2.com"]),
            &env_of(&keys),
        )
        .map_err(|e| e.to_string());
        assert_eq!(c.map(|c| c.region), Ok("eu-central-003".into()));

        let e = S3Config::for_b2("bkt", "p", &opts(&[]), &env_of(&keys));
        assert!(matches!(e, Err(UrlError::Open(m)) if m.contains("B2_REGION")));
    }

    #[test]
    fn b2_falls_back_to_aws_credentials() {
        let env = env_of(&[
            ("AWS_ACCESS_KEY_ID", "aid"),
            ("AWS_SECRET_ACCESS_KEY", "as"),
            ("B2_ENDPOINT", "http://127.0.0.1:8333"),
        ]);
        let c = S3Config::for_b2("bkt", "p", &opts(&[]), &env).map_err(|e| e.to_string());
        assert_eq!(c.map(|c| c.credentials.access_key_id), Ok("aid".into()));
    }

    #[test]
    fn options_are_checked() {
        let env = env_of(&[("AWS_ACCESS_KEY_ID", "id"), ("AWS_SECRET_ACCESS_KEY", "s")]);
        let c = S3Config::for_s3(
            "http://h",
            "b",
            "p",
            &opts(&[
                "s3.connections=3",
                "s3.multipart-threshold=5M",
                "s3.path-style=false",
            ]),
            &env,
        );
        let c = match c {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(c.connections, 3);
        assert_eq!(c.multipart_threshold, 5 << 20);
        assert!(!c.path_style);
        for bad in [
            "s3.conections=3",
            "s3.connections=x",
            "s3.part-size=1k",
            "s3.connections=0",
        ] {
            let r = S3Config::for_s3("http://h", "b", "p", &opts(&[bad]), &env);
            assert!(
                matches!(r, Err(UrlError::Option(_))),
                "{bad} must be refused"
            );
        }
        let r = S3Config::for_s3("ftp://h", "b", "p", &opts(&[]), &env);
        assert!(matches!(r, Err(UrlError::Option(_))), "bad endpoint scheme");
    }

    #[test]
    fn debug_hides_secrets() {
        let mut c = S3Credentials::new("id", "topsecret");
        c.session_token = Some("tok".into());
        let s = format!("{c:?}");
        assert!(!s.contains("topsecret") && !s.contains("tok\""), "{s}");
    }
}

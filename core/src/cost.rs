//! What storage requests cost: request classes, counters, and a price table per backend
//! class. The accounting decorator (in `cairn-backends`) fills [`RequestCounts`]; the
//! CLI reports them in `--json` summaries and the metrics file, and prune planning prices
//! its choices with the same [`PriceTable`].

use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

/// The classes providers bill requests by.
///
/// A backend that talks to a billed service reports each HTTP request it sends, in the
/// class the provider bills it in (see [`RequestMeter`]); for the others each
/// [`Backend`](crate::backend::Backend) call counts once: `list` as `List`, `stat` as
/// `Head`, `read`/`read_stream` as `Get`, `write`/`write_new` as `Put`, `remove` as
/// `Delete`.
///
/// The classes follow the HTTP verbs S3 bills by, which B2's S3 API bills the same way
/// apart from the prices: S3 puts PUT, COPY, POST and LIST in its dear tier and GET and
/// HEAD in its cheap one, and does not bill DELETE; B2 bills uploads and deletes as
/// class A (free), GET and HEAD as class B and listings as class C.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RequestClass {
    /// One listing request (S3: one `ListObjectsV2` page).
    List,
    /// A metadata lookup (S3: `HeadObject`).
    Head,
    /// A download of a whole file or a range (S3: `GetObject`).
    Get,
    /// An upload or another request that changes state (S3: `PutObject`, and the POSTs
    /// and PUTs of a multipart upload: create, each part, complete).
    Put,
    /// A deletion (S3: `DeleteObject`, and `AbortMultipartUpload`, which S3 bills as a
    /// free cancel).
    Delete,
}

impl RequestClass {
    /// Every class, in report order.
    pub const ALL: [RequestClass; 5] = [
        RequestClass::List,
        RequestClass::Head,
        RequestClass::Get,
        RequestClass::Put,
        RequestClass::Delete,
    ];

    /// Lower-case name used in JSON and metrics labels.
    pub fn as_str(self) -> &'static str {
        match self {
            RequestClass::List => "list",
            RequestClass::Head => "head",
            RequestClass::Get => "get",
            RequestClass::Put => "put",
            RequestClass::Delete => "delete",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// One request a backend sent to its storage service, as the provider bills it.
#[derive(Clone, Copy, Debug)]
pub struct MeteredRequest<'a> {
    /// The billing class.
    pub class: RequestClass,
    /// The service's name for the call (`PutObject`, `UploadPart`, ...), for the log.
    pub api: &'a str,
    /// The repository path it concerned (for a listing, the listed directory). A request
    /// outside the repository, which cairn never means to send, names its full location
    /// starting with `/` (S3: `/<bucket>/<key>`), so a log or audit shows it for what it is.
    pub path: &'a str,
    /// The size of the body sent, or for a request without one, of the answer's body.
    /// For the log only: bytes are counted per call, from what the caller moved.
    pub bytes: u64,
    /// `ok`, `NotFound`, `http-<status>` for another answer, `no-response` when the
    /// connection failed, `cancelled` when cairn's own deadline gave up waiting.
    pub outcome: &'a str,
}

/// Receives every request a backend sends, attempt by attempt, so that what is counted is
/// what the provider bills and not one request per [`Backend`](crate::backend::Backend)
/// call (an S3 multipart upload is many requests; a listing is one per page).
pub trait RequestMeter: Send + Sync {
    /// Called once per request sent, after it ended.
    fn record(&self, request: &MeteredRequest<'_>);
}

/// Live counters, shared between the accounting decorator and whoever reports them.
#[derive(Debug, Default)]
pub struct RequestCounters {
    requests: [AtomicU64; 5],
    errors: AtomicU64,
    bytes_up: AtomicU64,
    bytes_down: AtomicU64,
}

impl RequestCounters {
    /// Counts one request of `class`.
    pub fn request(&self, class: RequestClass) {
        self.requests[class.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one failed request.
    pub fn error(&self) {
        self.errors.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts uploaded bytes.
    pub fn uploaded(&self, n: u64) {
        self.bytes_up.fetch_add(n, Ordering::Relaxed);
    }

    /// Counts downloaded bytes.
    pub fn downloaded(&self, n: u64) {
        self.bytes_down.fetch_add(n, Ordering::Relaxed);
    }

    /// A consistent-enough copy for reporting.
    pub fn snapshot(&self) -> RequestCounts {
        let mut requests = [0; 5];
        for (out, c) in requests.iter_mut().zip(&self.requests) {
            *out = c.load(Ordering::Relaxed);
        }
        RequestCounts {
            requests,
            errors: self.errors.load(Ordering::Relaxed),
            bytes_up: self.bytes_up.load(Ordering::Relaxed),
            bytes_down: self.bytes_down.load(Ordering::Relaxed),
        }
    }
}

/// A copy of the counters at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RequestCounts {
    requests: [u64; 5],
    /// Backend calls that failed (each retry attempt counts).
    pub errors: u64,
    /// Bytes sent to the backend.
    pub bytes_up: u64,
    /// Bytes received from the backend.
    pub bytes_down: u64,
}

impl RequestCounts {
    /// Requests of one class.
    pub fn of(&self, class: RequestClass) -> u64 {
        self.requests[class.index()]
    }

    /// All requests.
    pub fn total(&self) -> u64 {
        self.requests.iter().sum()
    }
}

impl Serialize for RequestCounts {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(RequestClass::ALL.len() + 3))?;
        for c in RequestClass::ALL {
            m.serialize_entry(c.as_str(), &self.of(c))?;
        }
        m.serialize_entry("errors", &self.errors)?;
        m.serialize_entry("bytes_up", &self.bytes_up)?;
        m.serialize_entry("bytes_down", &self.bytes_down)?;
        m.end()
    }
}

/// Published list prices of one storage class, in US dollars.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PriceTable {
    /// Per 1,000 requests of each class, in [`RequestClass::ALL`] order.
    pub per_1000: [f64; 5],
    /// Per GB (10^9 bytes) downloaded (egress).
    pub per_gb_down: f64,
    /// Per GB uploaded (ingress; free everywhere we know).
    pub per_gb_up: f64,
    /// Per GB stored for a 30-day month.
    pub per_gb_month: f64,
}

impl PriceTable {
    /// The price table of a backend's `cost_class`. Local disks and SFTP servers cost
    /// nothing per request; their price is time, which the prune planner weighs apart.
    ///
    /// B2 (2026 list prices): uploads and deletes are class A (free), downloads and
    /// HEADs class B ($0.004 per 10,000), listings class C ($0.004 per 1,000), egress
    /// $0.01/GB, storage $6/TB-month. S3 Standard (us-east-1): PUT/LIST $0.005 per 1,000,
    /// GET/HEAD $0.0004 per 1,000, DELETE free, egress $0.09/GB, storage $0.023/GB-month.
    pub fn for_class(cost_class: &str) -> PriceTable {
        match cost_class {
            "b2" => PriceTable {
                per_1000: [0.004, 0.0004, 0.0004, 0.0, 0.0],
                per_gb_down: 0.01,
                per_gb_up: 0.0,
                per_gb_month: 0.006,
            },
            "s3" => PriceTable {
                per_1000: [0.005, 0.0004, 0.0004, 0.005, 0.0],
                per_gb_down: 0.09,
                per_gb_up: 0.0,
                per_gb_month: 0.023,
            },
            _ => PriceTable {
                per_1000: [0.0; 5],
                per_gb_down: 0.0,
                per_gb_up: 0.0,
                per_gb_month: 0.0,
            },
        }
    }

    /// The price of a set of requests and transfers.
    pub fn cost(&self, counts: &RequestCounts) -> f64 {
        let requests: f64 = RequestClass::ALL
            .iter()
            .map(|c| counts.of(*c) as f64 / 1000.0 * self.per_1000[c.index()])
            .sum();
        requests
            + counts.bytes_down as f64 / 1e9 * self.per_gb_down
            + counts.bytes_up as f64 / 1e9 * self.per_gb_up
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_prices() {
        let c = RequestCounters::default();
        for _ in 0..2000 {
            c.request(RequestClass::List);
        }
        c.request(RequestClass::Put);
        c.downloaded(2_000_000_000);
        let s = c.snapshot();
        assert_eq!(s.of(RequestClass::List), 2000);
        assert_eq!(s.total(), 2001);
        let b2 = PriceTable::for_class("b2").cost(&s);
        assert!((b2 - (0.008 + 0.02)).abs() < 1e-9, "{b2}");
        assert_eq!(PriceTable::for_class("local").cost(&s), 0.0);
        let json = serde_json::to_value(s).expect("serialise");
        assert_eq!(json["list"], 2000);
        assert_eq!(json["bytes_down"], 2_000_000_000u64);
    }
}

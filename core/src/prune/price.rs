//! Dated price profiles: what a provider charges for storage, egress and requests, kept
//! as data so a price change is a one-line edit. `docs/cost-model.md` gives each figure's
//! source and date.

use crate::cost::RequestClass;

/// How much egress a provider lets through free each month.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum FreeEgress {
    /// None.
    None,
    /// A fixed number of GB per month (per account).
    Gb(f64),
    /// A multiple of the bytes stored (B2: three times the average stored).
    StoredMultiple(f64),
}

/// One provider's prices, in US dollars.
#[derive(Clone, Debug, PartialEq)]
pub struct PriceProfile {
    /// Name (`b2`, `s3-standard`, ...).
    pub name: String,
    /// When these prices were last checked (YYYY-MM-DD).
    pub as_of: String,
    /// Per GB (10^9 bytes) stored for a 30-day month.
    pub storage_gb_month: f64,
    /// Per GB downloaded beyond the free allowance.
    pub egress_gb: f64,
    /// The monthly free egress.
    pub egress_free: FreeEgress,
    /// Per GB read back (infrequent-access classes charge retrieval on top of egress).
    pub retrieval_gb: f64,
    /// Per 1,000 requests of each class, in [`RequestClass::ALL`] order.
    pub per_1000: [f64; 5],
    /// Objects deleted younger than this are billed as if stored this long.
    pub min_storage_days: f64,
    /// Objects smaller than this are billed as this size.
    pub min_object_bytes: u64,
    /// A plain delete only hides the object (B2's S3 API without a version id): the space
    /// is billed until the bucket's lifecycle rule removes hidden versions.
    pub delete_hides: bool,
    /// Whether money is at stake at all (local disks and SFTP servers cost only time).
    pub priced: bool,
}

fn classes(list: f64, head: f64, get: f64, put: f64, delete: f64) -> [f64; 5] {
    // Keep in step with RequestClass::ALL.
    debug_assert_eq!(RequestClass::ALL[0], RequestClass::List);
    [list, head, get, put, delete]
}

impl PriceProfile {
    /// The built-in profile `name`, if there is one.
    pub fn builtin(name: &str) -> Option<PriceProfile> {
        let p = |storage: f64, egress: f64, free: FreeEgress, per_1000: [f64; 5]| PriceProfile {
            name: name.to_owned(),
            as_of: "2026-11-30".to_owned(),
            storage_gb_month: storage,
            egress_gb: egress,
            egress_free: free,
            retrieval_gb: 0.0,
            per_1000,
            min_storage_days: 0.0,
            min_object_bytes: 0,
            delete_hides: false,
            priced: true,
        };
        Some(match name {
            // $6.95/TB-month; class A, B and C calls free since 2026-05-01; egress free up
            // to 3x the stored amount per month, then $0.01/GB.
            "b2" => PriceProfile {
                delete_hides: true,
                ..p(
                    0.00695,
                    0.01,
                    FreeEgress::StoredMultiple(3.0),
                    classes(0.0, 0.0, 0.0, 0.0, 0.0),
                )
            },
            // us-east-1: PUT/COPY/POST/LIST $0.005 per 1,000, GET (and HEAD) $0.0004 per
            // 1,000, DELETE free; egress $0.09/GB after 100 GB/month.
            "s3-standard" => p(
                0.023,
                0.09,
                FreeEgress::Gb(100.0),
                classes(0.005, 0.0004, 0.0004, 0.005, 0.0),
            ),
            // One Zone-IA: PUT $0.01 and GET $0.001 per 1,000, retrieval $0.01/GB,
            // 30-day minimum, 128 KB minimum billable object.
            "s3-onezone-ia" => PriceProfile {
                retrieval_gb: 0.01,
                min_storage_days: 30.0,
                min_object_bytes: 128 * 1024,
                ..p(
                    0.01,
                    0.09,
                    FreeEgress::Gb(100.0),
                    classes(0.01, 0.001, 0.001, 0.01, 0.0),
                )
            },
            // $7.99/TB-month, no egress or request fees, 90-day minimum storage.
            "wasabi" => PriceProfile {
                min_storage_days: 90.0,
                ..p(
                    0.00799,
                    0.0,
                    FreeEgress::None,
                    classes(0.0, 0.0, 0.0, 0.0, 0.0),
                )
            },
            "local" | "sftp" => PriceProfile {
                priced: false,
                ..p(0.0, 0.0, FreeEgress::None, classes(0.0, 0.0, 0.0, 0.0, 0.0))
            },
            _ => return None,
        })
    }

    /// Names of the built-in profiles.
    pub const BUILTIN: [&'static str; 6] = [
        "b2",
        "s3-standard",
        "s3-onezone-ia",
        "wasabi",
        "local",
        "sftp",
    ];

    /// The profile a backend's cost class implies (`b2:` is B2, `s3:` S3 Standard, a
    /// directory local).
    pub fn for_cost_class(class: &str) -> PriceProfile {
        let name = match class {
            "b2" => "b2",
            "s3" => "s3-standard",
            "sftp" => "sftp",
            _ => "local",
        };
        PriceProfile::builtin(name).unwrap_or_else(|| PriceProfile::free(name))
    }

    /// A profile that charges nothing (time only).
    pub fn free(name: &str) -> PriceProfile {
        PriceProfile {
            name: name.to_owned(),
            as_of: String::new(),
            storage_gb_month: 0.0,
            egress_gb: 0.0,
            egress_free: FreeEgress::None,
            retrieval_gb: 0.0,
            per_1000: [0.0; 5],
            min_storage_days: 0.0,
            min_object_bytes: 0,
            delete_hides: false,
            priced: false,
        }
    }

    /// Price of `n` requests of `class`.
    pub fn requests(&self, class: RequestClass, n: u64) -> f64 {
        let i = RequestClass::ALL
            .iter()
            .position(|c| *c == class)
            .unwrap_or(0);
        n as f64 / 1000.0 * self.per_1000[i]
    }

    /// Price of downloading `bytes` this month when `stored` bytes are stored and
    /// `already` bytes of the free allowance are assumed used.
    pub fn egress(&self, bytes: u64, stored: u64, already: u64) -> f64 {
        let free = match self.egress_free {
            FreeEgress::None => 0.0,
            FreeEgress::Gb(g) => g * 1e9,
            FreeEgress::StoredMultiple(m) => m * stored as f64,
        };
        let billable = (already as f64 + bytes as f64 - free.max(already as f64)).max(0.0);
        billable.min(bytes as f64) / 1e9 * self.egress_gb + bytes as f64 / 1e9 * self.retrieval_gb
    }

    /// Monthly price of storing an object of `bytes`.
    pub fn storage_month(&self, bytes: u64) -> f64 {
        bytes.max(self.min_object_bytes) as f64 / 1e9 * self.storage_gb_month
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_profiles_price_as_published() {
        let s3 = PriceProfile::builtin("s3-standard").expect("s3");
        assert!((s3.requests(RequestClass::Put, 1000) - 0.005).abs() < 1e-12);
        assert!((s3.requests(RequestClass::Get, 1000) - 0.0004).abs() < 1e-12);
        assert_eq!(s3.requests(RequestClass::Delete, 1000), 0.0);
        // The first 100 GB of egress are free, then $0.09/GB.
        assert_eq!(s3.egress(50_000_000_000, 0, 0), 0.0);
        assert!((s3.egress(10_000_000_000, 0, 100_000_000_000) - 0.9).abs() < 1e-9);
        let b2 = PriceProfile::builtin("b2").expect("b2");
        // Egress up to 3x stored is free.
        assert_eq!(b2.egress(3_000_000_000, 1_000_000_000, 0), 0.0);
        assert!((b2.egress(4_000_000_000, 1_000_000_000, 0) - 0.01).abs() < 1e-9);
        assert!((b2.storage_month(1_000_000_000_000) - 6.95).abs() < 1e-9);
        let ia = PriceProfile::builtin("s3-onezone-ia").expect("ia");
        assert_eq!(ia.storage_month(1), ia.storage_month(128 * 1024));
        assert!(!PriceProfile::for_cost_class("local").priced);
        for n in PriceProfile::BUILTIN {
            assert!(PriceProfile::builtin(n).is_some(), "{n}");
        }
    }
}

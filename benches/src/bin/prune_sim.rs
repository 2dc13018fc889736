//! Prune cost simulator (issue 7, §4): a year of daily backups of a ~50 GB machine into a
//! simulated repository of 16 MiB packs, pruned by four strategies (plus reference rows),
//! each decided by the real cost model (`cairn_core::prune::payback::decide`) under the
//! real price profiles, and the money each strategy spends is counted day by day.
//!
//! Deterministic: one seeded PRNG, no network, no repository. Run
//! `cargo run --release -p cairn-benches --bin prune_sim [-- --seed N --churn uniform]`.
//! Exits 1 when cairn's planner is not at or below the cheapest other strategy under every
//! profile, 2 when the simulation breaks an invariant. docs/benchmarks.md ("Prune cost
//! simulator") gives the model's assumptions and results.

// A crate root looks for modules beside it, not in a directory named after it.
#[path = "prune_sim/history.rs"]
mod history;

use std::process::ExitCode;

use cairn_core::cost::RequestClass;
use cairn_core::prune::payback::{decide, Action, Candidate, Policy};
use cairn_core::prune::price::PriceProfile;
use cairn_core::{Id, Id16};

use history::{Churn, History, MIB};

const DAYS: u32 = 365;
const PACK_TARGET: u64 = 16 * MIB;
/// Blobs of one pack closer than this share a ranged read (`MERGE_GAP` in sweep.rs).
const MERGE_GAP: u64 = MIB;
/// Sealed pack header: 97-byte file header, 16-byte tag and the 8-byte tail, plus about 80
/// bytes of CBOR per entry (id, cid, offset, lengths).
const PACK_FIXED: u64 = 121;
const ENTRY_BYTES: u64 = 80;
/// Billing months are 30 days, as `storage_gb_month` is.
const MONTH: u32 = 30;
const PROFILES: [&str; 3] = ["b2", "s3-standard", "s3-onezone-ia"];
const DEFAULT_SEED: u64 = 20_261_130;

/// When a strategy prunes.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Cadence {
    Never,
    /// On the last day of every period of this many days.
    Every(u32),
    /// A cron job that runs prune when a die shows one (one day in 45 on average).
    Coin,
}

/// How it decides (always through `decide`).
#[derive(Clone, Copy, Debug, PartialEq)]
enum Rule {
    /// restic's rule: `Policy::max_unused`.
    MaxUnused(f64),
    /// cairn's default: repack what pays back within 90 days.
    Payback,
}

/// Whether a strategy takes part in the acceptance criterion.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Role {
    Rival,
    Planner,
    /// Shown to separate the cadence from the rule; not in the criterion.
    Reference,
}

#[derive(Clone, Copy, Debug, PartialEq)]
struct Strategy {
    label: &'static str,
    cadence: Cadence,
    rule: Rule,
    role: Role,
}

const fn strategy(label: &'static str, cadence: Cadence, rule: Rule, role: Role) -> Strategy {
    Strategy {
        label,
        cadence,
        rule,
        role,
    }
}

const STRATEGIES: [Strategy; 6] = [
    strategy("never prune", Cadence::Never, Rule::Payback, Role::Rival),
    strategy(
        "restic-like: max-unused 5%, every 30 days",
        Cadence::Every(MONTH),
        Rule::MaxUnused(0.05),
        Role::Rival,
    ),
    strategy(
        "cron coin flip: max-unused 20%, ~every 45 days",
        Cadence::Coin,
        Rule::MaxUnused(0.20),
        Role::Rival,
    ),
    strategy(
        "cairn planner: payback <= 90 days, weekly",
        Cadence::Every(7),
        Rule::Payback,
        Role::Planner,
    ),
    strategy(
        "(ref) max-unused 5%, weekly",
        Cadence::Every(7),
        Rule::MaxUnused(0.05),
        Role::Reference,
    ),
    strategy(
        "(ref) cairn planner, every 30 days",
        Cadence::Every(MONTH),
        Rule::Payback,
        Role::Reference,
    ),
];

impl Strategy {
    fn runs_on(&self, h: &History, day: u32) -> bool {
        match self.cadence {
            Cadence::Never => false,
            Cadence::Every(n) => day % n == n - 1,
            Cadence::Coin => h.coin[day as usize],
        }
    }

    fn policy(&self) -> Policy {
        Policy {
            max_payback_days: 90.0,
            max_download: None,
            max_repack: None,
            max_unused: match self.rule {
                Rule::MaxUnused(x) => Some(x),
                Rule::Payback => None,
            },
            // B2 too: the simulated key has deleteFiles, so a delete removes the version
            // instead of hiding it (see the note printed with the B2 table).
            delete_frees: true,
            // The CLI's assumed remote rates; they only feed time estimates.
            down_rate: 20e6,
            up_rate: 10e6,
            pack_target: PACK_TARGET,
            egress_used: 0,
        }
    }
}

struct Pack {
    serial: u64,
    blobs: Vec<u32>,
    len: u64,
    created: u32,
}

/// Money and work of one strategy under one profile.
#[derive(Clone, Debug, Default)]
struct Bill {
    storage: f64,
    egress: f64,
    requests: f64,
    early: f64,
    runs: u32,
    bytes_down: u64,
    packs_repacked: u64,
    packs_deleted: u64,
    /// Requests by class, in `RequestClass::ALL` order (prune only).
    counts: [u64; 5],
    final_bytes: u64,
    /// Requests of the backups themselves: the same for every strategy, so kept apart.
    backup_puts: u64,
}

impl Bill {
    fn total(&self) -> f64 {
        self.storage + self.egress + self.requests + self.early
    }
}

fn class_index(c: RequestClass) -> usize {
    RequestClass::ALL.iter().position(|x| *x == c).unwrap_or(0)
}

/// One strategy's repository under one profile.
struct Sim<'a> {
    h: &'a History,
    price: &'a PriceProfile,
    strategy: Strategy,
    policy: Policy,
    packs: Vec<Pack>,
    next_serial: u64,
    bill: Bill,
    month_down: u64,
    month_stored: f64,
    month_days: u32,
}

impl<'a> Sim<'a> {
    fn new(h: &'a History, price: &'a PriceProfile, strategy: Strategy) -> Self {
        Sim {
            h,
            price,
            strategy,
            policy: strategy.policy(),
            packs: Vec::new(),
            next_serial: 0,
            bill: Bill::default(),
            month_down: 0,
            month_stored: 0.0,
            month_days: 0,
        }
    }

    fn run(mut self) -> Result<Bill, String> {
        for day in 0..self.h.days {
            let written = self.write_packs(&self.h.written[day as usize], day);
            self.bill.backup_puts += written;
            if self.strategy.runs_on(self.h, day) {
                self.prune(day)?;
            }
            self.end_of_day(day);
        }
        self.bill.final_bytes = self.stored();
        Ok(self.bill)
    }

    fn stored(&self) -> u64 {
        self.packs.iter().map(|p| p.len).sum()
    }

    /// Packs `blobs` in order into new packs of the target size, as the packer and repack
    /// do (one writer, flushed when full and at the end); returns how many it wrote.
    fn write_packs(&mut self, blobs: &[u32], day: u32) -> u64 {
        let mut written = 0;
        let mut cur: Vec<u32> = Vec::new();
        let mut size = 0u64;
        for (i, &b) in blobs.iter().enumerate() {
            cur.push(b);
            size += u64::from(self.h.blobs[b as usize].size);
            if size >= PACK_TARGET || i + 1 == blobs.len() {
                let len = size + PACK_FIXED + ENTRY_BYTES * cur.len() as u64;
                self.packs.push(Pack {
                    serial: self.next_serial,
                    blobs: std::mem::take(&mut cur),
                    len,
                    created: day,
                });
                self.next_serial += 1;
                written += 1;
                size = 0;
            }
        }
        written
    }

    /// Storage is billed on what is stored at the end of each day; egress per 30-day month
    /// against that month's free allowance (B2's is three times the month's average stored).
    fn end_of_day(&mut self, day: u32) {
        let billable: u64 = self
            .packs
            .iter()
            .map(|p| p.len.max(self.price.min_object_bytes))
            .sum();
        self.bill.storage += billable as f64 / 1e9 * self.price.storage_gb_month / f64::from(MONTH);
        self.month_stored += billable as f64;
        self.month_days += 1;
        if day % MONTH == MONTH - 1 || day + 1 == self.h.days {
            let avg = self.month_stored / f64::from(self.month_days);
            self.bill.egress += self.price.egress(self.month_down, avg as u64, 0);
            self.month_down = 0;
            self.month_stored = 0.0;
            self.month_days = 0;
        }
    }

    fn request(&mut self, class: RequestClass, n: u64) {
        self.bill.counts[class_index(class)] += n;
        self.bill.requests += self.price.requests(class, n);
    }

    /// Objects deleted before the minimum storage duration are billed the days left.
    fn early_delete(&mut self, p: &Pack, day: u32) {
        let left = (self.price.min_storage_days - f64::from(day - p.created)).max(0.0);
        self.bill.early += self.price.storage_month(p.len) * left / f64::from(MONTH);
    }

    /// One `cairn prune --instant` after the day's backup and forget: every pack with an
    /// unreferenced blob is a candidate, as in `sweep::classify`; `decide` picks; the
    /// actions are applied and paid for.
    fn prune(&mut self, day: u32) -> Result<(), String> {
        let kept = &self.h.kept[day as usize];
        self.bill.runs += 1;
        // Listing every pack, index file and snapshot: one LIST per 1,000 names.
        let objects = self.packs.len() as u64 + kept.len() as u64 + 1;
        self.request(RequestClass::List, objects.div_ceil(1000));
        let stored = self.stored();
        let mut cands = Vec::new();
        let mut which = Vec::new();
        for (i, p) in self.packs.iter().enumerate() {
            if let Some(c) = self.candidate(p, kept, day) {
                cands.push(c);
                which.push(i);
            }
        }
        // As the real prune does from its last sweep record: this month's earlier
        // downloads already used that much of the free egress.
        let mut policy = self.policy.clone();
        policy.egress_used = self.month_down;
        let (actions, _) = decide(&cands, self.price, stored, &policy);
        let mut gone = vec![false; self.packs.len()];
        let mut copy: Vec<u32> = Vec::new();
        for ((c, a), &i) in cands.iter().zip(&actions).zip(&which) {
            match a {
                Action::Keep { .. } => continue,
                Action::Delete => self.bill.packs_deleted += 1,
                Action::Repack { .. } => {
                    self.bill.packs_repacked += 1;
                    self.request(RequestClass::Get, c.live_ranges);
                    self.bill.bytes_down += c.download_bytes;
                    self.month_down += c.download_bytes;
                    let h = self.h;
                    copy.extend(
                        self.packs[i]
                            .blobs
                            .iter()
                            .filter(|b| h.blobs[**b as usize].referenced(kept)),
                    );
                }
            }
            self.request(RequestClass::Delete, 1);
            gone[i] = true;
        }
        let mut old = std::mem::take(&mut self.packs);
        for (p, g) in old.iter().zip(&gone) {
            if *g {
                self.early_delete(p, day);
            }
        }
        let mut g = gone.iter();
        old.retain(|_| !g.next().copied().unwrap_or(false));
        self.packs = old;
        let puts = self.write_packs(&copy, day);
        self.request(RequestClass::Put, puts);
        self.check(day)
    }

    fn candidate(&self, p: &Pack, kept: &[u32], day: u32) -> Option<Candidate> {
        let mut live_bytes = 0u64;
        let mut live_blobs = 0u64;
        let mut dead = false;
        let mut ranges = 0u64;
        let mut download_bytes = 0u64;
        let mut offset = 0u64;
        let mut end: Option<u64> = None;
        for &b in &p.blobs {
            let blob = &self.h.blobs[b as usize];
            let size = u64::from(blob.size);
            if blob.referenced(kept) {
                live_bytes += size;
                live_blobs += 1;
                match end {
                    // Merged into the open read: the dead gap is downloaded too.
                    Some(e) if offset <= e + MERGE_GAP => download_bytes += offset - e + size,
                    _ => {
                        ranges += 1;
                        download_bytes += size;
                    }
                }
                end = Some(offset + size);
            } else {
                dead = true;
            }
            offset += size;
        }
        let mut name = [0u8; 32];
        name[..8].copy_from_slice(&p.serial.to_le_bytes());
        dead.then(|| Candidate {
            pack: cairn_core::id::PackId::new(Id16([0; 16]), Id(name)),
            kind: cairn_core::pack::PackKind::Group,
            len: p.len,
            live_bytes,
            live_blobs,
            live_ranges: ranges,
            download_bytes,
            age_days: f64::from(day - p.created),
        })
    }

    /// Every blob a kept snapshot references is still in exactly one pack.
    fn check(&self, day: u32) -> Result<(), String> {
        let mut seen = vec![0u8; self.h.blobs.len()];
        for p in &self.packs {
            for &b in &p.blobs {
                seen[b as usize] = seen[b as usize].saturating_add(1);
            }
        }
        let kept = &self.h.kept[day as usize];
        for (i, b) in self.h.blobs.iter().enumerate() {
            if b.born <= day && b.referenced(kept) && seen[i] != 1 {
                return Err(format!(
                    "day {day}, {}: blob {i} is in {} packs",
                    self.strategy.label, seen[i]
                ));
            }
        }
        Ok(())
    }
}

fn gb(bytes: u64) -> f64 {
    bytes as f64 / 1e9
}

fn print_table(price: &PriceProfile, bills: &[(Strategy, Bill)]) {
    println!("\n## {} (prices as of {})\n", price.name, price.as_of);
    if price.delete_hides {
        println!(
            "Deletes with a key that has deleteFiles (`delete_frees = true`): a plain S3 \
             delete would only hide the file and keep billing it.\n"
        );
    }
    println!(
        "| strategy | runs | packs deleted / repacked | GB down | LIST / GET / PUT / DELETE | \
         storage $ | egress $ | requests $ | early-delete $ | total $ | final GB |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (s, b) in bills {
        let n = |c| b.counts[class_index(c)];
        println!(
            "| {} | {} | {} / {} | {:.1} | {} / {} / {} / {} | {:.2} | {:.2} | {:.2} | {:.2} | \
             **{:.2}** | {:.1} |",
            s.label,
            b.runs,
            b.packs_deleted,
            b.packs_repacked,
            gb(b.bytes_down),
            n(RequestClass::List),
            n(RequestClass::Get),
            n(RequestClass::Put),
            n(RequestClass::Delete),
            b.storage,
            b.egress,
            b.requests,
            b.early,
            b.total(),
            gb(b.final_bytes),
        );
    }
    if let Some((_, b)) = bills.first() {
        println!(
            "\nNot in the totals, the same for every strategy: the backups' {} PUTs (${:.4}).",
            b.backup_puts,
            price.requests(RequestClass::Put, b.backup_puts)
        );
    }
}

const USAGE: &str = "usage: prune_sim [--seed N] [--churn clustered|uniform]   \
                     (see docs/benchmarks.md, \"Prune cost simulator\")";

fn parse_args() -> Result<(u64, &'static str, Churn), String> {
    let mut args = std::env::args().skip(1);
    let mut seed = DEFAULT_SEED;
    let mut churn = ("clustered", Churn::default());
    while let Some(a) = args.next() {
        match a.as_str() {
            "--seed" => {
                let v = args.next().ok_or(USAGE)?;
                seed = v.parse().map_err(|e| format!("--seed {v}: {e}"))?;
            }
            "--churn" => {
                churn = match args.next().as_deref() {
                    Some("clustered") => ("clustered", Churn::default()),
                    Some("uniform") => ("uniform", Churn::uniform()),
                    _ => return Err(USAGE.into()),
                }
            }
            _ => return Err(USAGE.into()),
        }
    }
    Ok((seed, churn.0, churn.1))
}

fn main() -> ExitCode {
    let (seed, churn_name, churn) = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let h = match History::generate(seed, DAYS, &churn) {
        Ok(h) => h,
        Err(e) => {
            eprintln!("retention policy refused: {e}");
            return ExitCode::from(2);
        }
    };
    let written: u64 = h
        .written
        .iter()
        .flatten()
        .map(|b| u64::from(h.blobs[*b as usize].size))
        .sum();
    println!("# cairn prune cost simulator (seed {seed}, {churn_name} churn)\n");
    println!(
        "{} days of daily backups; machine {:.1} GB on day 0, {:.1} GB on the last day; \
         {:.1} GB written by backups in all ({} blobs); retention --keep-last 5 \
         --keep-daily 6 --keep-weekly 3 ({} snapshots kept at the end).",
        h.days,
        gb(h.machine[0]),
        gb(h.machine.last().copied().unwrap_or(0)),
        gb(written),
        h.blobs.len(),
        h.kept.last().map_or(0, Vec::len),
    );
    let mut failures = Vec::new();
    for name in PROFILES {
        let Some(price) = PriceProfile::builtin(name) else {
            eprintln!("no built-in price profile {name}");
            return ExitCode::from(2);
        };
        let mut bills = Vec::new();
        for s in STRATEGIES {
            match Sim::new(&h, &price, s).run() {
                Ok(b) => bills.push((s, b)),
                Err(e) => {
                    eprintln!("simulation broke an invariant: {e}");
                    return ExitCode::from(2);
                }
            }
        }
        print_table(&price, &bills);
        let planner = bills
            .iter()
            .find(|(s, _)| s.role == Role::Planner)
            .map_or(f64::INFINITY, |(_, b)| b.total());
        if let Some((s, b)) = bills
            .iter()
            .filter(|(s, _)| s.role == Role::Rival)
            .min_by(|a, b| a.1.total().total_cmp(&b.1.total()))
        {
            if planner > b.total() + 1e-9 {
                failures.push(format!(
                    "{name}: cairn's planner ${planner:.2} > {} ${:.2}",
                    s.label,
                    b.total()
                ));
            }
        }
    }
    if failures.is_empty() {
        println!("\nPASS: cairn's planner is at or below the cheapest other strategy under every profile.");
        ExitCode::SUCCESS
    } else {
        println!("\nFAIL: {}", failures.join("; "));
        ExitCode::from(1)
    }
}

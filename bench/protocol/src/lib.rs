//! The bench line protocol: what the bench guests (`bench/guests/bench`,
//! `bench/guests/blk-bench`) and the floor (`bench/floor`) print, and what `cargo xtask bench`
//! reads back, defined once for both sides; and the PRNG whose sequence the guest and the host
//! must replay bit for bit.
//!
//! `no_std` (with `alloc`), so guests use it as it is. Every line is a tag, then words:
//!
//! ```text
//! bench-info platform=<p> transport=<t> tsc_khz=<khz> kvm_msr=<msr>
//! bench <name> iters=<n> batch=<k> median=<c> p99=<c> min=<c> total=<c> tsc_khz=<khz> warmup=<w> [exits_per_op=<x> kvm_exits_per_op=<y>]
//! bench <name> skipped: <why>
//! blk-bench-info sectors=<n> tsc_khz=<khz> read_only=<0|1> spin_us=<us>
//! blk-bench <name> requests=<r> bytes=<b> cycles=<c> tsc_khz=<khz> qd=<q> warmup_requests=<w> lat_median=<c> lat_p99=<c> lat_min=<c> notifies=<n> waits=<w> [submit_cycles=<c> wait_cycles=<c> complete_cycles=<c>]
//! blk-bench <name> skipped: <why>
//! blk-bench <name> failed: <why>
//! ```
//!
//! A writer is a [`Display`] value ([`BenchResult`], [`BlkResult`], [`info`], [`skipped`],
//! [`failed`]) to print with the guest's `println!`; a reader is [`BenchResult::parse_line`] or
//! [`BlkResult::parse_line`], one line at a time (any other line is `Ok(None)`: console data
//! the reader ignores).
#![no_std]

extern crate alloc;
#[cfg(test)]
extern crate std;

use alloc::borrow::Cow;
use alloc::vec::Vec;
use core::fmt::{self, Display};

/// The tag of the bench guest's and the floor's result lines.
pub const BENCH: &str = "bench";
/// The tag of the bench guest's header line.
pub const BENCH_INFO: &str = "bench-info";
/// The tag of blk-bench's (and `cargo xtask bench blk-host`'s) result lines.
pub const BLK: &str = "blk-bench";
/// The tag of blk-bench's header line.
pub const BLK_INFO: &str = "blk-bench-info";

/// The `i`th output (from 0) of SplitMix64 seeded with `seed`. blk-bench's random offsets are
/// 4 KiB block `splitmix64(seed, i) % blocks`, and `cargo xtask bench blk`'s host side replays
/// the same sequence.
pub fn splitmix64(seed: u64, i: u64) -> u64 {
    let mut z = seed.wrapping_add(i.wrapping_add(1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A header line: `<tag> key=value…` (see [`info`]).
pub struct Info<'a> {
    tag: &'a str,
    fields: &'a [(&'a str, &'a dyn Display)],
}

/// A header line, `<tag> key=value…`, e.g. `info(BENCH_INFO, &[("tsc_khz", &khz)])`.
pub fn info<'a>(tag: &'a str, fields: &'a [(&'a str, &'a dyn Display)]) -> Info<'a> {
    Info { tag, fields }
}

impl Display for Info<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.tag)?;
        for (key, value) in self.fields {
            write!(f, " {key}={value}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Info<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Info")
            .field(&format_args!("{self}"))
            .finish()
    }
}

/// A test that did not produce a result, and why: `<tag> <name> skipped: <why>` or
/// `<tag> <name> failed: <why>` (see [`skipped`], [`failed`]).
#[derive(Debug)]
pub struct Problem<'a, W> {
    tag: &'a str,
    name: &'a str,
    kind: &'static str,
    why: W,
}

/// `<tag> <name> skipped: <why>`: the test could not run here.
pub fn skipped<'a, W: Display>(tag: &'a str, name: &'a str, why: W) -> Problem<'a, W> {
    Problem {
        tag,
        name,
        kind: "skipped",
        why,
    }
}

/// `<tag> <name> failed: <why>`: the test ran and failed (blk-bench only).
pub fn failed<'a, W: Display>(tag: &'a str, name: &'a str, why: W) -> Problem<'a, W> {
    Problem {
        tag,
        name,
        kind: "failed",
        why,
    }
}

impl<W: Display> Display for Problem<'_, W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {}: {}", self.tag, self.name, self.kind, self.why)
    }
}

/// One benchmark's result: a `bench <name> …` line.
#[derive(Clone, Debug, PartialEq)]
pub struct BenchResult<'a> {
    pub name: Cow<'a, str>,
    /// Measured samples.
    pub iters: u64,
    /// Operations per sample.
    pub batch: u64,
    /// Per operation, TSC cycles.
    pub median: u64,
    pub p99: u64,
    pub min: u64,
    /// All samples together, TSC cycles.
    pub total: u64,
    pub tsc_khz: u64,
    /// Unmeasured samples run before the measured ones (read as `min(iters, 50)` from a line
    /// without `warmup=`).
    pub warmup: u64,
    /// Exits the floor counted itself, per operation (printed with 3 decimals).
    pub exits_per_op: Option<f64>,
    pub kvm_exits_per_op: Option<f64>,
}

impl BenchResult<'_> {
    /// Operations the benchmark performed, warm-up included.
    pub fn operations(&self) -> u64 {
        (self.warmup + self.iters) * self.batch
    }

    /// The same result, owning its name.
    pub fn into_owned(self) -> BenchResult<'static> {
        BenchResult {
            name: Cow::Owned(self.name.into_owned()),
            ..self
        }
    }

    /// Reads one line: `Ok(None)` if it is neither a `bench-info` nor a `bench` line.
    pub fn parse_line(line: &str) -> Result<Option<Line<'_, BenchResult<'_>>>, ParseError> {
        parse(line, BENCH_INFO, BENCH, false, |name, kv| {
            if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                return Err(ParseError::BadName);
            }
            let iters = kv.int("iters")?;
            let r = BenchResult {
                name: Cow::Borrowed(name),
                iters,
                batch: kv.int("batch")?,
                median: kv.int("median")?,
                p99: kv.int("p99")?,
                min: kv.int("min")?,
                total: kv.int("total")?,
                tsc_khz: kv.int("tsc_khz")?,
                warmup: match kv.get("warmup") {
                    Some(_) => kv.int("warmup")?,
                    None => iters.min(50),
                },
                exits_per_op: kv.float("exits_per_op")?,
                kvm_exits_per_op: kv.float("kvm_exits_per_op")?,
            };
            if r.iters == 0 || r.batch == 0 || r.tsc_khz == 0 {
                return Err(ParseError::NotPositive("iters, batch and tsc_khz"));
            }
            if !(r.min <= r.median && r.median <= r.p99) {
                return Err(ParseError::Order);
            }
            Ok(r)
        })
    }
}

impl Display for BenchResult<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{BENCH} {} iters={} batch={} median={} p99={} min={} total={} tsc_khz={} warmup={}",
            self.name,
            self.iters,
            self.batch,
            self.median,
            self.p99,
            self.min,
            self.total,
            self.tsc_khz,
            self.warmup
        )?;
        if let Some(x) = self.exits_per_op {
            write!(f, " exits_per_op={x:.3}")?;
        }
        if let Some(x) = self.kvm_exits_per_op {
            write!(f, " kvm_exits_per_op={x:.3}")?;
        }
        Ok(())
    }
}

/// One block test's result: a `blk-bench <name> …` line (the guest's, or the host side's with
/// `tsc_khz=1000000`, so that its cycles are nanoseconds).
#[derive(Clone, Debug, PartialEq)]
pub struct BlkResult<'a> {
    pub name: Cow<'a, str>,
    /// Measured requests, and their data.
    pub requests: u64,
    pub bytes: u64,
    /// From the first measured submission to the last completion.
    pub cycles: u64,
    pub tsc_khz: u64,
    /// Requests in flight.
    pub qd: u64,
    pub warmup_requests: u64,
    /// Per request, submission to completion: median, p99, min.
    pub lat: [u64; 3],
    /// Doorbells and blocks over the whole test, warm-up included.
    pub notifies: u64,
    pub waits: u64,
    /// The guest's split of the measured time: submitting, blocked, taking completions.
    pub split: Option<[u64; 3]>,
}

impl BlkResult<'_> {
    /// The same result, owning its name.
    pub fn into_owned(self) -> BlkResult<'static> {
        BlkResult {
            name: Cow::Owned(self.name.into_owned()),
            ..self
        }
    }

    /// Reads one line: `Ok(None)` if it is neither a `blk-bench-info` nor a `blk-bench` line.
    pub fn parse_line(line: &str) -> Result<Option<Line<'_, BlkResult<'_>>>, ParseError> {
        parse(line, BLK_INFO, BLK, true, |name, kv| {
            let l = BlkResult {
                name: Cow::Borrowed(name),
                requests: kv.int("requests")?,
                bytes: kv.int("bytes")?,
                cycles: kv.int("cycles")?,
                tsc_khz: kv.int("tsc_khz")?,
                qd: kv.int("qd")?,
                warmup_requests: kv.int("warmup_requests")?,
                lat: [
                    kv.int("lat_median")?,
                    kv.int("lat_p99")?,
                    kv.int("lat_min")?,
                ],
                notifies: kv.int("notifies")?,
                waits: kv.int("waits")?,
                split: match (
                    kv.get("submit_cycles"),
                    kv.get("wait_cycles"),
                    kv.get("complete_cycles"),
                ) {
                    (Some(_), Some(_), Some(_)) => Some([
                        kv.int("submit_cycles")?,
                        kv.int("wait_cycles")?,
                        kv.int("complete_cycles")?,
                    ]),
                    _ => None,
                },
            };
            if l.requests == 0 || l.cycles == 0 || l.tsc_khz == 0 {
                return Err(ParseError::NotPositive("requests, cycles and tsc_khz"));
            }
            if !(l.lat[2] <= l.lat[0] && l.lat[0] <= l.lat[1]) {
                return Err(ParseError::Order);
            }
            Ok(l)
        })
    }
}

impl Display for BlkResult<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{BLK} {} requests={} bytes={} cycles={} tsc_khz={} qd={} warmup_requests={} \
             lat_median={} lat_p99={} lat_min={} notifies={} waits={}",
            self.name,
            self.requests,
            self.bytes,
            self.cycles,
            self.tsc_khz,
            self.qd,
            self.warmup_requests,
            self.lat[0],
            self.lat[1],
            self.lat[2],
            self.notifies,
            self.waits
        )?;
        if let Some([submit, wait, complete]) = self.split {
            write!(
                f,
                " submit_cycles={submit} wait_cycles={wait} complete_cycles={complete}"
            )?;
        }
        Ok(())
    }
}

/// One line of the protocol, as read.
#[derive(Clone, Debug, PartialEq)]
pub enum Line<'a, R> {
    /// A header line's `key=value` words, in order.
    Info(Vec<(&'a str, &'a str)>),
    /// A result line.
    Result(R),
    /// `<tag> <name> skipped: <why>`.
    Skipped { name: &'a str, why: &'a str },
    /// `<tag> <name> failed: <why>` (blk-bench's lines only).
    Failed { name: &'a str, why: &'a str },
}

/// Why a line of the protocol is malformed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ParseError {
    /// A word that is not `key=value` (both non-empty).
    NotKeyValue(alloc::string::String),
    /// A required field is missing.
    Missing(&'static str),
    /// A field that must be an unsigned integer is not.
    NotInteger(&'static str),
    /// A field that must be a finite, non-negative number is not.
    NotNumber(&'static str),
    /// A benchmark name that is not `[A-Za-z0-9_]+`.
    BadName,
    /// These fields must be positive.
    NotPositive(&'static str),
    /// `min <= median <= p99` does not hold.
    Order,
}

impl Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::NotKeyValue(word) => write!(f, "`{word}` is not key=value"),
            ParseError::Missing(key) => write!(f, "no {key}="),
            ParseError::NotInteger(key) => write!(f, "{key}= is not an integer"),
            ParseError::NotNumber(key) => write!(f, "{key}= is not a non-negative number"),
            ParseError::BadName => f.write_str("bad benchmark name"),
            ParseError::NotPositive(what) => write!(f, "{what} must be positive"),
            ParseError::Order => f.write_str("min <= median <= p99 does not hold"),
        }
    }
}

impl core::error::Error for ParseError {}

/// The `key=value` words of a line (the last of a repeated key counts).
#[derive(Debug)]
struct Fields<'a>(Vec<(&'a str, &'a str)>);

impl<'a> Fields<'a> {
    fn parse(text: &'a str) -> Result<Fields<'a>, ParseError> {
        text.split_whitespace()
            .map(|word| {
                word.split_once('=')
                    .filter(|(k, v)| !k.is_empty() && !v.is_empty())
                    .ok_or_else(|| ParseError::NotKeyValue(word.into()))
            })
            .collect::<Result<_, _>>()
            .map(Fields)
    }

    fn get(&self, key: &str) -> Option<&'a str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| *v)
    }

    fn int(&self, key: &'static str) -> Result<u64, ParseError> {
        self.get(key)
            .ok_or(ParseError::Missing(key))?
            .parse()
            .map_err(|_| ParseError::NotInteger(key))
    }

    fn float(&self, key: &'static str) -> Result<Option<f64>, ParseError> {
        self.get(key)
            .map(|v| {
                v.parse::<f64>()
                    .ok()
                    .filter(|x| x.is_finite() && *x >= 0.0)
                    .ok_or(ParseError::NotNumber(key))
            })
            .transpose()
    }
}

/// Reads one line of a format: header lines tagged `info_tag`, result and problem lines
/// tagged `tag` (`failed:` lines only where `failed` is allowed).
fn parse<'a, R>(
    line: &'a str,
    info_tag: &str,
    tag: &str,
    failed: bool,
    result: impl FnOnce(&'a str, &Fields<'a>) -> Result<R, ParseError>,
) -> Result<Option<Line<'a, R>>, ParseError> {
    let line = line.trim_end();
    let words = |tag: &str| line.strip_prefix(tag)?.strip_prefix(' ');
    if let Some(rest) = words(info_tag) {
        return Ok(Some(Line::Info(Fields::parse(rest)?.0)));
    }
    let Some(rest) = words(tag) else {
        return Ok(None);
    };
    let (name, rest) = rest.split_once(' ').unwrap_or((rest, ""));
    if let Some(why) = rest.strip_prefix("skipped: ") {
        return Ok(Some(Line::Skipped { name, why }));
    }
    if let Some(why) = rest.strip_prefix("failed: ").filter(|_| failed) {
        return Ok(Some(Line::Failed { name, why }));
    }
    result(name, &Fields::parse(rest)?).map(|r| Some(Line::Result(r)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;
    use alloc::vec;

    fn bench(line: &str) -> Line<'_, BenchResult<'_>> {
        BenchResult::parse_line(line).unwrap().unwrap()
    }

    fn blk(line: &str) -> Line<'_, BlkResult<'_>> {
        BlkResult::parse_line(line).unwrap().unwrap()
    }

    #[test]
    fn splitmix_matches_the_reference_sequence() {
        // SplitMix64 seeded with 1234567: the first outputs of the reference implementation.
        assert_eq!(splitmix64(1_234_567, 0), 6_457_827_717_110_365_317);
        assert_eq!(splitmix64(1_234_567, 1), 3_203_168_211_198_807_973);
        assert_eq!(splitmix64(1_234_567, 2), 9_817_491_932_198_370_423);
        // Seed 0: 0x9e3779b97f4a7c15 fed through the mixer, the well-known first output.
        assert_eq!(splitmix64(0, 0), 0xe220_a839_7b1d_cdaf);
    }

    #[test]
    fn bench_results_round_trip() {
        let guest = BenchResult {
            name: "null_hypercall".into(),
            iters: 500,
            batch: 1,
            median: 75_019,
            p99: 224_322,
            min: 73_941,
            total: 39_863_184,
            tsc_khz: 2_445_422,
            warmup: 50,
            exits_per_op: None,
            kvm_exits_per_op: None,
        };
        let text = guest.to_string();
        assert_eq!(
            text,
            "bench null_hypercall iters=500 batch=1 median=75019 p99=224322 min=73941 \
             total=39863184 tsc_khz=2445422 warmup=50"
        );
        assert_eq!(bench(&text), Line::Result(guest.clone()));
        assert_eq!(guest.operations(), 550);

        let floor = BenchResult {
            name: "floor_out".into(),
            exits_per_op: Some(1.0),
            kvm_exits_per_op: Some(1.004),
            ..guest
        };
        let text = floor.to_string();
        assert!(text.ends_with(" warmup=50 exits_per_op=1.000 kvm_exits_per_op=1.004"));
        assert_eq!(bench(&text), Line::Result(floor));
    }

    #[test]
    fn bench_info_and_skips() {
        let (khz, msr) = (2_445_422u64, format_args!("{:#x}", 0x4b56_4d13));
        let text = info(
            BENCH_INFO,
            &[
                ("platform", &"kvm-pvm"),
                ("tsc_khz", &khz),
                ("kvm_msr", &msr),
            ],
        )
        .to_string();
        assert_eq!(
            text,
            "bench-info platform=kvm-pvm tsc_khz=2445422 kvm_msr=0x4b564d13"
        );
        assert_eq!(
            bench(&text),
            Line::Info(vec![
                ("platform", "kvm-pvm"),
                ("tsc_khz", "2445422"),
                ("kvm_msr", "0x4b564d13")
            ])
        );
        let text = skipped(BENCH, "ring_echo", "run with --loopback").to_string();
        assert_eq!(text, "bench ring_echo skipped: run with --loopback");
        assert_eq!(
            bench(&text),
            Line::Skipped {
                name: "ring_echo",
                why: "run with --loopback"
            }
        );
        // Console data, and the guest's own complaints, are not protocol lines.
        for other in ["................", "bench: bad iters=x", "benchmarks", ""] {
            assert_eq!(BenchResult::parse_line(other), Ok(None), "{other}");
        }
    }

    #[test]
    fn bench_lines_without_warmup_default_it() {
        let Line::Result(r) = bench(
            "bench multicall_null iters=500 batch=32 median=2454 p99=4448 min=2417 \
             total=40006754 tsc_khz=2445422",
        ) else {
            panic!("not a result")
        };
        assert_eq!((r.warmup, r.operations()), (50, 550 * 32));
    }

    #[test]
    fn rejects_malformed_bench_lines() {
        for (bad, why) in [
            (
                "bench x iters=1 batch=1 median=2 p99=1 min=1 total=2 tsc_khz=1",
                ParseError::Order,
            ),
            (
                "bench x iters=1 batch=1 median=1 p99=1 min=1 total=1",
                ParseError::Missing("tsc_khz"),
            ),
            (
                "bench x iters=0 batch=1 median=1 p99=1 min=1 total=1 tsc_khz=1",
                ParseError::NotPositive("iters, batch and tsc_khz"),
            ),
            (
                "bench x iters=1 batch=1 median=a p99=1 min=1 total=1 tsc_khz=1",
                ParseError::NotInteger("median"),
            ),
            (
                "bench x iters=1 batch=1 median=1 p99=1 min=1 total=1 tsc_khz=1 junk",
                ParseError::NotKeyValue("junk".into()),
            ),
            (
                "bench x! iters=1 batch=1 median=1 p99=1 min=1 total=1 tsc_khz=1",
                ParseError::BadName,
            ),
            (
                "bench x iters=1 batch=1 median=1 p99=1 min=1 total=1 tsc_khz=1 exits_per_op=-1",
                ParseError::NotNumber("exits_per_op"),
            ),
            (
                "bench x failed: blk-bench's only",
                ParseError::NotKeyValue("failed:".into()),
            ),
        ] {
            assert_eq!(BenchResult::parse_line(bad), Err(why), "{bad}");
        }
    }

    #[test]
    fn blk_results_round_trip() {
        let guest = BlkResult {
            name: "randread_qd32".into(),
            requests: 10,
            bytes: 40_960,
            cycles: 5000,
            tsc_khz: 1000,
            qd: 32,
            warmup_requests: 64,
            lat: [400, 900, 300],
            notifies: 14,
            waits: 2,
            split: Some([100, 4000, 200]),
        };
        let text = guest.to_string();
        assert_eq!(
            text,
            "blk-bench randread_qd32 requests=10 bytes=40960 cycles=5000 tsc_khz=1000 qd=32 \
             warmup_requests=64 lat_median=400 lat_p99=900 lat_min=300 notifies=14 waits=2 \
             submit_cycles=100 wait_cycles=4000 complete_cycles=200"
        );
        assert_eq!(blk(&text), Line::Result(guest.clone()));
        // The host side prints no split.
        let host = BlkResult {
            split: None,
            ..guest
        };
        let text = host.to_string();
        assert!(text.ends_with(" notifies=14 waits=2"), "{text}");
        assert_eq!(blk(&text), Line::Result(host));
    }

    #[test]
    fn blk_info_and_problems() {
        let text = info(BLK_INFO, &[("sectors", &2048), ("read_only", &0)]).to_string();
        assert_eq!(text, "blk-bench-info sectors=2048 read_only=0");
        assert_eq!(
            blk(&text),
            Line::Info(vec![("sectors", "2048"), ("read_only", "0")])
        );
        let text = skipped(BLK, "seqwrite", "read-only disk").to_string();
        assert_eq!(text, "blk-bench seqwrite skipped: read-only disk");
        assert_eq!(
            blk(&text),
            Line::Skipped {
                name: "seqwrite",
                why: "read-only disk"
            }
        );
        let text = failed(BLK, "seqread", format_args!("status {}", -5)).to_string();
        assert_eq!(text, "blk-bench seqread failed: status -5");
        assert_eq!(
            blk(&text),
            Line::Failed {
                name: "seqread",
                why: "status -5"
            }
        );
        for other in ["blk-bench: unknown test `x`", "bench-info a=b", "noise"] {
            assert_eq!(BlkResult::parse_line(other), Ok(None), "{other}");
        }
        for bad in [
            "blk-bench x requests=1 bytes=1 cycles=1 tsc_khz=1 qd=1 warmup_requests=0 lat_median=2 lat_p99=1 lat_min=1 notifies=0 waits=0",
            "blk-bench x requests=1 bytes=1 cycles=1 tsc_khz=1 qd=1",
            "blk-bench x requests=a",
            "blk-bench x requests=0 bytes=1 cycles=1 tsc_khz=1 qd=1 warmup_requests=0 lat_median=1 lat_p99=1 lat_min=1 notifies=0 waits=0",
        ] {
            assert!(BlkResult::parse_line(bad).is_err(), "{bad}");
        }
    }
}

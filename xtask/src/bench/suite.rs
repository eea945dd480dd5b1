//! What the `cargo xtask bench` suites (the hypercall-vs-trap table, `bench blk`, `bench net`,
//! `bench snapshot`, `bench containers`) share: the rounds and their progress lines, the cells that results collect in
//! over the rounds, and the output: the table on standard output, the JSON and the SVG chart
//! under `--out`.
//!
//! A suite ([`Suite`]) sets itself up (builds, scratch files, namespaces), runs one round at a
//! time (every test once, interleaved its own way so that slow drifts of the host hit all tests
//! alike), and then adds its rounds up into a [`Report`]; [`run`] drives it and [`write()`] writes
//! what every report has.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result};
use serde::Serialize;

use crate::Workspace;

/// One benchmark suite.
pub trait Suite {
    /// How the progress lines name the suite: `bench`, `bench blk`, `bench net`, …
    const NAME: &'static str;
    /// What the rounds add up to.
    type Report: Report;
    /// Rounds to run (at least 1).
    fn rounds(&self) -> u32;
    /// Round `round` (from 1): every test once. An error ends the whole run (a test's own
    /// failure is a result, kept in its cell).
    fn round(&mut self, round: u32) -> Result<()>;
    /// After the last round: the report (and whatever the suite made is taken down).
    fn report(self) -> Result<Self::Report>;
}

/// A suite's results.
pub trait Report {
    /// The file names of the JSON and the chart under `--out`.
    const JSON: &'static str;
    const SVG: &'static str;
    /// The table printed on standard output.
    fn table(&self) -> String;
    /// The JSON document (its maps' keys are sorted when written).
    fn json(&self) -> impl Serialize + '_;
    /// Draws the chart into an SVG file at `path`.
    fn chart(&self, path: &Path) -> Result<()>;
    /// What failed in a way that fails the whole run (exit status 1 after the output is
    /// written): none unless a suite says so.
    fn failures(&self) -> Vec<String> {
        Vec::new()
    }
}

/// Runs `suite`'s rounds, printing a progress line before each, then writes its report into
/// `out_dir`; the exit status is a failure if the report lists [`Report::failures`].
pub fn run<S: Suite>(mut suite: S, out_dir: &Path) -> Result<ExitCode> {
    let rounds = suite.rounds();
    let started = Instant::now();
    for round in 1..=rounds {
        eprintln!(
            "xtask {}: round {round}/{rounds} ({:.0} s so far)",
            S::NAME,
            started.elapsed().as_secs_f64()
        );
        suite.round(round)?;
    }
    let report = suite.report()?;
    write(&report, out_dir)?;
    let failures = report.failures();
    for f in &failures {
        eprintln!("xtask {}: failed: {f}", S::NAME);
    }
    Ok(if failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Prints `report`'s table, writes its JSON and chart into `out_dir`, and prints where they are.
pub fn write<R: Report>(report: &R, out_dir: &Path) -> Result<()> {
    print!("{}", report.table());
    std::fs::create_dir_all(out_dir)
        .with_context(|| format!("cannot create {}", out_dir.display()))?;
    let json_path = out_dir.join(R::JSON);
    // Through a `Value`, whose maps keep their keys sorted: the file does not change when a
    // struct's fields are reordered.
    let value = serde_json::to_value(report.json()).context("encoding the results")?;
    let text = serde_json::to_string_pretty(&value).context("encoding the results")?;
    std::fs::write(&json_path, text + "\n")
        .with_context(|| format!("cannot write {}", json_path.display()))?;
    let svg_path = out_dir.join(R::SVG);
    report.chart(&svg_path)?;
    println!(
        "results: {}\nchart:   {}",
        json_path.display(),
        svg_path.display()
    );
    Ok(())
}

/// `--out DIR`, or target/bench.
pub fn out_dir(ws: &Workspace, out: Option<&Path>) -> PathBuf {
    out.map_or_else(|| ws.target_dir.join("bench"), Path::to_path_buf)
}

/// A prebuilt program given on the command line, or the one `build` builds.
pub fn prebuilt_or(
    given: Option<&Path>,
    build: impl FnOnce() -> Result<PathBuf>,
) -> Result<PathBuf> {
    given.map_or_else(build, |p| Ok(p.to_path_buf()))
}

/// Each cell's samples over the rounds (a cell: a test, or a test on one side or way); the
/// first failure ends a cell, which later rounds leave out.
#[derive(Debug)]
pub struct Cells<K, S, E = String> {
    samples: BTreeMap<K, Vec<S>>,
    ended: BTreeMap<K, E>,
}

impl<K: Ord + Copy, S, E> Default for Cells<K, S, E> {
    fn default() -> Self {
        Cells {
            samples: BTreeMap::new(),
            ended: BTreeMap::new(),
        }
    }
}

impl<K: Ord + Copy, S, E> Cells<K, S, E> {
    /// Whether cell `k` has ended.
    pub fn is_over(&self, k: K) -> bool {
        self.ended.contains_key(&k)
    }

    /// Ends cell `k` with `why` (the first reason stays).
    pub fn end(&mut self, k: K, why: E) {
        self.ended.entry(k).or_insert(why);
    }

    pub fn push(&mut self, k: K, sample: S) {
        self.samples.entry(k).or_default().push(sample);
    }

    /// Keeps a sample, or ends the cell with the error; `true` for a sample.
    pub fn record(&mut self, k: K, result: Result<S, E>) -> bool {
        match result {
            Ok(s) => {
                self.push(k, s);
                true
            }
            Err(e) => {
                self.end(k, e);
                false
            }
        }
    }

    /// Cell `k`'s samples so far.
    pub fn samples(&self, k: K) -> &[S] {
        self.samples.get(&k).map_or(&[], Vec::as_slice)
    }

    /// Takes cell `k`'s samples and why it ended, if it did.
    pub fn take(&mut self, k: K) -> (Vec<S>, Option<E>) {
        (
            self.samples.remove(&k).unwrap_or_default(),
            self.ended.remove(&k),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_keep_samples_until_the_first_failure() {
        let mut c: Cells<usize, u32> = Cells::default();
        assert!(c.record(0, Ok(1)));
        assert!(!c.record(0, Err("broke".into())));
        c.end(0, "later".into());
        assert!(c.is_over(0) && !c.is_over(1));
        assert_eq!(c.samples(0), [1]);
        assert_eq!(c.samples(1), [] as [u32; 0]);
        assert_eq!(c.take(0), (vec![1], Some("broke".to_owned())));
        assert_eq!(c.take(0), (vec![], None));
    }
}

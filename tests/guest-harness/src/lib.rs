//! The in-guest test harness of the test guests (`hostile`, `hypercalls`, `pv-selftest`): it
//! counts checks and prints one line per check on the console, in the forms the integration
//! tests (tests/*.rs) and the hardware-KVM lane read:
//!
//! ```text
//! ok <check>[<detail>]        a check held (hostile's form: `ok <case>: <what happened>`)
//! FAIL <check>: <why>         a check did not hold
//! note <check>: <what>        an observation that is not a check (e.g. a timing)
//! skip <check>: <why>         checks that could not run here
//! <title>: <n> ok, <m> failed the last line
//! ```
//!
//! A guest makes one [`Checks`], runs its checks through it, and returns [`Checks::summary`]
//! as its exit code (0 only if nothing failed).
#![no_std]

use core::fmt::{self, Debug, Display};

use guest_sdk::println;

/// Counts and prints check results.
#[derive(Debug, Default)]
pub struct Checks {
    ok: u32,
    failed: u32,
}

impl Checks {
    pub const fn new() -> Checks {
        Checks { ok: 0, failed: 0 }
    }

    /// Checks that held so far.
    pub fn passed(&self) -> u32 {
        self.ok
    }

    /// Checks that did not hold so far.
    pub fn failed(&self) -> u32 {
        self.failed
    }

    /// A check held: `ok <name><detail>` (`detail` is printed as it is: empty, or `: …`).
    pub fn pass(&mut self, name: &str, detail: impl Display) {
        self.ok += 1;
        println!("ok {name}{detail}");
    }

    /// A check did not hold: `FAIL <name>: <why>`.
    pub fn fail(&mut self, name: &str, why: impl Display) {
        self.failed += 1;
        println!("FAIL {name}: {why}");
    }

    /// Checks a condition: `ok <name>`, or `FAIL <name>: <why>` (what was seen).
    pub fn that(&mut self, name: &str, ok: bool, why: impl Display) {
        if ok {
            self.pass(name, "");
        } else {
            self.fail(name, why);
        }
    }

    /// Checks a condition, saying what happened either way: `ok <name>: <what>` or
    /// `FAIL <name>: <what>`.
    pub fn check(&mut self, name: &str, ok: bool, what: impl Display) {
        if ok {
            self.pass(name, format_args!(": {what}"));
        } else {
            self.fail(name, what);
        }
    }

    /// Checks that `got == want`; a failure shows both with `{:?}`.
    pub fn eq<T: PartialEq + Debug>(&mut self, name: &str, got: T, want: T) {
        if got == want {
            self.pass(name, "");
        } else {
            self.fail(name, format_args!("got {got:?} want {want:?}"));
        }
    }

    /// Checks that `got == want`; a failure shows both with `{}`.
    pub fn eq_display<T: PartialEq + Display>(&mut self, name: &str, got: T, want: T) {
        if got == want {
            self.pass(name, "");
        } else {
            self.fail(name, got_want(got, want));
        }
    }

    /// Reports an observation that is not a pass/fail check: `note <name>: <what>` (e.g. how late
    /// a timer was: timing goals belong in benchmarks, not in tests).
    pub fn note(&self, name: &str, what: impl Display) {
        println!("note {name}: {what}");
    }

    /// Checks that cannot run here (e.g. a device the VMM was not given): `skip <name>: <why>`.
    pub fn skip(&self, name: &str, why: impl Display) {
        println!("skip {name}: {why}");
    }

    /// Prints the last line, `<title>: <n> ok, <m> failed`, and returns the guest's exit code:
    /// 0 if nothing failed, else 1.
    pub fn summary(&self, title: &str) -> u32 {
        println!("{title}: {} ok, {} failed", self.ok, self.failed);
        u32::from(self.failed != 0)
    }
}

/// `got <got> want <want>`.
pub fn got_want<G: Display, W: Display>(got: G, want: W) -> GotWant<G, W> {
    GotWant(got, want)
}

/// What [`got_want`] returns.
#[derive(Debug)]
pub struct GotWant<G, W>(G, W);

impl<G: Display, W: Display> Display for GotWant<G, W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "got {} want {}", self.0, self.1)
    }
}

//! Puts the SDK's linker script on the library search path of every guest that links the SDK;
//! `.cargo/config.toml` names it (`-Tparapet-guest.ld`) for the `x86_64-unknown-none` target.
//!
//! A guest build without the SDK's rustflags would end in dozens of `undefined symbol` lines from
//! the linker, so for a guest target (`target_os = "none"`) this checks the flags cargo passes
//! (`CARGO_ENCODED_RUSTFLAGS`) and fails with one error that names the fix instead.

/// What each needed rustflag must contain, and the flag as `.cargo/config.toml` spells it.
const GUEST_FLAGS: [(&str, &str); 3] = [
    ("parapet-guest.ld", "-C link-arg=-Tparapet-guest.ld"),
    ("no-pie", "-C link-arg=--no-pie"),
    ("relocation-model=static", "-C relocation-model=static"),
];

fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    println!("cargo::rerun-if-changed=parapet-guest.ld");
    println!("cargo::rustc-link-search=native={dir}");

    // The SDK also builds for the host (its unit tests, the guests' host stubs): no checks there.
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() != Ok("none") {
        return;
    }
    let rustflags = std::env::var("CARGO_ENCODED_RUSTFLAGS").unwrap_or_default();
    let missing: Vec<&str> = GUEST_FLAGS
        .iter()
        .filter(|(needle, _)| !rustflags.split('\x1f').any(|flag| flag.contains(needle)))
        .map(|&(_, flag)| flag)
        .collect();
    if !missing.is_empty() {
        let target = std::env::var("TARGET").unwrap_or_default();
        println!(
            "cargo::error=a Parapet guest needs the SDK's rustflags, and this build for {target} \
             lacks {}; put them in the guest crate's .cargo/config.toml: \
             [target.{target}] rustflags = [\"-C\", \"link-arg=-Tparapet-guest.ld\", \
             \"-C\", \"link-arg=--no-pie\", \"-C\", \"relocation-model=static\"] \
             (`cargo xtask new-guest` in the Parapet repository makes a crate with that file; \
             a RUSTFLAGS environment variable replaces it)",
            missing.join(", ")
        );
    }
}

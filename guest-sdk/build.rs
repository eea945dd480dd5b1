//! Puts the SDK's linker script on the library search path of every guest that links the SDK;
//! `.cargo/config.toml` names it (`-Tparapet-guest.ld`) for the `x86_64-unknown-none` target.
fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    println!("cargo::rerun-if-changed=parapet-guest.ld");
    println!("cargo::rustc-link-search=native={dir}");
}

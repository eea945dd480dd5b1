//! A Parapet guest kernel.
//!
//! `cargo run` builds it and boots it with `parapet run`; `cargo run -- --cmdline "exit=3"` gives
//! it a command line. What `main` returns is the guest's exit code, and so the exit status of
//! `parapet run` and of `cargo run`.
#![cfg_attr(target_os = "none", no_std)]
#![no_main]

use guest_sdk::println;
use guest_sdk::start_info::{cmdline, find_param, platform};

guest_sdk::entry!(main);

fn main() -> u32 {
    println!(
        "Hello from {} on Parapet ({})!",
        env!("CARGO_PKG_NAME"),
        platform().name()
    );
    let cmdline = cmdline();
    println!("command line: {cmdline:?}");
    // `exit=N` on the command line picks the exit code.
    match find_param(cmdline, "exit").map(str::parse) {
        None => 0,
        Some(Ok(code)) => code,
        Some(Err(_)) => {
            println!("exit=N takes a number");
            2
        }
    }
}

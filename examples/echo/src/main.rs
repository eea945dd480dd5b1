//! Echoes console input back: reads lines from the PV console ring and prints each as
//! `echo: LINE`.
//!
//! Stops with exit code 0 at the end of input (the console backend appends `CONSOLE_EOF` when
//! the VMM's standard input ends) or on a line `quit`. Try it interactively, or pipe input:
//!
//! ```text
//! printf 'one\ntwo\n' | parapet run target/x86_64-unknown-none/debug/echo
//! ```
//!
//! The command-line word `prompt` makes it print `> ` before each line.
#![cfg_attr(target_os = "none", no_std)]
#![no_main]

extern crate alloc;

use alloc::string::String;

use guest_sdk::start_info::{cmdline, find_param};
use guest_sdk::{console, print, println};

guest_sdk::entry!(main);

fn main() -> u32 {
    let prompt = find_param(cmdline(), "prompt").is_some();
    let mut lines = 0u64;
    loop {
        if prompt {
            print!("> ");
        }
        let mut line = String::new();
        if console::read_line(&mut line) == 0 {
            break;
        }
        let text = line.trim_end_matches(['\n', '\r']);
        if text == "quit" {
            println!("echo: bye");
            return 0;
        }
        println!("echo: {text}");
        lines += 1;
    }
    println!("echo: end of input after {lines} lines");
    0
}

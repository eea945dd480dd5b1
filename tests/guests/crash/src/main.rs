//! A guest that fails on purpose, to test how the VMM reports failures.
//!
//! The first word of the kernel command line picks the failure:
//!
//! | word | what happens | expected VMM exit status |
//! |---|---|---|
//! | `panic` | `panic!` → message on the console, `SHUTDOWN_crash` | 101 |
//! | `ud2` | `do_ud2` executes `ud2` → #UD reported through `SCHEDOP_fault` | 102 |
//! | `pagefault` | `do_pagefault` writes to unmapped 0x7f00_0000_0000 → #PF reported | 102 |
//! | `triple` | loads an empty IDT, then `ud2` → a real triple fault | 102 |
//! | `badop` | `int 0x80`: KVM cannot emulate it on kvm_pvm; #GP on VT hardware | 102 |
//! | `overflow` | unbounded recursion hits the stack guard page → #DF reported from IST1 | 102 |
//! | `hang` | spins forever (for `--timeout`) | 124 |
//! | `exit=N` | returns N from `main` | N |
//! | anything else | prints usage, returns 2 | 2 |
#![cfg_attr(target_os = "none", no_std)]
#![no_main]

use guest_sdk::println;
use guest_sdk::start_info::{cmdline, first_word};

guest_sdk::entry!(main);

const USAGE: &str = "usage: crash panic|ud2|pagefault|triple|badop|overflow|hang|exit=N";

/// An address no Parapet domain maps (far above any guest RAM, below the canonical hole).
const UNMAPPED: usize = 0x7f00_0000_0000;

fn main() -> u32 {
    match first_word(cmdline()) {
        "panic" => panic!("deliberate panic from the crash guest"),
        "ud2" => do_ud2(),
        "pagefault" => do_pagefault(),
        "triple" => do_triple_fault(),
        "badop" => do_bad_opcode(),
        "overflow" => do_stack_overflow(0) as u32,
        "hang" => hang(),
        word => match word.strip_prefix("exit=").map(str::parse::<u32>) {
            Some(Ok(code)) => code,
            _ => {
                println!("crash: unknown command line {:?}; {USAGE}", cmdline());
                2
            }
        },
    }
}

/// Raises #UD.
#[inline(never)]
fn do_ud2() -> ! {
    // SAFETY: raising #UD on purpose; the SDK's IDT reports it and the domain stops.
    unsafe { core::arch::asm!("ud2", options(noreturn)) }
}

/// Writes to an unmapped address, raising #PF.
#[inline(never)]
fn do_pagefault() -> ! {
    // SAFETY: not sound, on purpose: the address is unmapped, so the store faults before it
    // happens and the SDK's IDT reports the #PF; the domain stops.
    unsafe { (UNMAPPED as *mut u64).write_volatile(0xdead_beef) };
    unreachable!("the store to {UNMAPPED:#x} did not fault")
}

/// Removes the IDT and raises #UD: with no IDT the CPU triple-faults.
#[inline(never)]
fn do_triple_fault() -> ! {
    let empty_idt = [0u8; 10]; // limit 0, base 0
    // SAFETY: deliberately makes every exception unhandleable and then raises one; the domain
    // stops with a triple fault.
    unsafe {
        core::arch::asm!("lidt [{}]", "ud2", in(reg) &empty_idt, options(noreturn));
    }
}

/// Executes `int 0x80`, which kvm_pvm cannot emulate and which is outside the SDK's IDT on VT
/// hardware (#GP).
#[inline(never)]
fn do_bad_opcode() -> ! {
    // SAFETY: a software interrupt the guest has no handler for; either way the domain stops.
    unsafe { core::arch::asm!("int 0x80", "ud2", options(noreturn)) }
}

/// Recurses until the stack runs into the SDK's guard page.
#[inline(never)]
fn do_stack_overflow(depth: u64) -> u64 {
    if depth == u64::MAX {
        return 0;
    }
    // A frame of half a KiB that the optimiser cannot drop or turn into a loop.
    let frame = core::hint::black_box([depth; 64]);
    do_stack_overflow(depth + 1) + frame[depth as usize % 64]
}

/// Spins until the VMM's timeout stops the domain.
fn hang() -> ! {
    loop {
        core::hint::spin_loop();
    }
}

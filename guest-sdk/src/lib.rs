//! The Parapet guest SDK: everything a paravirtualized Rust unikernel needs to boot on Parapet.
//!
//! A guest is a `no_std` binary that names its entry function with [`entry!`]:
//!
//! ```ignore
//! #![cfg_attr(target_os = "none", no_std)]
//! #![no_main]
//!
//! guest_sdk::entry!(main);
//!
//! fn main() -> u32 {
//!     guest_sdk::println!("Hello from Parapet!");
//!     0
//! }
//! ```
//!
//! Built with `cargo build --target x86_64-unknown-none`, the SDK provides the kernel around that
//! function ([`mod@entry`]): it sets up a stack, checks the start-info page ([`start_info`]), installs
//! an IDT whose handlers report exceptions to the hypervisor and whose upcall gate runs event
//! channel handlers ([`idt`], [`evtchn`]), initialises the logger ([`logger`]), the heap
//! ([`heap`]), the grant table ([`grant`]) and the console ring ([`console`]), enables event
//! delivery, runs `main`, and powers the domain off with the value `main` returns. Built for any
//! other target, [`entry!`] produces a host program that explains how to run the guest instead.
//!
//! A guest build needs three rustflags for `x86_64-unknown-none`, which select the SDK's linker
//! script: `-C link-arg=-Tparapet-guest.ld -C link-arg=--no-pie -C relocation-model=static`,
//! in the guest crate's `.cargo/config.toml` (the SDK's build script refuses a guest build
//! without them). `cargo xtask new-guest PATH` in the Parapet repository makes a guest crate
//! with that file, in which plain `cargo run` boots the guest with `parapet run` (README,
//! "Writing your own guest").
//!
//! The rest of the SDK is a set of small modules with one job each:
//!
//! | module | what it does |
//! |---|---|
//! | [`hypercall`] | raw hypercalls through the hypercall page and typed, safe wrappers |
//! | [`pvops`] | platform-specific privileged operations: interrupt masking, idling, stopping |
//! | [`evtchn`] | event channels: `event_channel_op`, the doorbell, handlers, the upcall |
//! | [`timer`] | one-shot and periodic timers, [`timer::sleep`], waiting on several event sources |
//! | [`grant`] | the grant table: granting and revoking pages, `GNTTABOP_copy` |
//! | [`device`] | split-driver devices: discovery, `device_op` connect/disconnect |
//! | [`page`] | pages shared with the VMM (`pv_drivers::shared::SharedPage` implementations) |
//! | [`loopback`] | the loopback test device's frontend, connected and driven |
//! | [`net`] | PV network interfaces: packet pools, send/receive/wait; with the `smoltcp` feature, smoltcp's `phy::Device` |
//! | [`block`] | PV block devices: sector reads, writes, flushes and discards, several in flight; with the `embedded-sdmmc` feature, a FAT file system on them |
//! | [`console`] | [`print!`]/[`println!`] over the console ring, input, emergency `console_io` |
//! | [`logger`] | a `log` crate backend over the console |
//! | [`time`] | a monotonic clock from the PV clock, the wall clock |
//! | [`mod@panic`] | the panic handler: prints the message, then shuts down with `SHUTDOWN_crash` |
//! | [`heap`] | the global allocator over the largest usable memory region |
//! | [`idt`] | exception stubs that report every CPU exception to the VMM; handlers for interrupt vectors |
//! | [`paging`] | the stack guard page in the builder's page tables |
//!
//! The ABI itself (numbers, structures, constants) lives in [`parapet_abi`], re-exported as
//! [`abi`].
#![no_std]
#![deny(missing_docs)]

extern crate alloc;
#[cfg(test)]
extern crate std;

pub use parapet_abi as abi;

pub mod block;
pub mod console;
mod cpu;
pub mod device;
pub mod entry;
pub mod evtchn;
pub mod grant;
pub mod heap;
pub mod hypercall;
pub mod idt;
pub mod logger;
pub mod loopback;
pub mod net;
pub mod page;
pub mod paging;
pub mod panic;
pub mod pvops;
pub mod start_info;
pub mod time;
pub mod timer;

pub use panic::crash;
pub use pvops::poweroff;

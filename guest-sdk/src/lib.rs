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
//! channel handlers ([`idt`], [`event_channel`]), initialises the logger ([`logger`]), the heap
//! ([`heap`]), the grant table ([`grant_table`]) and the console ring ([`console`]), enables event
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
//! The rest of the SDK is a set of small modules with one job each, listed bottom-up (see
//! [Layers](#layers)):
//!
//! | module | what it does |
//! |---|---|
//! | [`start_info`] | the start-info page the VMM passed at entry; the command line |
//! | `cpu` (private) | the x86 instructions the SDK executes (`cli`/`sti`, RFLAGS.IF, `rdtsc`, x2APIC EOI) as safe functions |
//! | [`hypercall`] | a typed, safe wrapper for every hypercall the SDK makes; [`hypercall::raw`] only for testing hostile inputs |
//! | [`heap`] | the global allocator over the largest usable memory region |
//! | [`paging`] | the stack guard page in the builder's page tables |
//! | [`page`] | memory shared with the VMM: [`page::PageBox`], [`page::GuestPage`] (`pv_drivers::shared::SharedPage` implementations), safe views of the shared-info page, the grant table and the VIF page, and fresh reads of the start-info fields a restore rewrites |
//! | [`pvops`] | platform-specific privileged operations: interrupt masking, idling, powering off |
//! | [`time`] | a monotonic clock from the PV clock, the wall clock |
//! | [`grant_table`] | the grant table: [`grant_table::GrantRef`]s, granting and revoking pages, `GNTTABOP_copy` |
//! | [`event_channel`] | event channels: [`event_channel::Port`]s, `event_channel_op`, the doorbell, handlers, the upcall |
//! | [`timer`] | one-shot and periodic timers, [`timer::sleep`], waiting on several event sources |
//! | [`shutdown`] | shutdown requests from the host (`SIGTERM` to the VMM): [`shutdown::listen`], [`shutdown::requested`] |
//! | [`console`] | [`print!`]/[`println!`] over the console ring, input, emergency `console_io` |
//! | [`logger`] | a `log` crate backend over the console |
//! | [`mod@panic`] | [`crash`], and the panic handler: prints the message, then shuts down with `SHUTDOWN_crash` |
//! | [`idt`] | exception stubs that report every CPU exception to the VMM; handlers for interrupt vectors |
//! | [`snapshot`] | [`snapshot::suspend`] (Xen's `SHUTDOWN_suspend`: the VMM saves the domain; the call returns in each restore) and the restore [`snapshot::generation`] |
//! | [`device`] | split-driver devices: discovery, `device_op`, and [`device::Connection`], the connection (ring pages granted to the backend, the event channel, disconnect on drop) every frontend below is built on |
//! | [`loopback`] | the loopback test device's frontend, connected and driven |
//! | [`block`] | PV block devices: sector reads, writes, flushes and discards, several in flight; with the `embedded-sdmmc` feature, a FAT file system on them |
//! | [`net`] | PV network interfaces: packet pools, send/receive/wait, a restored clone's new MAC; with the `smoltcp` feature, smoltcp's `phy::Device` |
//! | [`mod@entry`] | the kernel around `main`: `_start`, boot, power-off |
//!
//! # Layers
//!
//! The modules form layers, and a module uses (`use crate::…`, or a `crate::…` path) only
//! modules of the layers below its own, never one of its own layer or above, so the SDK reads
//! bottom-up and has no import cycles. The crate's `tests/layering.rs` checks the sources
//! against this table.
//!
//! | layer | modules | what they use |
//! |---|---|---|
//! | 0 | [`start_info`], `cpu`, [`hypercall`], [`heap`], [`paging`] | nothing of the SDK |
//! | 1 | [`page`] | `start_info` (the boot pages it names), `cpu` |
//! | 2 | [`pvops`], [`time`], [`grant_table`] | `page` (the VIF page, the PV clock, the grant table), `cpu`, `hypercall` |
//! | 3 | [`event_channel`] | `page` (the event bitmaps), `pvops`, `hypercall`, `cpu` |
//! | 4 | [`timer`], [`shutdown`] | `timer`: `event_channel` (`VIRQ_TIMER`, port latches), `time`, `pvops`, `hypercall`; `shutdown`: `event_channel` (`VIRQ_SHUTDOWN`, its latch), `pvops` |
//! | 5 | [`console`] | `timer` (blocking waits), `event_channel`, `time`, `pvops`, `page`, `hypercall` |
//! | 6 | [`logger`], [`mod@panic`], [`snapshot`], [`device`] | `logger`: `console`, `start_info`; `panic`: `console`, `hypercall`; `snapshot`: `console`, `hypercall`, `page`; `device`: `event_channel`, `grant_table`, `page`, `hypercall`, `start_info` |
//! | 7 | [`idt`], [`loopback`], [`block`], [`net`] | `idt`: `panic`, `console`, `event_channel`, `pvops`, `hypercall`, `cpu`; the drivers: `device`, `timer`, `time`, `event_channel`, `grant_table`, `page` (`net` also `start_info`) |
//! | 8 | [`mod@entry`] | everything it starts at boot |
//!
//! So stopping the domain as crashed, which drains the console first, is [`crash`] in
//! [`mod@panic`], above the console, rather than in [`pvops`]; and sleeping, which needs the
//! timers, is [`timer::sleep`] rather than part of [`time`].
//!
//! `unsafe` code lives only in `cpu`, [`hypercall`], [`heap`], [`paging`], [`page`], [`idt`]
//! and [`mod@entry`]: the instructions, the hypercall page, the allocator, the page tables,
//! memory shared with the VMM, the IDT and the boot code. Every other module is safe code
//! over their safe APIs. Every `unsafe` block carries a `// SAFETY:` comment.
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
pub mod event_channel;
pub mod grant_table;
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
pub mod shutdown;
pub mod snapshot;
pub mod start_info;
pub mod time;
pub mod timer;

pub use panic::crash;
pub use pvops::poweroff;

//! Parapet's split drivers.
//!
//! Each driver is one protocol (a module stating its ring layout and rules, as Xen's `io/*.h`
//! headers do), a frontend that runs in the guest, and a backend that runs in the VMM. The
//! crate is `no_std`, has no `unsafe`, and touches shared memory only through the
//! [`SharedPage`](shared::SharedPage) trait, which the guest SDK implements over its own pages
//! and the VMM over grant-checked mappings of guest memory. The ABI types (layouts, constants)
//! live in `parapet-abi`.
//!
//! * [`shared`]: the [`SharedPage`](shared::SharedPage) trait and an in-memory
//!   [`TestPage`](shared::TestPage).
//! * [`ring`]: Xen's `io/ring.h` request/response rings ([`FrontRing`](ring::FrontRing),
//!   [`BackRing`](ring::BackRing)).
//! * [`console`]: the PV console page ([`ConsoleFront`](console::ConsoleFront),
//!   [`ConsoleBack`](console::ConsoleBack)).
//! * [`grant_table`]: the [`GrantMapper`](grant_table::GrantMapper) trait backends map grants with.
//! * [`loopback`]: the loopback test device ([`LoopbackFront`](loopback::LoopbackFront),
//!   [`serve_batch`](loopback::serve_batch)).
//! * [`blkif`]: PV block devices ([`BlkifFront`](blkif::BlkifFront),
//!   [`serve_batch`](blkif::serve_batch) over a [`BlockStore`](blkif::BlockStore)).
//! * [`netif`]: PV network interfaces ([`NetifFront`](netif::NetifFront), [`serve_tx`](netif::serve_tx), [`serve_rx`](netif::serve_rx)).
#![no_std]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

#[cfg(test)]
extern crate std;

pub mod blkif;
pub mod console;
pub mod grant_table;
pub mod loopback;
pub mod netif;
pub mod ring;
pub mod shared;

#[cfg(test)]
mod testutil;

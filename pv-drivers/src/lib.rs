//! Parapet's split drivers.
//!
//! Each driver is one protocol (a module stating its ring layout, as Xen's `io/*.h` headers do),
//! a frontend that runs in the guest (`no_std`), and a backend that runs in the VMM. The console,
//! block and network drivers land here with the PV-core, block and network milestones; the shared
//! ABI types they build on live in `parapet-abi`.
#![no_std]

//! The PV network protocol: Xen's `io/netif.h`, a transmit and a receive ring per interface
//! (`device::kind::NET`, `parapet run --net tap=NAME`).
//!
//! Transmit: the guest puts each packet in a granted page and posts a [`NetifTxRequest`] naming
//! it; the backend sends it on the host's TAP device and answers with a [`NetifTxResponse`].
//! Receive: the guest posts empty granted pages with [`NetifRxRequest`]s; the backend copies each
//! packet from the TAP device into one and answers with a [`NetifRxResponse`] whose `status` is
//! the packet's length. Parapet packets fit one page: `NETTXF_more_data` and
//! `NETTXF_extra_info` are not supported (such requests are dropped and answered
//! `NETIF_RSP_ERROR`).

use crate::grant_table::GrantRef;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// Transmit request: Xen's `netif_tx_request` (12 bytes).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct NetifTxRequest {
    /// The page holding the packet (read access).
    pub gref: GrantRef,
    /// Offset of the packet in the page.
    pub offset: u16,
    /// `NETTXF_*`.
    pub flags: u16,
    /// Echoed in the response.
    pub id: u16,
    /// Packet length in bytes (1–`offset`-to-page-end, at most [`NETIF_MAX_PACKET`]).
    pub size: u16,
}

/// Transmit response: Xen's `netif_tx_response` (4 bytes).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct NetifTxResponse {
    /// The request's `id`.
    pub id: u16,
    /// `NETIF_RSP_*`.
    pub status: i16,
}

/// Receive request: Xen's `netif_rx_request` (8 bytes): an empty page for one packet.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct NetifRxRequest {
    /// Echoed in the response.
    pub id: u16,
    /// Padding.
    pub pad: u16,
    /// The page (write access).
    pub gref: GrantRef,
}

/// Receive response: Xen's `netif_rx_response` (8 bytes).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct NetifRxResponse {
    /// The request's `id`.
    pub id: u16,
    /// Offset of the packet in the page (Parapet: always 0).
    pub offset: u16,
    /// `NETRXF_*`.
    pub flags: u16,
    /// The packet's length if positive, else `NETIF_RSP_*`.
    pub status: i16,
}

/// Transmit flag: the checksum is not filled in (not supported: Parapet guests fill checksums).
pub const NETTXF_CSUM_BLANK: u16 = 1 << 0;
/// Transmit flag: the packet's checksum is known good.
pub const NETTXF_DATA_VALIDATED: u16 = 1 << 1;
/// Transmit flag: more fragments follow (not supported).
pub const NETTXF_MORE_DATA: u16 = 1 << 2;
/// Transmit flag: an extra-info slot follows (not supported).
pub const NETTXF_EXTRA_INFO: u16 = 1 << 3;

/// Receive flag: the packet's checksum is known good.
pub const NETRXF_DATA_VALIDATED: u16 = 1 << 0;

/// The packet was dropped (no error in the request, e.g. the host link is down).
pub const NETIF_RSP_DROPPED: i16 = -2;
/// The request was invalid (bad grant, size or offset, unsupported flag), the packet dropped.
pub const NETIF_RSP_ERROR: i16 = -1;
/// Success.
pub const NETIF_RSP_OKAY: i16 = 0;

/// The largest packet (Ethernet header + 1500-byte MTU; also the largest frame the TAP device
/// delivers with the default MTU).
pub const NETIF_MAX_PACKET: usize = 1514;

/// `Connect::rings` index of the transmit ring.
pub const RING_TX: usize = 0;
/// `Connect::rings` index of the receive ring.
pub const RING_RX: usize = 1;
/// `DeviceInfo::config` index of the MAC address (bytes 0–5, little-endian in the `u64`).
pub const CONFIG_MAC: usize = 0;
/// `DeviceInfo::config` index of the MTU.
pub const CONFIG_MTU: usize = 1;

const _: () = assert!(core::mem::size_of::<NetifTxRequest>() == 12);
const _: () = assert!(core::mem::size_of::<NetifTxResponse>() == 4);
const _: () = assert!(core::mem::size_of::<NetifRxRequest>() == 8);
const _: () = assert!(core::mem::size_of::<NetifRxResponse>() == 8);

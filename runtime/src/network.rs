//! The container's network namespace becomes the guest's network.
//!
//! `config.json`'s `linux.namespaces` decides where the container's process (and so the VMM)
//! lives ([`Namespace`]): a `network` entry with a `path` (what CNI, Kubernetes and
//! `ctr run --with-ns network:PATH` give) is joined; one without a path is a new, empty
//! namespace; no entry leaves the process in the runtime's own namespace, where nothing is
//! plumbed (the host's interfaces are not the container's to take).
//!
//! Inside a joined namespace, [`plumb`] looks for the interface CNI left there: not `lo`, up,
//! with an Ethernet address and an IPv4 address (among several, the one the default route goes
//! out of; none is not an error, the guest just gets no network). It creates a TAP device,
//! [`TAP_NAME`], non-persistent (it goes when the VMM, which holds its only descriptor, exits),
//! with the interface's MTU, gives both an `ingress` qdisc, and joins them with two
//! match-everything `u32` filters whose `mirred` actions redirect every frame (the interface's ingress to the TAP's
//! egress, i.e. to the guest, and what the guest sends, the TAP's ingress, to the interface's
//! egress), as urunc does. The guest gets the interface's MAC address (frames to the container's
//! MAC reach it, and its ARP answers carry that MAC), its MTU, and its IPv4 address and gateway
//! on the command line ([`Attached::amend_cmdline`]).
//!
//! The TAP and its own filter go away with the VMM; the filter on the interface does not, and a
//! filter redirecting to a vanished device drops every frame, which would cut off the next
//! container in the same namespace (a Kubernetes restart). So [`release`] removes it (and the
//! `ingress` qdisc if this runtime added it and nothing else uses it) when the container is
//! deleted, and [`plumb`] also replaces a stale one a lost container left behind.

use crate::error::{Context, Error, Result};
use crate::netlink::{Filter, Link, Rtnl};
use oci_spec::runtime::{LinuxNamespaceType, Spec};
use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;
use rustix::thread::{LinkNameSpaceType, UnshareFlags};
use serde::{Deserialize, Serialize};
use std::net::Ipv4Addr;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

/// The TAP device's name inside the container's namespace.
pub const TAP_NAME: &str = "ptap0";
/// The priority of the redirecting filters: first on the interface's ingress.
pub const FILTER_PRIORITY: u16 = 1;
/// The largest MTU the guest's interface has (docs/abi.md §10.3).
const GUEST_MAX_MTU: u32 = 1500;

/// Where the container's process lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Namespace {
    /// No `network` namespace entry: the runtime's own; nothing is plumbed.
    Host,
    /// A `network` entry without a path: a new namespace, empty (the guest has no network).
    New,
    /// A `network` entry with a path: that namespace, plumbed.
    Join(PathBuf),
}

impl Namespace {
    /// The network namespace `spec` asks for.
    pub fn of(spec: &Spec) -> Namespace {
        let entry = spec
            .linux()
            .as_ref()
            .and_then(|l| l.namespaces().as_ref())
            .and_then(|nss| {
                nss.iter()
                    .find(|ns| ns.typ() == LinuxNamespaceType::Network)
            });
        match entry {
            None => Namespace::Host,
            Some(ns) => match ns.path() {
                Some(p) if !p.as_os_str().is_empty() => Namespace::Join(p.clone()),
                _ => Namespace::New,
            },
        }
    }

    /// Moves this (single-threaded) process into the namespace.
    pub fn enter(&self) -> Result<()> {
        match self {
            Namespace::Host => Ok(()),
            Namespace::New => {
                // SAFETY: only the network namespace is unshared, not the descriptor table, so
                // no thread can see descriptors of another table.
                unsafe { rustix::thread::unshare_unsafe(UnshareFlags::NEWNET) }
                    .context(|| "unshare the network namespace")
            }
            Namespace::Join(path) => {
                let fd = open_namespace(path)?;
                rustix::thread::move_into_link_name_space(
                    fd.as_fd(),
                    Some(LinkNameSpaceType::Network),
                )
                .context(|| format!("join the network namespace {}", path.display()))
            }
        }
    }
}

fn open_namespace(path: &Path) -> Result<OwnedFd> {
    rustix::fs::open(path, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())
        .context(|| format!("network namespace {}", path.display()))
}

/// What [`plumb`] made: the interface the guest stands in for, and the TAP joined to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attached {
    /// The interface's name.
    pub interface: String,
    /// Its index.
    pub index: u32,
    /// The TAP's index.
    pub tap_index: u32,
    /// Whether the interface's `ingress` qdisc was added here (and so is removed again).
    pub created_qdisc: bool,
    /// The interface's IPv4 address, the guest's.
    pub address: Ipv4Addr,
    /// Its prefix length.
    pub prefix: u8,
    /// The default route's gateway through the interface, if any.
    pub gateway: Option<Ipv4Addr>,
    /// The interface's MAC address, the guest's.
    pub mac: [u8; 6],
    /// The interface's MTU (the TAP's too).
    pub mtu: u32,
    /// The TAP's descriptor number in the container's process, which the VMM inherits.
    pub fd: i32,
}

impl Attached {
    /// `parapet run`'s `--net` value: the inherited TAP, the interface's MAC and, if below
    /// 1500, its MTU.
    pub fn vmm_net(&self) -> String {
        let m = self.mac;
        let mut s = format!(
            "fd={},mac={:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            self.fd, m[0], m[1], m[2], m[3], m[4], m[5]
        );
        if self.mtu < GUEST_MAX_MTU {
            s.push_str(&format!(",mtu={}", self.mtu));
        }
        s
    }

    /// `cmdline` with `ip=A.B.C.D/N` and, with a gateway, `gw=A.B.C.D` appended, unless it
    /// already has an `ip=` word (then the user's choice stands, gateway included).
    pub fn amend_cmdline(&self, cmdline: &str) -> String {
        if cmdline
            .split_ascii_whitespace()
            .any(|w| w.starts_with("ip="))
        {
            return cmdline.to_string();
        }
        let mut out = cmdline.trim_end().to_string();
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(&format!("ip={}/{}", self.address, self.prefix));
        if let Some(gw) = self.gateway {
            out.push_str(&format!(" gw={gw}"));
        }
        out
    }
}

/// The interface the guest takes over, from what the namespace holds.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Choice {
    link: Link,
    mac: [u8; 6],
    address: Ipv4Addr,
    prefix: u8,
    gateway: Option<Ipv4Addr>,
}

/// Picks the interface: not `lo`, up, an Ethernet (6-byte, unicast) address, an IPv4 address;
/// among several, the one the default route goes out of, else the lowest index.
fn choose(
    links: &[Link],
    addresses: &[crate::netlink::Address],
    routes: &[crate::netlink::DefaultRoute],
) -> Option<Choice> {
    let mut candidates: Vec<Choice> = links
        .iter()
        .filter(|l| l.name != "lo" && l.up && l.name != TAP_NAME)
        .filter_map(|l| {
            let mac: [u8; 6] = l.mac.as_slice().try_into().ok()?;
            if mac[0] & 1 != 0 || mac == [0; 6] {
                return None;
            }
            let a = addresses.iter().find(|a| a.index == l.index)?;
            Some(Choice {
                link: l.clone(),
                mac,
                address: a.address,
                prefix: a.prefix,
                gateway: None,
            })
        })
        .collect();
    candidates.sort_by_key(|c| c.link.index);
    let routed = candidates
        .iter()
        .position(|c| routes.iter().any(|r| r.index == Some(c.link.index)))
        .unwrap_or(0);
    let mut choice = candidates.into_iter().nth(routed)?;
    choice.gateway = routes
        .iter()
        .filter(|r| r.index == Some(choice.link.index))
        .find_map(|r| r.gateway);
    Some(choice)
}

/// In the namespace this process is in: finds the interface, creates the TAP and joins the two
/// (see the module's documentation). `None` when there is no interface to take. On failure
/// nothing is left behind.
pub fn plumb() -> Result<Option<(Attached, OwnedFd)>> {
    let fail = |what: &str, e: std::io::Error| Error::Io {
        what: format!("network: {what}"),
        source: e,
    };
    let mut rtnl = Rtnl::open().map_err(|e| fail("open a netlink socket", e))?;
    let links = rtnl.links().map_err(|e| fail("list the interfaces", e))?;
    if links.iter().any(|l| l.name == TAP_NAME) {
        return Err(Error::Other(format!(
            "network: the network namespace already has a {TAP_NAME}: another Parapet guest \
             is using its interface"
        )));
    }
    let addresses = rtnl
        .addresses()
        .map_err(|e| fail("list the IPv4 addresses", e))?;
    let routes = rtnl
        .default_routes()
        .map_err(|e| fail("list the routes", e))?;
    let Some(choice) = choose(&links, &addresses, &routes) else {
        return Ok(None);
    };
    let iface = &choice.link;
    let on = |what: &str, e: std::io::Error| Error::Io {
        what: format!("network: {}: {what}", iface.name),
        source: e,
    };

    // A redirect left by a container that was never deleted would drop the frames first.
    let filters = rtnl
        .ingress_filters(iface.index)
        .or_else(|e| match Errno::from_io_error(&e) {
            // No ingress qdisc, so no filters.
            Some(Errno::INVAL | Errno::NOENT) => Ok(Vec::new()),
            _ => Err(e),
        })
        .map_err(|e| on("list its ingress filters", e))?;
    match ours(&filters, &links, None) {
        Ours::Nothing => {}
        Ours::Dead => rtnl
            .delete_filters(iface.index, FILTER_PRIORITY)
            .map_err(|e| on("remove a redirect to a vanished TAP", e))?,
        Ours::Other => {
            return Err(Error::Other(format!(
                "network: {}: its ingress already has a filter of priority {FILTER_PRIORITY} \
                 that is not a Parapet redirect to a vanished TAP",
                iface.name
            )));
        }
    }

    let tap = open_tap().map_err(|e| fail(&format!("create the TAP {TAP_NAME}"), e))?;
    let tap_index = rtnl
        .link_index(TAP_NAME)
        .map_err(|e| fail(&format!("find the TAP {TAP_NAME}"), e))?;
    let mut attached = Attached {
        interface: iface.name.clone(),
        index: iface.index,
        tap_index,
        created_qdisc: false,
        address: choice.address,
        prefix: choice.prefix,
        gateway: choice.gateway,
        mac: choice.mac,
        mtu: iface.mtu,
        fd: tap.as_raw_fd(),
    };
    let result = (|| {
        rtnl.set_up(tap_index, iface.mtu)
            .map_err(|e| fail(&format!("set {TAP_NAME} up"), e))?;
        attached.created_qdisc = rtnl
            .add_ingress_qdisc(iface.index)
            .map_err(|e| on("add an ingress qdisc", e))?;
        rtnl.add_ingress_qdisc(tap_index)
            .map_err(|e| fail(&format!("add an ingress qdisc to {TAP_NAME}"), e))?;
        rtnl.add_redirect(iface.index, FILTER_PRIORITY, tap_index)
            .map_err(|e| on(&format!("redirect its frames to {TAP_NAME}"), e))?;
        rtnl.add_redirect(tap_index, FILTER_PRIORITY, iface.index)
            .map_err(|e| fail(&format!("redirect {TAP_NAME}'s frames"), e))?;
        Ok(())
    })();
    if let Err(e) = result {
        let _ = undo(&mut rtnl, &attached);
        return Err(e);
    }
    Ok(Some((attached, tap)))
}

/// What the interface's ingress has at [`FILTER_PRIORITY`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ours {
    /// Nothing.
    Nothing,
    /// Only `mirred` redirects to vanished interfaces, or to the TAP `tap` (which is going):
    /// Parapet's, left by a container that is gone.
    Dead,
    /// Something else: another filter, or a redirect to a live interface.
    Other,
}

fn ours(filters: &[Filter], links: &[Link], tap: Option<u32>) -> Ours {
    let at: Vec<&Filter> = filters
        .iter()
        .filter(|f| f.priority == FILTER_PRIORITY && f.actions > 0)
        .collect();
    if at.is_empty() {
        return if filters.iter().any(|f| f.priority == FILTER_PRIORITY) {
            Ours::Other
        } else {
            Ours::Nothing
        };
    }
    let dead = |target: u32| {
        Some(target) == tap || target == 0 || !links.iter().any(|l| l.index == target)
    };
    if at
        .iter()
        .all(|f| f.redirects.len() == f.actions && f.redirects.iter().all(|&t| dead(t)))
    {
        Ours::Dead
    } else {
        Ours::Other
    }
}

/// Removes from the interface what [`plumb`] added: the redirect at [`FILTER_PRIORITY`] if it
/// goes to the TAP `attached` names or to nowhere (a later container's live one stays), and the
/// `ingress` qdisc if it was added for this container and holds no other filter.
fn undo(rtnl: &mut Rtnl, attached: &Attached) -> std::io::Result<()> {
    let gone = |e: &std::io::Error| {
        matches!(
            Errno::from_io_error(e),
            Some(Errno::NODEV | Errno::INVAL | Errno::NOENT)
        )
    };
    let filters = match rtnl.ingress_filters(attached.index) {
        Ok(f) => f,
        // No interface, or no ingress qdisc: nothing of ours is left.
        Err(e) if gone(&e) => return Ok(()),
        Err(e) => return Err(e),
    };
    let links = rtnl.links()?;
    let mut left = filters.len();
    if ours(&filters, &links, Some(attached.tap_index)) == Ours::Dead {
        rtnl.delete_filters(attached.index, FILTER_PRIORITY)?;
        left = filters
            .iter()
            .filter(|f| f.priority != FILTER_PRIORITY)
            .count();
    }
    if attached.created_qdisc && left == 0 {
        match rtnl.delete_ingress_qdisc(attached.index) {
            Err(e) if !gone(&e) => return Err(e),
            _ => {}
        }
    }
    Ok(())
}

/// Undoes [`plumb`] in the network namespace `netns` from outside it (`delete`, or a `create`
/// that failed after the plumbing): a vanished namespace or interface has nothing left to undo.
pub fn release(netns: &Path, attached: &Attached) -> Result<()> {
    let fd = match rustix::fs::open(netns, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty()) {
        Ok(fd) => fd,
        Err(Errno::NOENT) => return Ok(()),
        Err(e) => return Err(e).context(|| format!("network namespace {}", netns.display())),
    };
    // A thread of its own joins the namespace, so this process stays where it is.
    std::thread::scope(|s| {
        s.spawn(|| -> Result<()> {
            match rustix::thread::move_into_link_name_space(
                fd.as_fd(),
                Some(LinkNameSpaceType::Network),
            ) {
                Ok(()) => {}
                // Not a network namespace (any more): nothing of ours can be in it.
                Err(Errno::INVAL) => return Ok(()),
                Err(e) => {
                    return Err(e)
                        .context(|| format!("join the network namespace {}", netns.display()));
                }
            }
            let mut rtnl = Rtnl::open().context(|| "network: open a netlink socket")?;
            undo(&mut rtnl, attached).context(|| {
                format!(
                    "network: {} in {}: remove the redirect to the guest's TAP",
                    attached.interface,
                    netns.display()
                )
            })
        })
        .join()
        .unwrap_or_else(|_| Err(Error::Other("network: the release thread panicked".into())))
    })
}

/// `struct ifreq` as TUNSETIFF takes it: the name, then the flags, in 40 bytes.
#[repr(C)]
struct IfReq {
    name: [u8; 16],
    flags: i16,
    _pad: [u8; 22],
}

/// `TUNSETIFF`, `_IOW('T', 202, int)`.
const TUNSETIFF: rustix::ioctl::Opcode = rustix::ioctl::opcode::write::<i32>(b'T', 202);
/// `IFF_TAP`: Ethernet frames.
const IFF_TAP: i16 = 0x0002;
/// `IFF_NO_PI`: no packet information header. The VMM's own TAPs (`--net tap=NAME`) have the
/// same two flags and no `IFF_VNET_HDR`; `parapet run --net fd=N` refuses anything else.
const IFF_NO_PI: i16 = 0x1000;

/// Creates the TAP [`TAP_NAME`] in this process's namespace: not persistent, so it goes when its
/// last descriptor (the VMM's) closes.
fn open_tap() -> std::io::Result<OwnedFd> {
    let fd = rustix::fs::open(
        "/dev/net/tun",
        OFlags::RDWR | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let mut req = IfReq {
        name: [0; 16],
        flags: IFF_TAP | IFF_NO_PI,
        _pad: [0; 22],
    };
    req.name[..TAP_NAME.len()].copy_from_slice(TAP_NAME.as_bytes());
    // SAFETY: TUNSETIFF reads and writes one `struct ifreq`, which `IfReq` is in size (40
    // bytes) and layout (a 16-byte name, then the short flags); the descriptor is ours.
    unsafe {
        rustix::ioctl::ioctl(
            &fd,
            rustix::ioctl::Updater::<TUNSETIFF, IfReq>::new(&mut req),
        )
    }?;
    // Above the standard descriptors even if one of them was closed: the VMM takes the TAP as
    // `--net fd=N`, which must not be its console.
    Ok(rustix::io::fcntl_dupfd_cloexec(&fd, 3)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netlink::{Address, DefaultRoute};

    fn link(index: u32, name: &str, up: bool, mac: &[u8]) -> Link {
        Link {
            index,
            name: name.into(),
            up,
            mac: mac.to_vec(),
            mtu: 1500,
        }
    }

    const MAC: [u8; 6] = [0x02, 0x42, 0xac, 0x11, 0x00, 0x02];

    #[test]
    fn the_interface_with_an_address_is_taken() {
        let links = [
            link(1, "lo", true, &[0; 6]),
            link(2, "eth0", true, &MAC),
            link(3, "down0", false, &[2, 0, 0, 0, 0, 3]),
        ];
        let addrs = [
            Address {
                index: 1,
                address: Ipv4Addr::LOCALHOST,
                prefix: 8,
            },
            Address {
                index: 2,
                address: Ipv4Addr::new(10, 88, 0, 5),
                prefix: 16,
            },
            Address {
                index: 3,
                address: Ipv4Addr::new(10, 99, 0, 5),
                prefix: 16,
            },
        ];
        let routes = [DefaultRoute {
            index: Some(2),
            gateway: Some(Ipv4Addr::new(10, 88, 0, 1)),
        }];
        let c = choose(&links, &addrs, &routes).unwrap();
        assert_eq!(c.link.name, "eth0");
        assert_eq!(c.mac, MAC);
        assert_eq!((c.address, c.prefix), (Ipv4Addr::new(10, 88, 0, 5), 16));
        assert_eq!(c.gateway, Some(Ipv4Addr::new(10, 88, 0, 1)));
        // Without a route: no gateway.
        let c = choose(&links, &addrs, &[]).unwrap();
        assert_eq!((c.link.name.as_str(), c.gateway), ("eth0", None));
    }

    #[test]
    fn among_several_the_default_route_decides() {
        let links = [
            link(5, "a", true, &MAC),
            link(6, "b", true, &[2, 0, 0, 0, 0, 6]),
        ];
        let addrs = [
            Address {
                index: 5,
                address: Ipv4Addr::new(10, 0, 0, 5),
                prefix: 24,
            },
            Address {
                index: 6,
                address: Ipv4Addr::new(10, 0, 1, 6),
                prefix: 24,
            },
        ];
        let routes = [DefaultRoute {
            index: Some(6),
            gateway: None,
        }];
        assert_eq!(choose(&links, &addrs, &routes).unwrap().link.name, "b");
        assert_eq!(choose(&links, &addrs, &[]).unwrap().link.name, "a");
    }

    #[test]
    fn no_interface_is_no_network() {
        let links = [
            link(1, "lo", true, &[0; 6]),
            link(2, "eth0", true, &MAC),
            link(3, "tun0", true, &[]),
        ];
        let addrs = [
            Address {
                index: 1,
                address: Ipv4Addr::LOCALHOST,
                prefix: 8,
            },
            Address {
                index: 3,
                address: Ipv4Addr::new(10, 0, 0, 1),
                prefix: 24,
            },
        ];
        // eth0 has no IPv4 address, tun0 no Ethernet address.
        assert_eq!(choose(&links, &addrs, &[]), None);
        assert_eq!(choose(&[], &[], &[]), None);
    }

    fn attached(gateway: Option<Ipv4Addr>, mtu: u32) -> Attached {
        Attached {
            interface: "eth0".into(),
            index: 2,
            tap_index: 7,
            created_qdisc: true,
            address: Ipv4Addr::new(10, 88, 0, 5),
            prefix: 16,
            gateway,
            mac: MAC,
            mtu,
            fd: 4,
        }
    }

    #[test]
    fn the_command_line_gets_the_address_unless_it_has_one() {
        let a = attached(Some(Ipv4Addr::new(10, 88, 0, 1)), 1500);
        assert_eq!(a.amend_cmdline(""), "ip=10.88.0.5/16 gw=10.88.0.1");
        assert_eq!(
            a.amend_cmdline("requests=3 "),
            "requests=3 ip=10.88.0.5/16 gw=10.88.0.1"
        );
        assert_eq!(
            a.amend_cmdline("ip=192.168.1.2/24 x"),
            "ip=192.168.1.2/24 x"
        );
        // `vip=` is not `ip=`.
        let a = attached(None, 1500);
        assert_eq!(a.amend_cmdline("vip=1"), "vip=1 ip=10.88.0.5/16");
    }

    #[test]
    fn the_vmm_gets_the_descriptor_the_mac_and_a_smaller_mtu() {
        assert_eq!(attached(None, 1500).vmm_net(), "fd=4,mac=02:42:ac:11:00:02");
        assert_eq!(attached(None, 9000).vmm_net(), "fd=4,mac=02:42:ac:11:00:02");
        assert_eq!(
            attached(None, 1450).vmm_net(),
            "fd=4,mac=02:42:ac:11:00:02,mtu=1450"
        );
    }

    #[test]
    fn only_dead_redirects_are_taken_for_ours() {
        let f = |priority, actions, redirects: &[u32]| Filter {
            priority,
            actions,
            redirects: redirects.to_vec(),
        };
        let links = [link(2, "eth0", true, &MAC), link(9, "other", true, &MAC)];
        // A u32 filter dumps as its hash table (no actions) and its key (the action).
        let skeleton = f(FILTER_PRIORITY, 0, &[]);
        assert_eq!(ours(&[], &links, None), Ours::Nothing);
        assert_eq!(ours(&[f(5, 1, &[])], &links, None), Ours::Nothing);
        // Redirects to a vanished device (shown as 0, or an index no link has).
        for dead in [0, 7] {
            let filters = [skeleton.clone(), f(FILTER_PRIORITY, 1, &[dead])];
            assert_eq!(ours(&filters, &links, None), Ours::Dead);
        }
        // To the TAP being released.
        let filters = [skeleton.clone(), f(FILTER_PRIORITY, 1, &[9])];
        assert_eq!(ours(&filters, &links, Some(9)), Ours::Dead);
        // A live redirect (a later container's), another action, or a bare filter are not ours.
        assert_eq!(ours(&filters, &links, None), Ours::Other);
        assert_eq!(ours(&filters, &links, Some(4)), Ours::Other);
        assert_eq!(
            ours(&[f(FILTER_PRIORITY, 2, &[0])], &links, None),
            Ours::Other
        );
        assert_eq!(ours(&[skeleton], &links, None), Ours::Other);
    }

    #[test]
    fn namespaces_from_the_spec() {
        let spec = |nss: &str| -> Spec {
            serde_json::from_str(&format!(
                r#"{{"ociVersion":"1.0.2","root":{{"path":"rootfs"}},
                    "linux":{{"namespaces":{nss}}}}}"#
            ))
            .unwrap()
        };
        assert_eq!(
            Namespace::of(&spec(
                r#"[{"type":"pid"},{"type":"network","path":"/run/netns/x"}]"#
            )),
            Namespace::Join("/run/netns/x".into())
        );
        assert_eq!(
            Namespace::of(&spec(r#"[{"type":"network"}]"#)),
            Namespace::New
        );
        assert_eq!(
            Namespace::of(&spec(r#"[{"type":"pid"},{"type":"mount"}]"#)),
            Namespace::Host
        );
    }
}

//! rtnetlink, synchronously: the requests the runtime makes of the network namespace it is in
//! (links, IPv4 addresses and routes; `ingress` qdiscs and match-everything `u32` filters with
//! `mirred` actions), over one `NETLINK_ROUTE` socket (`netlink-sys`) with messages built and parsed by
//! `netlink-packet-route`. The socket belongs to the namespace of the thread that opened it.

use netlink_packet_core::{
    NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage,
    NetlinkPayload,
};
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};
use netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteHeader, RouteMessage};
use netlink_packet_route::tc::{
    TcAction, TcActionAttribute, TcActionMirrorOption, TcActionOption, TcActionType, TcAttribute,
    TcFilterMatchAllOption, TcFilterU32Option, TcHandle, TcMessage, TcMirror, TcMirrorActionType,
    TcOption, TcU32Key, TcU32Selector, TcU32SelectorFlags,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};
use std::io;
use std::net::{IpAddr, Ipv4Addr};

/// `ETH_P_ALL`: a filter for every protocol.
const ETH_P_ALL: u16 = 0x0003;

/// A link (network interface) as a dump reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// Its index.
    pub index: u32,
    /// Its name.
    pub name: String,
    /// Administratively up (`IFF_UP`).
    pub up: bool,
    /// Its hardware address (empty for `lo` and layer-3 devices).
    pub mac: Vec<u8>,
    /// Its MTU.
    pub mtu: u32,
}

/// An IPv4 address on a link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Address {
    /// The link's index.
    pub index: u32,
    /// The address.
    pub address: Ipv4Addr,
    /// The prefix length.
    pub prefix: u8,
}

/// An IPv4 default route of the main table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DefaultRoute {
    /// The link it goes out of, if it names one.
    pub index: Option<u32>,
    /// The gateway, if it has one.
    pub gateway: Option<Ipv4Addr>,
}

/// A filter on an ingress, as a dump reports it (a `u32` filter shows up as several entries:
/// its hash table and its keys, only the last with actions).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    /// The filter's priority.
    pub priority: u16,
    /// How many actions it has.
    pub actions: usize,
    /// The interfaces its `mirred` egress redirects send frames to (0: a vanished one).
    pub redirects: Vec<u32>,
}

/// A `NETLINK_ROUTE` socket in the network namespace it was opened in.
#[derive(Debug)]
pub struct Rtnl {
    socket: Socket,
    seq: u32,
    buf: Vec<u8>,
}

impl Rtnl {
    /// Opens a socket in the calling thread's network namespace.
    pub fn open() -> io::Result<Rtnl> {
        let mut socket = Socket::new(NETLINK_ROUTE)?;
        socket.bind_auto()?;
        socket.connect(&SocketAddr::new(0, 0))?;
        Ok(Rtnl {
            socket,
            seq: 0,
            buf: Vec::with_capacity(64 << 10),
        })
    }

    /// Every link.
    pub fn links(&mut self) -> io::Result<Vec<Link>> {
        let msgs = self.dump(RouteNetlinkMessage::GetLink(LinkMessage::default()))?;
        Ok(msgs
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewLink(l) => Some(link(l)),
                _ => None,
            })
            .collect())
    }

    /// Every IPv4 address.
    pub fn addresses(&mut self) -> io::Result<Vec<Address>> {
        let mut req = AddressMessage::default();
        req.header.family = AddressFamily::Inet;
        let msgs = self.dump(RouteNetlinkMessage::GetAddress(req))?;
        Ok(msgs
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewAddress(a) if a.header.family == AddressFamily::Inet => {
                    let ip = a.attributes.iter().find_map(|attr| match attr {
                        AddressAttribute::Local(IpAddr::V4(ip)) => Some(*ip),
                        _ => None,
                    });
                    let ip = ip.or_else(|| {
                        a.attributes.iter().find_map(|attr| match attr {
                            AddressAttribute::Address(IpAddr::V4(ip)) => Some(*ip),
                            _ => None,
                        })
                    })?;
                    Some(Address {
                        index: a.header.index,
                        address: ip,
                        prefix: a.header.prefix_len,
                    })
                }
                _ => None,
            })
            .collect())
    }

    /// The IPv4 default routes of the main table.
    pub fn default_routes(&mut self) -> io::Result<Vec<DefaultRoute>> {
        let mut req = RouteMessage::default();
        req.header.address_family = AddressFamily::Inet;
        let msgs = self.dump(RouteNetlinkMessage::GetRoute(req))?;
        Ok(msgs
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewRoute(r)
                    if r.header.address_family == AddressFamily::Inet
                        && r.header.destination_prefix_length == 0
                        && table(&r) == u32::from(RouteHeader::RT_TABLE_MAIN) =>
                {
                    let mut route = DefaultRoute {
                        index: None,
                        gateway: None,
                    };
                    for attr in &r.attributes {
                        match attr {
                            RouteAttribute::Oif(i) => route.index = Some(*i),
                            RouteAttribute::Gateway(RouteAddress::Inet(g)) => {
                                route.gateway = Some(*g)
                            }
                            _ => {}
                        }
                    }
                    Some(route)
                }
                _ => None,
            })
            .collect())
    }

    /// The index of the link named `name`.
    pub fn link_index(&mut self, name: &str) -> io::Result<u32> {
        let mut req = LinkMessage::default();
        req.attributes.push(LinkAttribute::IfName(name.into()));
        let seq = self.send(RouteNetlinkMessage::GetLink(req), NLM_F_REQUEST)?;
        loop {
            for reply in self.receive()? {
                if reply.header.sequence_number != seq {
                    continue;
                }
                match reply.payload {
                    NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(l)) => {
                        return Ok(l.header.index);
                    }
                    NetlinkPayload::Error(e) => {
                        return Err(match e.code {
                            Some(_) => e.to_io(),
                            None => io::Error::from(io::ErrorKind::NotFound),
                        });
                    }
                    _ => {}
                }
            }
        }
    }

    /// Sets link `index` up with MTU `mtu`.
    pub fn set_up(&mut self, index: u32, mtu: u32) -> io::Result<()> {
        let mut req = LinkMessage::default();
        req.header.index = index;
        req.header.flags = LinkFlags::Up;
        req.header.change_mask = LinkFlags::Up;
        req.attributes.push(LinkAttribute::Mtu(mtu));
        self.ack(RouteNetlinkMessage::SetLink(req), 0)
    }

    /// Adds an `ingress` qdisc to link `index`: `Ok(false)` if it already had one.
    pub fn add_ingress_qdisc(&mut self, index: u32) -> io::Result<bool> {
        let mut req = TcMessage::with_index(index as i32);
        req.header.handle = TcHandle {
            major: 0xffff,
            minor: 0,
        };
        req.header.parent = TcHandle::INGRESS;
        req.attributes.push(TcAttribute::Kind("ingress".into()));
        match self.ack(
            RouteNetlinkMessage::NewQueueDiscipline(req),
            NLM_F_CREATE | NLM_F_EXCL,
        ) {
            Ok(()) => Ok(true),
            Err(e) if e.raw_os_error() == Some(libc_eexist()) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Deletes link `index`'s `ingress` qdisc, and with it its filters.
    pub fn delete_ingress_qdisc(&mut self, index: u32) -> io::Result<()> {
        let mut req = TcMessage::with_index(index as i32);
        req.header.handle = TcHandle {
            major: 0xffff,
            minor: 0,
        };
        req.header.parent = TcHandle::INGRESS;
        self.ack(RouteNetlinkMessage::DelQueueDiscipline(req), 0)
    }

    /// Adds, on link `index`'s ingress, a filter of priority `priority` that matches every frame
    /// and whose `mirred` action redirects it to the egress of link `target` (`tc filter add dev
    /// INDEX parent ffff: prio P protocol all u32 match u32 0 0 action mirred egress redirect dev
    /// TARGET`). A `u32` filter with one key that masks nothing, as urunc does: `matchall` would
    /// say it more plainly, but kernels without `CONFIG_NET_CLS_MATCHALL` are common.
    pub fn add_redirect(&mut self, index: u32, priority: u16, target: u32) -> io::Result<()> {
        self.ack(
            RouteNetlinkMessage::NewTrafficFilter(redirect_message(index, priority, target)),
            NLM_F_CREATE | NLM_F_EXCL,
        )
    }

    /// Deletes the filters of priority `priority` on link `index`'s ingress.
    pub fn delete_filters(&mut self, index: u32, priority: u16) -> io::Result<()> {
        let mut req = filter_message(index, priority);
        req.header.info = u32::from(priority) << 16;
        self.ack(RouteNetlinkMessage::DelTrafficFilter(req), 0)
    }

    /// The filters on link `index`'s ingress.
    pub fn ingress_filters(&mut self, index: u32) -> io::Result<Vec<Filter>> {
        let mut req = TcMessage::with_index(index as i32);
        req.header.parent = TcHandle {
            major: 0xffff,
            minor: 0,
        };
        let msgs = self.dump(RouteNetlinkMessage::GetTrafficFilter(req))?;
        Ok(msgs
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewTrafficFilter(f) => Some(filter(&f)),
                _ => None,
            })
            .collect())
    }

    /// Sends `msg` with `flags` and waits for its acknowledgement.
    fn ack(&mut self, msg: RouteNetlinkMessage, flags: u16) -> io::Result<()> {
        let seq = self.send(msg, NLM_F_REQUEST | NLM_F_ACK | flags)?;
        loop {
            for reply in self.receive()? {
                if reply.header.sequence_number != seq {
                    continue;
                }
                if let NetlinkPayload::Error(e) = reply.payload {
                    return match e.code {
                        None => Ok(()),
                        Some(_) => Err(e.to_io()),
                    };
                }
            }
        }
    }

    /// Sends the dump request `msg` and collects the answers up to `NLMSG_DONE`.
    fn dump(&mut self, msg: RouteNetlinkMessage) -> io::Result<Vec<RouteNetlinkMessage>> {
        let seq = self.send(msg, NLM_F_REQUEST | NLM_F_DUMP)?;
        let mut out = Vec::new();
        loop {
            for reply in self.receive()? {
                if reply.header.sequence_number != seq {
                    continue;
                }
                match reply.payload {
                    NetlinkPayload::InnerMessage(m) => out.push(m),
                    NetlinkPayload::Done(_) => return Ok(out),
                    NetlinkPayload::Error(e) if e.code.is_some() => return Err(e.to_io()),
                    _ => {}
                }
            }
        }
    }

    fn send(&mut self, msg: RouteNetlinkMessage, flags: u16) -> io::Result<u32> {
        self.seq = self.seq.wrapping_add(1);
        let mut header = NetlinkHeader::default();
        header.flags = flags;
        header.sequence_number = self.seq;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(msg));
        packet.finalize();
        let mut bytes = vec![0u8; packet.buffer_len()];
        packet.serialize(&mut bytes);
        self.socket.send(&bytes, 0)?;
        Ok(self.seq)
    }

    /// One datagram's messages.
    fn receive(&mut self) -> io::Result<Vec<NetlinkMessage<RouteNetlinkMessage>>> {
        self.buf.clear();
        self.socket.recv(&mut self.buf, 0)?;
        let mut out = Vec::new();
        let mut at = 0;
        while at < self.buf.len() {
            let msg = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&self.buf[at..])
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
            let len = msg.header.length as usize;
            if len == 0 {
                break;
            }
            at += len.next_multiple_of(4);
            out.push(msg);
        }
        Ok(out)
    }
}

/// The filter [`Rtnl::add_redirect`] adds.
fn redirect_message(index: u32, priority: u16, target: u32) -> TcMessage {
    let mut mirror = TcMirror::default();
    mirror.generic.action = TcActionType::Stolen;
    mirror.eaction = TcMirrorActionType::EgressRedir;
    mirror.ifindex = target;
    let mut action = TcAction::default();
    action.attributes = vec![
        TcActionAttribute::Kind("mirred".into()),
        TcActionAttribute::Options(vec![TcActionOption::Mirror(TcActionMirrorOption::Parms(
            mirror,
        ))]),
    ];
    let mut selector = TcU32Selector::default();
    selector.flags = TcU32SelectorFlags::Terminal;
    selector.nkeys = 1;
    selector.keys = vec![TcU32Key::default()];
    let mut msg = filter_message(index, priority);
    msg.attributes = vec![
        TcAttribute::Kind("u32".into()),
        TcAttribute::Options(vec![
            TcOption::U32(TcFilterU32Option::Selector(selector)),
            TcOption::U32(TcFilterU32Option::Action(vec![action])),
        ]),
    ];
    msg
}

/// What [`Rtnl::ingress_filters`] reads from a filter message.
fn filter(f: &TcMessage) -> Filter {
    let mut filter = Filter {
        priority: (f.header.info >> 16) as u16,
        actions: 0,
        redirects: Vec::new(),
    };
    for a in &f.attributes {
        if let TcAttribute::Options(opts) = a {
            for action in opts.iter().flat_map(actions) {
                filter.actions += 1;
                filter.redirects.extend(redirect_target(action));
            }
        }
    }
    filter
}

/// A filter request on link `index`'s ingress at priority `priority`, for every protocol.
fn filter_message(index: u32, priority: u16) -> TcMessage {
    let mut msg = TcMessage::with_index(index as i32);
    msg.header.parent = TcHandle {
        major: 0xffff,
        minor: 0,
    };
    msg.header.info = (u32::from(priority) << 16) | u32::from(ETH_P_ALL.to_be());
    msg
}

/// A filter option's actions.
fn actions(opt: &TcOption) -> &[TcAction] {
    match opt {
        TcOption::U32(TcFilterU32Option::Action(actions))
        | TcOption::MatchAll(TcFilterMatchAllOption::Action(actions)) => actions,
        _ => &[],
    }
}

/// Where a `mirred` egress redirect sends frames.
fn redirect_target(action: &TcAction) -> Option<u32> {
    action.attributes.iter().find_map(|attr| match attr {
        TcActionAttribute::Options(opts) => opts.iter().find_map(|o| match o {
            TcActionOption::Mirror(TcActionMirrorOption::Parms(m))
                if m.eaction == TcMirrorActionType::EgressRedir =>
            {
                Some(m.ifindex)
            }
            _ => None,
        }),
        _ => None,
    })
}

fn link(l: LinkMessage) -> Link {
    let mut out = Link {
        index: l.header.index,
        name: String::new(),
        up: l.header.flags.contains(LinkFlags::Up),
        mac: Vec::new(),
        mtu: 0,
    };
    for attr in l.attributes {
        match attr {
            LinkAttribute::IfName(n) => out.name = n,
            LinkAttribute::Address(a) => out.mac = a,
            LinkAttribute::Mtu(m) => out.mtu = m,
            _ => {}
        }
    }
    out
}

fn table(r: &RouteMessage) -> u32 {
    r.attributes
        .iter()
        .find_map(|a| match a {
            RouteAttribute::Table(t) => Some(*t),
            _ => None,
        })
        .unwrap_or(u32::from(r.header.table))
}

fn libc_eexist() -> i32 {
    rustix::io::Errno::EXIST.raw_os_error()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The redirect goes out as `tc` sends it and reads back as a redirect.
    #[test]
    fn redirect_filters_round_trip() {
        let msg = redirect_message(5, 1, 9);
        // Priority 1, protocol ETH_P_ALL in network order, on ffff:.
        assert_eq!(msg.header.info, (1 << 16) | u32::from(0x0003u16.to_be()));
        assert_eq!(u32::from(msg.header.parent), 0xffff_0000);
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST;
        let mut packet = NetlinkMessage::new(
            header,
            NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewTrafficFilter(msg)),
        );
        packet.finalize();
        let mut bytes = vec![0u8; packet.buffer_len()];
        packet.serialize(&mut bytes);
        let back = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&bytes).unwrap();
        let NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewTrafficFilter(f)) = back.payload
        else {
            panic!("{back:?}");
        };
        assert_eq!(
            filter(&f),
            Filter {
                priority: 1,
                actions: 1,
                redirects: vec![9]
            }
        );
    }
}

//! `grant_table_op` (20): setup_table, copy, query_size (docs/abi.md §8).

use super::{Action, Context};
use parapet_abi::Errno;
use parapet_abi::event_channel::{DOMID_GUEST, DOMID_SELF, DomId};
use parapet_abi::grant_table::{
    Copy, CopyPtr, GNTCOPY_DEST_GREF, GNTCOPY_SOURCE_GREF, GNTTABOP_COPY, GNTTABOP_COPY_MAX,
    GNTTABOP_QUERY_SIZE, GNTTABOP_SETUP_TABLE, QuerySize, SetupTable, gntst,
};
use parapet_abi::start_info::{KERNEL_MIN_ADDR, PAGE_SIZE};
use pv_drivers::shared::SharedPage;
use vm_memory::GuestAddress;
use zerocopy::{FromZeros, IntoBytes};

pub(super) fn grant_table_op(ctx: &mut Context<'_>, [cmd, arg, count, ..]: [u64; 5]) -> Action {
    match cmd {
        // One table, one domain: these take exactly one element.
        GNTTABOP_SETUP_TABLE | GNTTABOP_QUERY_SIZE if count != 1 => {
            Action::Return(Errno::EINVAL.to_ret())
        }
        GNTTABOP_SETUP_TABLE => setup_table(ctx, arg).into(),
        GNTTABOP_COPY => copy(ctx, arg, count).into(),
        GNTTABOP_QUERY_SIZE => query_size(ctx, arg).into(),
        _ => Action::Return(Errno::ENOSYS.to_ret()),
    }
}

fn is_self(dom: DomId) -> bool {
    dom == DOMID_SELF || dom == DOMID_GUEST
}

fn setup_table(ctx: &mut Context<'_>, arg: u64) -> Result<u64, Errno> {
    let mut req: SetupTable = ctx.ram.read_obj(GuestAddress(arg))?;
    let (base, frames) = ctx.dom.grant_table.frames();
    req.status = if !is_self(req.dom) {
        gntst::BAD_DOMAIN
    } else if req.nr_frames > frames {
        gntst::GENERAL_ERROR
    } else {
        let list: Vec<u64> = (0..u64::from(req.nr_frames))
            .map(|i| base / PAGE_SIZE + i)
            .collect();
        ctx.ram
            .write(GuestAddress(req.frame_list), list.as_bytes())?;
        gntst::OKAY
    };
    ctx.ram.write_obj(GuestAddress(arg), &req)?;
    Ok(0)
}

fn query_size(ctx: &mut Context<'_>, arg: u64) -> Result<u64, Errno> {
    let mut req: QuerySize = ctx.ram.read_obj(GuestAddress(arg))?;
    if is_self(req.dom) {
        let (_, frames) = ctx.dom.grant_table.frames();
        (req.nr_frames, req.max_nr_frames, req.status) = (frames, frames, gntst::OKAY);
    } else {
        req.status = gntst::BAD_DOMAIN;
    }
    ctx.ram.write_obj(GuestAddress(arg), &req)?;
    Ok(0)
}

const COPY_SIZE: u64 = size_of::<Copy>() as u64;
const STATUS_OFFSET: u64 = core::mem::offset_of!(Copy, status) as u64;

/// `GNTTABOP_copy`: the whole array is copied in once; only the statuses are written back.
fn copy(ctx: &mut Context<'_>, arg: u64, count: u64) -> Result<u64, Errno> {
    if count > GNTTABOP_COPY_MAX {
        return Err(Errno::E2BIG);
    }
    let mut ops = vec![Copy::new_zeroed(); count as usize];
    ctx.ram
        .read(GuestAddress(arg), ops.as_mut_slice().as_mut_bytes())?;
    for (i, op) in ops.iter().enumerate() {
        let status = copy_one(ctx, op).err().unwrap_or(gntst::OKAY);
        ctx.ram.write_obj(
            GuestAddress(arg + i as u64 * COPY_SIZE + STATUS_OFFSET),
            &status,
        )?;
    }
    Ok(0)
}

/// One side of a copy, resolved: a grant mapping or a frame of guest RAM.
enum Side {
    Grant(crate::grant_table::GrantMapping),
    Frame(u64),
}

fn resolve(ctx: &Context<'_>, ptr: &CopyPtr, is_gref: bool, write: bool) -> Result<Side, i16> {
    if !is_self(ptr.domid) {
        return Err(gntst::BAD_DOMAIN);
    }
    if is_gref {
        let gref = u32::try_from(ptr.u).map_err(|_| gntst::BAD_GNTREF)?;
        return ctx
            .dom
            .grant_table
            .map(gref, write)
            .map(Side::Grant)
            .map_err(|e| e.gntst());
    }
    let gpa = ptr.u.checked_mul(PAGE_SIZE).ok_or(gntst::BAD_PAGE)?;
    if gpa < KERNEL_MIN_ADDR || ctx.ram.check_range(GuestAddress(gpa), PAGE_SIZE).is_err() {
        return Err(gntst::BAD_PAGE);
    }
    // W^X: the VMM does not write a page the guest's page tables map read-only.
    if write
        && ctx
            .ram
            .check_writable(GuestAddress(gpa), PAGE_SIZE)
            .is_err()
    {
        return Err(gntst::PERMISSION_DENIED);
    }
    Ok(Side::Frame(gpa))
}

fn copy_one(ctx: &Context<'_>, op: &Copy) -> Result<(), i16> {
    let len = usize::from(op.len);
    let fits = |offset: u16| usize::from(offset) + len <= PAGE_SIZE as usize;
    if !fits(op.source.offset) || !fits(op.dest.offset) {
        return Err(gntst::BAD_COPY_ARG);
    }
    let source = resolve(ctx, &op.source, op.flags & GNTCOPY_SOURCE_GREF != 0, false)?;
    let dest = resolve(ctx, &op.dest, op.flags & GNTCOPY_DEST_GREF != 0, true)?;
    let mut buf = vec![0u8; len];
    let (src_off, dst_off) = (usize::from(op.source.offset), usize::from(op.dest.offset));
    match &source {
        Side::Grant(m) => m.read(src_off, &mut buf),
        Side::Frame(gpa) => ctx
            .ram
            .read(GuestAddress(gpa + src_off as u64), &mut buf)
            .map_err(|_| gntst::BAD_PAGE)?,
    }
    match &dest {
        Side::Grant(m) => m.write(dst_off, &buf),
        Side::Frame(gpa) => ctx
            .ram
            .write(GuestAddress(gpa + dst_off as u64), &buf)
            .map_err(|_| gntst::BAD_PAGE)?,
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::testing::{ret, with_context};
    use super::*;
    use crate::layout;
    use parapet_abi::event_channel::DOMID_BACKEND;
    use parapet_abi::grant_table::{GrantEntry, gtf};

    fn grant(ctx: &Context<'_>, gref: u64, flags: u16, frame: u32) {
        let e = GrantEntry {
            flags,
            domid: DOMID_BACKEND,
            frame,
        };
        ctx.ram
            .write_obj(GuestAddress(0xc000 + gref * 8), &e)
            .unwrap();
    }

    fn ptr(u: u64, offset: u16) -> CopyPtr {
        CopyPtr {
            u,
            domid: DOMID_SELF,
            offset,
            pad: 0,
        }
    }

    fn run(ctx: &mut Context<'_>, op: Copy) -> i16 {
        ctx.ram.write_obj(GuestAddress(0x1000), &op).unwrap();
        assert_eq!(
            ret(grant_table_op(ctx, [GNTTABOP_COPY, 0x1000, 1, 0, 0])),
            0
        );
        ctx.ram
            .read_obj::<Copy>(GuestAddress(0x1000))
            .unwrap()
            .status
    }

    #[test]
    fn copies_between_grants_and_frames_with_the_backends_rights() {
        with_context(|ctx| {
            grant(ctx, 1, gtf::PERMIT_ACCESS, 0x200);
            grant(ctx, 2, gtf::PERMIT_ACCESS | gtf::READONLY, 0x201);
            ctx.ram.write(GuestAddress(0x200_010), b"granted!").unwrap();
            let from_grant = Copy {
                source: ptr(1, 0x10),
                dest: ptr(0x300, 0x20),
                len: 8,
                flags: GNTCOPY_SOURCE_GREF,
                ..Default::default()
            };
            assert_eq!(run(ctx, from_grant), gntst::OKAY);
            let mut b = [0u8; 8];
            ctx.ram.read(GuestAddress(0x300_020), &mut b).unwrap();
            assert_eq!(&b, b"granted!");
            assert_eq!(
                ctx.ram
                    .read_obj::<GrantEntry>(GuestAddress(0xc008))
                    .unwrap()
                    .flags,
                gtf::PERMIT_ACCESS,
                "the mark is released after the copy"
            );
            let into_readonly = Copy {
                source: ptr(0x300, 0),
                dest: ptr(2, 0),
                len: 8,
                flags: GNTCOPY_DEST_GREF,
                ..Default::default()
            };
            assert_eq!(run(ctx, into_readonly), gntst::PERMISSION_DENIED);
            let too_long = Copy {
                source: ptr(0x300, 4090),
                dest: ptr(0x301, 0),
                len: 8,
                ..Default::default()
            };
            assert_eq!(run(ctx, too_long), gntst::BAD_COPY_ARG);
            let boot_frame = Copy {
                source: ptr(0x2, 0),
                dest: ptr(0x301, 0),
                len: 8,
                ..Default::default()
            };
            assert_eq!(run(ctx, boot_frame), gntst::BAD_PAGE);
            let bad_ref = Copy {
                source: ptr(1 << 40, 0),
                dest: ptr(0x301, 0),
                len: 8,
                flags: GNTCOPY_SOURCE_GREF,
                ..Default::default()
            };
            assert_eq!(run(ctx, bad_ref), gntst::BAD_GNTREF);
            assert_eq!(
                ret(grant_table_op(ctx, [GNTTABOP_COPY, 0x1000, 65, 0, 0])),
                Errno::E2BIG.to_ret()
            );
            assert_eq!(
                ret(grant_table_op(ctx, [GNTTABOP_COPY, u64::MAX - 8, 1, 0, 0])),
                Errno::EFAULT.to_ret()
            );
        });
    }

    #[test]
    fn setup_and_query_report_the_table() {
        with_context(|ctx| {
            let req = SetupTable {
                dom: DOMID_SELF,
                nr_frames: 4,
                frame_list: 0x2_0000,
                ..Default::default()
            };
            ctx.ram.write_obj(GuestAddress(0x1000), &req).unwrap();
            assert_eq!(
                ret(grant_table_op(ctx, [GNTTABOP_SETUP_TABLE, 0x1000, 1, 0, 0])),
                0
            );
            assert_eq!(
                ctx.ram
                    .read_obj::<SetupTable>(GuestAddress(0x1000))
                    .unwrap()
                    .status,
                gntst::OKAY
            );
            assert_eq!(
                ctx.ram
                    .read_obj::<[u64; 4]>(GuestAddress(0x2_0000))
                    .unwrap(),
                [0xc, 0xd, 0xe, 0xf]
            );
            let q = QuerySize {
                dom: DOMID_SELF,
                ..Default::default()
            };
            ctx.ram.write_obj(GuestAddress(0x1100), &q).unwrap();
            assert_eq!(
                ret(grant_table_op(ctx, [GNTTABOP_QUERY_SIZE, 0x1100, 1, 0, 0])),
                0
            );
            assert_eq!(
                ctx.ram
                    .read_obj::<QuerySize>(GuestAddress(0x1100))
                    .unwrap()
                    .nr_frames,
                ((layout::GRANT_TABLE.end - layout::GRANT_TABLE.start) / layout::PAGE) as u32
            );
            assert_eq!(
                ret(grant_table_op(ctx, [99, 0x1100, 1, 0, 0])),
                Errno::ENOSYS.to_ret()
            );
        });
    }
}

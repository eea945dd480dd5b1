//! `xen_version` (17): version, extra version, features (docs/abi.md §3.8).

use super::{Action, Context};
use parapet_abi::Errno;
use parapet_abi::version::{
    ABI_VERSION_MAJOR, ABI_VERSION_MINOR, EXTRAVERSION_LEN, FeatureInfo, XENVER_EXTRAVERSION,
    XENVER_GET_FEATURES, XENVER_VERSION, features,
};
use vm_memory::GuestAddress;

const EXTRAVERSION: &[u8] = b"-parapet";

pub(super) fn xen_version(ctx: &mut Context<'_>, [cmd, arg, ..]: [u64; 5]) -> Action {
    match cmd {
        XENVER_VERSION => Action::Return(u64::from(ABI_VERSION_MAJOR << 16 | ABI_VERSION_MINOR)),
        XENVER_EXTRAVERSION => {
            let mut s = [0u8; EXTRAVERSION_LEN];
            s[..EXTRAVERSION.len()].copy_from_slice(EXTRAVERSION);
            ctx.ram.write(GuestAddress(arg), &s).map(|()| 0).into()
        }
        XENVER_GET_FEATURES => get_features(ctx, arg).into(),
        _ => Action::Return(Errno::ENOSYS.to_ret()),
    }
}

fn get_features(ctx: &mut Context<'_>, arg: u64) -> Result<u64, Errno> {
    let mut info: FeatureInfo = ctx.ram.read_obj(GuestAddress(arg))?;
    info.submap = match info.submap_idx {
        0 => {
            features::WRITABLE_PAGE_TABLES
                | features::AUTO_TRANSLATED_PHYSMAP
                | features::SUPERVISOR_MODE_KERNEL
        }
        _ => 0,
    };
    ctx.ram.write_obj(GuestAddress(arg), &info)?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::super::testing::{ret, with_context};
    use super::*;

    #[test]
    fn answers_each_command() {
        with_context(|ctx| {
            assert_eq!(ret(xen_version(ctx, [XENVER_VERSION, 0, 0, 0, 0])), 2);
            assert_eq!(
                ret(xen_version(ctx, [XENVER_EXTRAVERSION, 0x100, 0, 0, 0])),
                0
            );
            let mut s = [0u8; 16];
            ctx.ram.read(GuestAddress(0x100), &mut s).unwrap();
            assert_eq!(&s[..9], b"-parapet\0");
            ctx.ram
                .write_obj(
                    GuestAddress(0x200),
                    &FeatureInfo {
                        submap_idx: 0,
                        submap: 0,
                    },
                )
                .unwrap();
            assert_eq!(
                ret(xen_version(ctx, [XENVER_GET_FEATURES, 0x200, 0, 0, 0])),
                0
            );
            assert_eq!(
                ctx.ram
                    .read_obj::<FeatureInfo>(GuestAddress(0x200))
                    .unwrap()
                    .submap,
                0b1101
            );
            let efault = Errno::EFAULT.to_ret();
            assert_eq!(
                ret(xen_version(ctx, [XENVER_GET_FEATURES, 4 << 20, 0, 0, 0])),
                efault
            );
            assert_eq!(
                ret(xen_version(ctx, [XENVER_EXTRAVERSION, u64::MAX, 0, 0, 0])),
                efault
            );
            assert_eq!(
                ret(xen_version(ctx, [99, 0, 0, 0, 0])),
                Errno::ENOSYS.to_ret()
            );
        });
    }
}

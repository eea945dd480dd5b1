//! The start-info page: what the domain builder told the guest at entry (docs/abi.md §2.4).
//!
//! The entry code checks the page's address ([`check_pointer`]), makes the one `'static` shared
//! reference to it, and records it ([`init`]); afterwards [`start_info`] and the typed accessors
//! ([`platform`], [`transport`], [`cmdline`]) hand it out. The page is read-only to the guest
//! and the VMM never changes it after boot, so a `'static` shared reference is sound. The SDK's
//! views of the other boot pages (`page`) are made only from the page recorded here.
//!
//! The command-line helpers ([`find_param`], [`first_word`]) are plain string functions and work
//! on any target.

use parapet_abi::start_info::{Platform, START_INFO_MAGIC, StartInfo, Transport};
use spin::Once;

/// The start-info page, once recorded (never on the host).
static START_INFO: Once<&'static StartInfo> = Once::new();

/// Why the start-info page was rejected at boot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StartInfoError {
    /// The pointer in RSI was null or misaligned.
    #[error("start-info pointer is null or misaligned")]
    BadPointer,
    /// `magic` is not [`START_INFO_MAGIC`]: a different ABI version or no Parapet VMM at all.
    #[error("start-info magic is not {}", start_info_magic())]
    BadMagic,
    /// `platform` holds a value this SDK does not know.
    #[error("unknown platform {0}")]
    UnknownPlatform(u32),
    /// `transport` holds a value this SDK does not know.
    #[error("unknown hypercall transport {0}")]
    UnknownTransport(u32),
    /// `hypercall_page` or `shared_info` is zero.
    #[error("hypercall or shared-info page missing")]
    MissingPage,
    /// `flags` has `VIF` but `vif_page` is zero.
    #[error("VIF flag set without a VIF page")]
    MissingVifPage,
}

/// [`START_INFO_MAGIC`] as text, up to its NUL.
fn start_info_magic() -> &'static str {
    let magic = START_INFO_MAGIC
        .split(|&b| b == 0)
        .next()
        .unwrap_or_default();
    core::str::from_utf8(magic).unwrap_or("?")
}

/// Checks that `page` (RSI at entry) can be the start-info page: non-null and aligned, so that
/// the entry code may make a reference to it.
pub fn check_pointer(page: *const StartInfo) -> Result<(), StartInfoError> {
    if page.is_null() || !page.is_aligned() {
        return Err(StartInfoError::BadPointer);
    }
    Ok(())
}

/// Checks the start-info page's magic and records the page for [`start_info`] (the first page
/// recorded stays).
///
/// Only the magic is checked before the page is recorded, so that a caller can still use the
/// hypercall page to report any later error; the rest of the checks are [`validate`].
pub fn init(info: &'static StartInfo) -> Result<&'static StartInfo, StartInfoError> {
    if !info.magic_ok() {
        return Err(StartInfoError::BadMagic);
    }
    Ok(START_INFO.call_once(|| info))
}

/// The consistency checks of a start-info page beyond its magic.
pub fn validate(info: &StartInfo) -> Result<(), StartInfoError> {
    Platform::from_raw(info.platform).ok_or(StartInfoError::UnknownPlatform(info.platform))?;
    Transport::from_raw(info.transport).ok_or(StartInfoError::UnknownTransport(info.transport))?;
    if info.hypercall_page == 0 || info.shared_info == 0 {
        return Err(StartInfoError::MissingPage);
    }
    if info.flags & parapet_abi::start_info::flags::VIF != 0 && info.vif_page == 0 {
        return Err(StartInfoError::MissingVifPage);
    }
    Ok(())
}

/// The start-info page, or `None` before boot (or on the host).
pub fn try_start_info() -> Option<&'static StartInfo> {
    START_INFO.get().copied()
}

/// The start-info page.
///
/// # Panics
///
/// Before the SDK's boot code ran, which in a guest kernel means never; on the host always.
pub fn start_info() -> &'static StartInfo {
    try_start_info().expect("start_info() used before boot (or outside a Parapet guest)")
}

/// The host platform the VMM runs the guest on.
pub fn platform() -> Platform {
    let raw = start_info().platform;
    Platform::from_raw(raw).expect("the platform was validated at boot")
}

/// How the hypercall page reaches the VMM.
pub fn transport() -> Transport {
    let raw = start_info().transport;
    Transport::from_raw(raw).expect("the transport was validated at boot")
}

/// The kernel command line (`--cmdline`); empty if the VMM passed none or it is not valid UTF-8.
pub fn cmdline() -> &'static str {
    try_start_info().and_then(StartInfo::cmdline).unwrap_or("")
}

/// The value of the first `key=value` word in `cmdline`, or `None`. A bare `key` has the value
/// `""`.
///
/// ```
/// use guest_sdk::start_info::find_param;
/// assert_eq!(find_param("quiet loglevel=debug", "loglevel"), Some("debug"));
/// assert_eq!(find_param("quiet loglevel=debug", "quiet"), Some(""));
/// assert_eq!(find_param("quiet", "loglevel"), None);
/// ```
pub fn find_param<'a>(cmdline: &'a str, key: &str) -> Option<&'a str> {
    cmdline
        .split_ascii_whitespace()
        .find_map(|word| match word.split_once('=') {
            Some((k, v)) if k == key => Some(v),
            None if word == key => Some(""),
            _ => None,
        })
}

/// The first whitespace-separated word of `cmdline` (`""` if there is none).
pub fn first_word(cmdline: &str) -> &str {
    cmdline.split_ascii_whitespace().next().unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::ToString;
    use zerocopy::FromZeros;

    #[test]
    fn params_are_found_by_exact_key() {
        let cl = "exit=3  loglevel=trace loglevelx=1 flag";
        assert_eq!(find_param(cl, "loglevel"), Some("trace"));
        assert_eq!(find_param(cl, "exit"), Some("3"));
        assert_eq!(find_param(cl, "flag"), Some(""));
        assert_eq!(find_param(cl, "log"), None);
        assert_eq!(find_param("", "x"), None);
        assert_eq!(find_param("a=b=c", "a"), Some("b=c"));
    }

    #[test]
    fn first_word_skips_leading_space() {
        assert_eq!(first_word("  panic now"), "panic");
        assert_eq!(first_word(""), "");
        assert_eq!(first_word("   "), "");
    }

    #[test]
    fn validation_rejects_inconsistent_pages() {
        let mut si = StartInfo::new_zeroed();
        si.magic = START_INFO_MAGIC;
        assert_eq!(validate(&si), Err(StartInfoError::UnknownPlatform(0)));
        si.platform = Platform::KvmPvm as u32;
        si.transport = 7;
        assert_eq!(validate(&si), Err(StartInfoError::UnknownTransport(7)));
        si.transport = Transport::Pio as u32;
        assert_eq!(validate(&si), Err(StartInfoError::MissingPage));
        si.hypercall_page = 0x3000;
        si.shared_info = 0x2000;
        si.flags = parapet_abi::start_info::flags::VIF;
        assert_eq!(validate(&si), Err(StartInfoError::MissingVifPage));
        si.vif_page = 0x4000;
        assert_eq!(validate(&si), Ok(()));
    }

    #[test]
    fn init_rejects_bad_pointers_and_magic() {
        assert_eq!(
            check_pointer(core::ptr::null()),
            Err(StartInfoError::BadPointer)
        );
        let si = std::boxed::Box::leak(std::boxed::Box::new(StartInfo::new_zeroed()));
        let misaligned = (&raw const *si)
            .cast::<u8>()
            .wrapping_add(1)
            .cast::<StartInfo>();
        assert_eq!(check_pointer(misaligned), Err(StartInfoError::BadPointer));
        assert_eq!(check_pointer(si), Ok(()));
        assert_eq!(init(si).err(), Some(StartInfoError::BadMagic));
        assert!(try_start_info().is_none());
    }

    #[test]
    fn bad_magic_names_the_abi_s_magic() {
        let text = StartInfoError::BadMagic.to_string();
        let magic = text
            .strip_prefix("start-info magic is not ")
            .unwrap_or_else(|| panic!("{text:?}"));
        assert!(magic.starts_with("parapet-abi-"), "{text:?}");
        // All of the magic up to its terminating NUL.
        assert!(START_INFO_MAGIC.starts_with(magic.as_bytes()), "{text:?}");
        assert_eq!(START_INFO_MAGIC[magic.len()], 0, "{text:?}");
    }
}

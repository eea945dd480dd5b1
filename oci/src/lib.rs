//! Parapet's OCI image schema: what an image made by `cargo xtask oci-image` holds, and how a
//! runtime derives a guest's run description from it (docs/containers.md, "The image format").
//!
//! A Parapet image has one layer:
//!
//! | path in the image | what |
//! |---|---|
//! | [`KERNEL_PATH`] `/parapet/guest` | the guest kernel (ELF), mode 0755 |
//! | [`disk_path`]`(i)` `/parapet/disk0.img`, … | the disk images, mode 0644 |
//! | [`CONFIG_FILE`] `/parapet.json` | the run description, a [`GuestConfig`] as JSON |
//! | [`URUNC_FILE`] `/urunc.json` | the same in urunc's schema (base64 values) |
//! | [`STUB_PATH`] `/parapet/needs-parapet-runc` | the entrypoint: a tiny Linux program that says the image needs Parapet's runtime, and exits 126 |
//!
//! The image configuration's `config.Labels` and the manifest's `annotations` carry the same
//! description as [`GuestConfig::annotations`]: Parapet's keys ([`keys`]) and urunc's
//! ([`urunc`]). A runtime calls [`resolve`] with the OCI runtime spec's annotations and the
//! container's rootfs: annotations first (Parapet's, then urunc's), then `/parapet.json`, then
//! `/urunc.json`. Every path in a description is a path inside the image (absolute, without
//! `.` or `..` components); the runtime resolves it inside the rootfs.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Read;
use std::path::Path;

use base64::Engine as _;
use serde::{Deserialize, Serialize};

/// The `version` of `/parapet.json` this crate reads and writes.
pub const SCHEMA_VERSION: u32 = 1;
/// The run description's path in the image.
pub const CONFIG_FILE: &str = "/parapet.json";
/// urunc's fallback file's path in the image: the urunc keys, each value base64-encoded.
pub const URUNC_FILE: &str = "/urunc.json";
/// The guest kernel's path in images made by `cargo xtask oci-image`.
pub const KERNEL_PATH: &str = "/parapet/guest";
/// The image's entrypoint: a static x86-64 Linux program that prints that the image is a
/// Parapet guest, to be run with Parapet's runtime, and exits 126 (what a runtime such as runc
/// runs if it is given the image).
pub const STUB_PATH: &str = "/parapet/needs-parapet-runc";
/// The longest `/parapet.json` or `/urunc.json` read (a description is a few hundred bytes).
pub const MAX_FILE_LEN: u64 = 64 * 1024;

/// The path of disk image `index` (from 0) in images made by `cargo xtask oci-image`.
pub fn disk_path(index: usize) -> String {
    format!("/parapet/disk{index}.img")
}

/// Parapet's annotation (and label) keys; the values are plain text.
pub mod keys {
    /// The guest kernel's path in the image (required).
    pub const KERNEL: &str = "org.parapet.guest.kernel";
    /// The guest command line (absent: empty).
    pub const CMDLINE: &str = "org.parapet.guest.cmdline";
    /// Guest RAM as `parapet run --memory` takes it, e.g. `64M` (absent: the runtime's default).
    pub const MEMORY: &str = "org.parapet.guest.memory";
    /// The disks, a JSON array like `/parapet.json`'s `disks`:
    /// `[{"path":"/parapet/disk0.img","readonly":true}]` (absent: none).
    pub const DISKS: &str = "org.parapet.guest.disks";
    /// The prefix of every Parapet key.
    pub const PREFIX: &str = "org.parapet.guest.";
}

/// urunc's annotation keys (urunc's `pkg/unikontainers`), as Parapet writes and reads them.
///
/// In annotations and labels the values are plain text; in `/urunc.json` (a JSON object from
/// key to value) each value is base64-encoded (standard alphabet, padded), as urunc and bunny
/// do. urunc's schema has one block image, no read-only flag and no memory size: Parapet writes
/// the first disk as [`urunc::BLOCK`] and keeps the rest to its own keys.
pub mod urunc {
    /// The guest framework: [`PARAPET`] for Parapet's guests.
    pub const UNIKERNEL_TYPE: &str = "com.urunc.unikernel.unikernelType";
    /// The monitor: [`PARAPET`].
    pub const HYPERVISOR: &str = "com.urunc.unikernel.hypervisor";
    /// The kernel's path in the image.
    pub const BINARY: &str = "com.urunc.unikernel.binary";
    /// The guest command line (newer urunc takes it from the process arguments instead).
    pub const CMDLINE: &str = "com.urunc.unikernel.cmdline";
    /// One block image's path in the image.
    pub const BLOCK: &str = "com.urunc.unikernel.block";
    /// Whether the container's rootfs is shared into the guest: always `false` for Parapet.
    pub const MOUNT_ROOTFS: &str = "com.urunc.unikernel.mountRootfs";
    /// An initrd's path: Parapet guests take none, so Parapet refuses it.
    pub const INITRD: &str = "com.urunc.unikernel.initrd";
    /// The value of [`UNIKERNEL_TYPE`] and [`HYPERVISOR`] for a Parapet guest.
    pub const PARAPET: &str = "parapet";
    /// The prefix of every urunc key.
    pub const PREFIX: &str = "com.urunc.unikernel.";
}

/// How to run a guest: the contents of `/parapet.json`, and what [`resolve`] returns.
///
/// ```json
/// {"version":1,"kernel":"/parapet/guest","cmdline":"loglevel=debug","memory":"64M",
///  "disks":[{"path":"/parapet/disk0.img","readonly":true}]}
/// ```
///
/// Only `version` and `kernel` are required; unknown fields are refused.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GuestConfig {
    /// The schema version, [`SCHEMA_VERSION`].
    pub version: u32,
    /// The guest kernel's path in the image.
    pub kernel: String,
    /// The guest command line (`parapet run --cmdline`), at most 1023 bytes.
    #[serde(default)]
    pub cmdline: String,
    /// Guest RAM (`parapet run --memory`): bytes or with a `K`/`M`/`G`/`T` suffix, a multiple of
    /// 2 MiB; `None`: the runtime's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<String>,
    /// The disks, in order (`parapet run --disk`).
    #[serde(default)]
    pub disks: Vec<Disk>,
}

/// One disk image of a [`GuestConfig`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Disk {
    /// The raw image's path in the image.
    pub path: String,
    /// Attach it read-only (`parapet run --disk PATH,readonly`).
    #[serde(default)]
    pub readonly: bool,
}

/// Why no run description could be had.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Error {
    /// Nothing describes a Parapet guest: no Parapet or urunc annotations, and neither file in
    /// the rootfs.
    NotParapet {
        /// The rootfs that was looked in.
        rootfs: String,
    },
    /// A description was found but is wrong.
    Invalid {
        /// Where: a file's path in the image, or `annotations`.
        origin: String,
        /// What, in one line.
        message: String,
    },
}

impl Error {
    fn invalid(origin: &str, message: impl Into<String>) -> Self {
        Error::Invalid {
            origin: origin.to_owned(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NotParapet { rootfs } => write!(
                f,
                "not a Parapet image: no {}* or {}* annotations, and neither {CONFIG_FILE} nor \
                 {URUNC_FILE} in {rootfs}",
                keys::PREFIX,
                urunc::PREFIX
            ),
            Error::Invalid { origin, message } => write!(f, "{origin}: {message}"),
        }
    }
}

impl std::error::Error for Error {}

/// Where annotation errors are said to come from.
const ANNOTATIONS: &str = "annotations";

impl GuestConfig {
    /// A description of `kernel` with no command line, the runtime's default memory and no disks.
    pub fn new(kernel: impl Into<String>) -> Self {
        GuestConfig {
            version: SCHEMA_VERSION,
            kernel: kernel.into(),
            cmdline: String::new(),
            memory: None,
            disks: Vec::new(),
        }
    }

    /// Checks every field; `origin` names the source in the error.
    pub fn validate(&self, origin: &str) -> Result<(), Error> {
        if self.version != SCHEMA_VERSION {
            return Err(Error::invalid(
                origin,
                format!(
                    "version {} is not supported (this runtime reads version {SCHEMA_VERSION})",
                    self.version
                ),
            ));
        }
        check_image_path(&self.kernel)
            .map_err(|e| Error::invalid(origin, format!("kernel: {e}")))?;
        check_cmdline(&self.cmdline)
            .map_err(|e| Error::invalid(origin, format!("cmdline: {e}")))?;
        if let Some(memory) = &self.memory {
            parse_memory(memory).map_err(|e| Error::invalid(origin, format!("memory: {e}")))?;
        }
        for (i, disk) in self.disks.iter().enumerate() {
            check_image_path(&disk.path)
                .map_err(|e| Error::invalid(origin, format!("disks[{i}]: {e}")))?;
        }
        Ok(())
    }

    /// Guest RAM in bytes, if the description gives it (it is valid once validated).
    pub fn memory_bytes(&self) -> Option<u64> {
        self.memory.as_deref().and_then(|m| parse_memory(m).ok())
    }

    /// `/parapet.json`: pretty JSON and a newline.
    pub fn to_json(&self) -> String {
        let mut json = serde_json::to_string_pretty(self).expect("a GuestConfig serialises");
        json.push('\n');
        json
    }

    /// Parses and validates `/parapet.json`.
    pub fn from_json(bytes: &[u8]) -> Result<Self, Error> {
        let config: GuestConfig = serde_json::from_slice(bytes)
            .map_err(|e| Error::invalid(CONFIG_FILE, format!("not a Parapet description: {e}")))?;
        config.validate(CONFIG_FILE)?;
        Ok(config)
    }

    /// The annotations (and labels) describing this guest: Parapet's keys, then urunc's, all
    /// plain text. Keys without a value are left out (no memory, no disks, no urunc block).
    pub fn annotations(&self) -> BTreeMap<String, String> {
        let mut map = BTreeMap::new();
        let mut put = |k: &str, v: String| {
            map.insert(k.to_owned(), v);
        };
        put(keys::KERNEL, self.kernel.clone());
        put(keys::CMDLINE, self.cmdline.clone());
        if let Some(memory) = &self.memory {
            put(keys::MEMORY, memory.clone());
        }
        if !self.disks.is_empty() {
            put(
                keys::DISKS,
                serde_json::to_string(&self.disks).expect("disks serialise"),
            );
        }
        for (k, v) in self.urunc_annotations() {
            put(k, v);
        }
        map
    }

    /// urunc's keys for this guest, plain text.
    fn urunc_annotations(&self) -> Vec<(&'static str, String)> {
        let mut list = vec![
            (urunc::UNIKERNEL_TYPE, urunc::PARAPET.to_owned()),
            (urunc::HYPERVISOR, urunc::PARAPET.to_owned()),
            (urunc::BINARY, self.kernel.clone()),
            (urunc::CMDLINE, self.cmdline.clone()),
            (urunc::MOUNT_ROOTFS, "false".to_owned()),
        ];
        if let Some(disk) = self.disks.first() {
            list.push((urunc::BLOCK, disk.path.clone()));
        }
        list
    }

    /// `/urunc.json`: urunc's keys, each value base64-encoded, as urunc reads the file.
    pub fn urunc_json(&self) -> String {
        let encoded: BTreeMap<&str, String> = self
            .urunc_annotations()
            .into_iter()
            .map(|(k, v)| (k, base64::engine::general_purpose::STANDARD.encode(v)))
            .collect();
        let mut json = serde_json::to_string_pretty(&encoded).expect("a map serialises");
        json.push('\n');
        json
    }

    /// Parses `/urunc.json` (base64 values): it must name Parapet as the monitor.
    pub fn from_urunc_json(bytes: &[u8]) -> Result<Self, Error> {
        let raw: BTreeMap<String, serde_json::Value> = serde_json::from_slice(bytes)
            .map_err(|e| Error::invalid(URUNC_FILE, format!("not a JSON object: {e}")))?;
        let mut decoded = BTreeMap::new();
        for (key, value) in raw {
            if !key.starts_with(urunc::PREFIX) {
                continue;
            }
            let serde_json::Value::String(value) = value else {
                return Err(Error::invalid(URUNC_FILE, format!("{key} is not a string")));
            };
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(value.as_bytes())
                .map_err(|_| Error::invalid(URUNC_FILE, format!("{key} is not base64")))?;
            let text = String::from_utf8(bytes)
                .map_err(|_| Error::invalid(URUNC_FILE, format!("{key} is not UTF-8")))?;
            decoded.insert(key, text);
        }
        from_urunc_keys(&decoded, URUNC_FILE)
    }

    /// The description in annotations (or labels): Parapet's keys if there is any, else urunc's;
    /// `Ok(None)` if there are neither.
    pub fn from_annotations<'a, I>(annotations: I) -> Result<Option<Self>, Error>
    where
        I: IntoIterator<Item = (&'a String, &'a String)>,
    {
        let map: BTreeMap<String, String> = annotations
            .into_iter()
            .filter(|(k, _)| k.starts_with(keys::PREFIX) || k.starts_with(urunc::PREFIX))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if map.keys().any(|k| k.starts_with(keys::PREFIX)) {
            from_parapet_keys(&map).map(Some)
        } else if map.is_empty() {
            Ok(None)
        } else {
            from_urunc_keys(&map, ANNOTATIONS).map(Some)
        }
    }

    /// Applies the container's process arguments (the OCI spec's `process.args`).
    ///
    /// The image's `Entrypoint` is [`STUB_PATH`] and its `Cmd` is empty, so by default the
    /// arguments are `[STUB_PATH]` and the description's command line stands. Words after the
    /// stub (or the kernel) replace the command line (`docker run IMAGE WORDS`, Kubernetes
    /// `args:`); arguments that start with anything else replace it whole (`ctr run IMAGE ID
    /// WORDS`, which replaces the entrypoint too). Words are joined with single spaces; the
    /// result must fit as [`GuestConfig::cmdline`] does.
    pub fn apply_process_args(&mut self, args: &[String]) -> Result<(), Error> {
        let is_default = |first: &String| first == STUB_PATH || *first == self.kernel;
        let words = match args {
            [] => return Ok(()),
            [first] if is_default(first) => return Ok(()),
            [first, rest @ ..] if is_default(first) => rest,
            all => all,
        };
        let cmdline = words.join(" ");
        check_cmdline(&cmdline).map_err(|e| Error::invalid("process.args", e))?;
        self.cmdline = cmdline;
        Ok(())
    }
}

/// Parapet's keys → a description.
fn from_parapet_keys(map: &BTreeMap<String, String>) -> Result<GuestConfig, Error> {
    for key in map.keys().filter(|k| k.starts_with(keys::PREFIX)) {
        if ![keys::KERNEL, keys::CMDLINE, keys::MEMORY, keys::DISKS].contains(&key.as_str()) {
            return Err(Error::invalid(
                ANNOTATIONS,
                format!("{key} is not a Parapet key"),
            ));
        }
    }
    let kernel = map
        .get(keys::KERNEL)
        .ok_or_else(|| Error::invalid(ANNOTATIONS, format!("{} is missing", keys::KERNEL)))?;
    let disks = match map.get(keys::DISKS) {
        Some(json) => serde_json::from_str(json).map_err(|e| {
            Error::invalid(
                ANNOTATIONS,
                format!("{} is not a JSON array of disks: {e}", keys::DISKS),
            )
        })?,
        None => Vec::new(),
    };
    let config = GuestConfig {
        version: SCHEMA_VERSION,
        kernel: kernel.clone(),
        cmdline: map.get(keys::CMDLINE).cloned().unwrap_or_default(),
        memory: map.get(keys::MEMORY).cloned(),
        disks,
    };
    config.validate(ANNOTATIONS)?;
    Ok(config)
}

/// urunc's keys (plain values) → a description; `origin` names the source in errors.
fn from_urunc_keys(map: &BTreeMap<String, String>, origin: &str) -> Result<GuestConfig, Error> {
    let get = |k: &str| map.get(k).map(String::as_str).filter(|v| !v.is_empty());
    for key in [urunc::HYPERVISOR, urunc::UNIKERNEL_TYPE] {
        match get(key) {
            Some(urunc::PARAPET) => {}
            Some(other) => {
                return Err(Error::invalid(
                    origin,
                    format!(
                        "{key} is `{other}`: the image is not for Parapet (it needs `parapet`)"
                    ),
                ));
            }
            None => return Err(Error::invalid(origin, format!("{key} is missing"))),
        }
    }
    let kernel = get(urunc::BINARY)
        .ok_or_else(|| Error::invalid(origin, format!("{} is missing", urunc::BINARY)))?;
    if get(urunc::INITRD).is_some() {
        return Err(Error::invalid(
            origin,
            format!(
                "{} is set, but Parapet guests take no initrd",
                urunc::INITRD
            ),
        ));
    }
    if get(urunc::MOUNT_ROOTFS).is_some_and(|v| v != "false") {
        return Err(Error::invalid(
            origin,
            format!(
                "{} is not `false`: Parapet does not share the container's rootfs with the guest",
                urunc::MOUNT_ROOTFS
            ),
        ));
    }
    let config = GuestConfig {
        version: SCHEMA_VERSION,
        kernel: kernel.to_owned(),
        cmdline: get(urunc::CMDLINE).unwrap_or_default().to_owned(),
        memory: None,
        disks: get(urunc::BLOCK)
            .map(|path| {
                vec![Disk {
                    path: path.to_owned(),
                    readonly: false,
                }]
            })
            .unwrap_or_default(),
    };
    config.validate(origin)?;
    Ok(config)
}

/// The run description of a container: from the OCI runtime spec's `annotations` (Parapet's
/// keys, then urunc's), else from `/parapet.json` in `rootfs`, else from `/urunc.json`.
///
/// containerd passes an image's annotations to the runtime only in some set-ups (Kubernetes
/// pod annotations, `nerdctl run --annotation`), so the files are the usual source. They are
/// read only if they are regular files (not symlinks) of at most [`MAX_FILE_LEN`] bytes.
pub fn resolve<'a, I>(annotations: I, rootfs: &Path) -> Result<GuestConfig, Error>
where
    I: IntoIterator<Item = (&'a String, &'a String)>,
{
    if let Some(config) = GuestConfig::from_annotations(annotations)? {
        return Ok(config);
    }
    if let Some(bytes) = read_image_file(rootfs, CONFIG_FILE)? {
        return GuestConfig::from_json(&bytes);
    }
    if let Some(bytes) = read_image_file(rootfs, URUNC_FILE)? {
        return GuestConfig::from_urunc_json(&bytes);
    }
    Err(Error::NotParapet {
        rootfs: rootfs.display().to_string(),
    })
}

/// Reads `/NAME` from the top of `rootfs`: `None` if it does not exist; an error if it is not a
/// regular file (a symlink is refused: it could point out of the rootfs) or is too long.
fn read_image_file(rootfs: &Path, name: &str) -> Result<Option<Vec<u8>>, Error> {
    use std::os::unix::fs::OpenOptionsExt;
    let path = rootfs.join(name.trim_start_matches('/'));
    let file = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(&path)
    {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Err(Error::invalid(name, "is a symbolic link"));
        }
        Err(e) => return Err(Error::invalid(name, format!("cannot open: {e}"))),
    };
    let meta = file
        .metadata()
        .map_err(|e| Error::invalid(name, format!("cannot stat: {e}")))?;
    if !meta.is_file() {
        return Err(Error::invalid(name, "is not a regular file"));
    }
    if meta.len() > MAX_FILE_LEN {
        return Err(Error::invalid(
            name,
            format!("is {} bytes, more than {MAX_FILE_LEN}", meta.len()),
        ));
    }
    let mut bytes = Vec::new();
    file.take(MAX_FILE_LEN)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::invalid(name, format!("cannot read: {e}")))?;
    Ok(Some(bytes))
}

/// An image path: absolute, no empty, `.` or `..` components, no NUL, not `/` itself.
fn check_image_path(path: &str) -> Result<(), String> {
    if !path.starts_with('/') {
        return Err(format!("`{path}` is not an absolute path in the image"));
    }
    if path.contains('\0') {
        return Err("the path has a NUL byte".into());
    }
    let rest = &path[1..];
    if rest.is_empty()
        || rest
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == "..")
    {
        return Err(format!(
            "`{path}` is not a plain path to a file (no empty, `.` or `..` components)"
        ));
    }
    Ok(())
}

/// A guest command line: fits the start-info page, no NUL.
fn check_cmdline(cmdline: &str) -> Result<(), String> {
    let max = parapet_abi::start_info::MAX_CMDLINE - 1;
    if cmdline.len() > max {
        return Err(format!("{} bytes, more than {max}", cmdline.len()));
    }
    if cmdline.contains('\0') {
        return Err("it has a NUL byte".into());
    }
    Ok(())
}

/// Parses guest RAM as `parapet run --memory` does: bytes, or with a `K`/`M`/`G`/`T` suffix
/// (powers of 1024), a multiple of 2 MiB from 2 MiB to 32 GiB.
pub fn parse_memory(size: &str) -> Result<u64, String> {
    const GRANULE: u64 = 2 << 20;
    const MAX: u64 = parapet_abi::emulated::SCRATCH_MMIO;
    let (digits, shift) = match size.as_bytes().last().map(u8::to_ascii_uppercase) {
        Some(b'K') => (&size[..size.len() - 1], 10),
        Some(b'M') => (&size[..size.len() - 1], 20),
        Some(b'G') => (&size[..size.len() - 1], 30),
        Some(b'T') => (&size[..size.len() - 1], 40),
        _ => (size, 0),
    };
    let bad = || format!("`{size}` is not a size (like 64M or 1G)");
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let bytes = digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(1 << shift))
        .ok_or_else(bad)?;
    if !(GRANULE..=MAX).contains(&bytes) || !bytes.is_multiple_of(GRANULE) {
        return Err(format!(
            "`{size}` is not a multiple of 2 MiB from 2 MiB to {} GiB",
            MAX >> 30
        ));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn full() -> GuestConfig {
        GuestConfig {
            version: SCHEMA_VERSION,
            kernel: KERNEL_PATH.into(),
            cmdline: "loglevel=debug exit=3".into(),
            memory: Some("64M".into()),
            disks: vec![
                Disk {
                    path: disk_path(0),
                    readonly: true,
                },
                Disk {
                    path: disk_path(1),
                    readonly: false,
                },
            ],
        }
    }

    fn map(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn invalid(result: Result<impl fmt::Debug, Error>) -> String {
        match result {
            Err(e @ Error::Invalid { .. }) => {
                let text = e.to_string();
                assert!(!text.contains('\n'), "one line: {text}");
                text
            }
            other => panic!("expected an Invalid error, got {other:?}"),
        }
    }

    #[test]
    fn json_round_trips() {
        for config in [full(), GuestConfig::new(KERNEL_PATH)] {
            let json = config.to_json();
            assert_eq!(GuestConfig::from_json(json.as_bytes()).unwrap(), config);
        }
        // Only version and kernel are required; the rest defaults.
        let minimal = br#"{"version":1,"kernel":"/k"}"#;
        assert_eq!(
            GuestConfig::from_json(minimal).unwrap(),
            GuestConfig::new("/k")
        );
        // The documented example.
        let example = br#"{"version":1,"kernel":"/parapet/guest","cmdline":"x","memory":"64M",
            "disks":[{"path":"/parapet/disk0.img","readonly":true}]}"#;
        let parsed = GuestConfig::from_json(example).unwrap();
        assert_eq!(parsed.memory_bytes(), Some(64 << 20));
        assert!(parsed.disks[0].readonly);
        assert!(!GuestConfig::new("/k").to_json().contains("memory"));
    }

    #[test]
    fn annotations_round_trip() {
        for config in [full(), GuestConfig::new(KERNEL_PATH)] {
            let annotations = config.annotations();
            assert_eq!(
                GuestConfig::from_annotations(&annotations).unwrap(),
                Some(config)
            );
        }
        let annotations = full().annotations();
        assert_eq!(annotations[keys::MEMORY], "64M");
        assert_eq!(
            annotations[keys::DISKS],
            r#"[{"path":"/parapet/disk0.img","readonly":true},{"path":"/parapet/disk1.img","readonly":false}]"#
        );
        assert_eq!(annotations[urunc::HYPERVISOR], "parapet");
        assert_eq!(annotations[urunc::UNIKERNEL_TYPE], "parapet");
        assert_eq!(annotations[urunc::BINARY], KERNEL_PATH);
        assert_eq!(annotations[urunc::CMDLINE], "loglevel=debug exit=3");
        assert_eq!(annotations[urunc::BLOCK], "/parapet/disk0.img");
        assert_eq!(annotations[urunc::MOUNT_ROOTFS], "false");
        assert_eq!(GuestConfig::from_annotations(&map(&[])).unwrap(), None);
        assert_eq!(
            GuestConfig::from_annotations(&map(&[("org.opencontainers.image.title", "x")]))
                .unwrap(),
            None
        );
    }

    #[test]
    fn urunc_style_input_is_accepted() {
        // Only urunc's keys, as bunny writes them: plain values in annotations.
        let urunc_only = map(&[
            (urunc::UNIKERNEL_TYPE, "parapet"),
            (urunc::HYPERVISOR, "parapet"),
            (urunc::BINARY, "/unikernel/kernel"),
            (urunc::CMDLINE, "exit=7"),
            (urunc::BLOCK, "/data.img"),
            (urunc::MOUNT_ROOTFS, "false"),
            ("com.urunc.unikernel.unikernelVersion", ""),
        ]);
        let config = GuestConfig::from_annotations(&urunc_only).unwrap().unwrap();
        assert_eq!(config.kernel, "/unikernel/kernel");
        assert_eq!(config.cmdline, "exit=7");
        assert_eq!(config.memory, None);
        assert_eq!(
            config.disks,
            vec![Disk {
                path: "/data.img".into(),
                readonly: false
            }]
        );

        // urunc.json: the same keys, base64 values; what we write is read back.
        let json = full().urunc_json();
        let from_file = GuestConfig::from_urunc_json(json.as_bytes()).unwrap();
        assert_eq!(from_file.kernel, KERNEL_PATH);
        assert_eq!(from_file.cmdline, "loglevel=debug exit=3");
        assert_eq!(from_file.disks.len(), 1);
        let raw: BTreeMap<String, String> = serde_json::from_str(&json).unwrap();
        assert_eq!(raw[urunc::HYPERVISOR], "cGFyYXBldA==");
        assert_eq!(raw[urunc::MOUNT_ROOTFS], "ZmFsc2U=");
        assert!(raw.keys().all(|k| k.starts_with(urunc::PREFIX)));

        // Parapet's keys win over urunc's when both are there.
        let mut both = full().annotations();
        both.insert(urunc::BINARY.into(), "/elsewhere".into());
        let config = GuestConfig::from_annotations(&both).unwrap().unwrap();
        assert_eq!(config, full());
    }

    #[test]
    fn bad_input_gives_one_clear_error() {
        let cases: Vec<(Result<Option<GuestConfig>, Error>, &str)> = vec![
            (
                GuestConfig::from_json(b"{\"version\":1}").map(Some),
                "missing field `kernel`",
            ),
            (
                GuestConfig::from_json(b"{\"version\":2,\"kernel\":\"/k\"}").map(Some),
                "version 2 is not supported",
            ),
            (
                GuestConfig::from_json(b"{\"version\":1,\"kernel\":\"/k\",\"memroy\":\"1G\"}")
                    .map(Some),
                "unknown field `memroy`",
            ),
            (
                GuestConfig::from_json(b"{\"version\":1,\"kernel\":\"/k\",\"memory\":\"64Q\"}")
                    .map(Some),
                "memory: `64Q` is not a size",
            ),
            (
                GuestConfig::from_json(b"{\"version\":1,\"kernel\":\"/k\",\"memory\":\"3M\"}")
                    .map(Some),
                "not a multiple of 2 MiB",
            ),
            (
                GuestConfig::from_json(b"{\"version\":1,\"kernel\":\"guest\"}").map(Some),
                "kernel: `guest` is not an absolute path",
            ),
            (
                GuestConfig::from_json(
                    b"{\"version\":1,\"kernel\":\"/k\",\"disks\":[{\"path\":\"/../etc/x\"}]}",
                )
                .map(Some),
                "disks[0]: `/../etc/x` is not a plain path",
            ),
            (
                GuestConfig::from_json(b"not json").map(Some),
                "/parapet.json: not a Parapet",
            ),
            (
                GuestConfig::from_annotations(&map(&[(keys::CMDLINE, "x")])),
                "org.parapet.guest.kernel is missing",
            ),
            (
                GuestConfig::from_annotations(&map(&[
                    (keys::KERNEL, "/k"),
                    (keys::DISKS, "/parapet/disk0.img"),
                ])),
                "org.parapet.guest.disks is not a JSON array",
            ),
            (
                GuestConfig::from_annotations(&map(&[
                    (keys::KERNEL, "/k"),
                    ("org.parapet.guest.memroy", "1G"),
                ])),
                "org.parapet.guest.memroy is not a Parapet key",
            ),
            (
                GuestConfig::from_annotations(&map(&[
                    (urunc::UNIKERNEL_TYPE, "unikraft"),
                    (urunc::HYPERVISOR, "qemu"),
                    (urunc::BINARY, "/unikernel/kernel"),
                ])),
                "annotations: com.urunc.unikernel.hypervisor is `qemu`: the image is not for Parapet",
            ),
            (
                GuestConfig::from_annotations(&map(&[
                    (urunc::UNIKERNEL_TYPE, "parapet"),
                    (urunc::HYPERVISOR, "parapet"),
                ])),
                "com.urunc.unikernel.binary is missing",
            ),
            (
                GuestConfig::from_annotations(&map(&[
                    (urunc::UNIKERNEL_TYPE, "parapet"),
                    (urunc::HYPERVISOR, "parapet"),
                    (urunc::BINARY, "/k"),
                    (urunc::INITRD, "/initrd"),
                ])),
                "Parapet guests take no initrd",
            ),
            (
                GuestConfig::from_urunc_json(b"{\"com.urunc.unikernel.binary\":\"/k!\"}").map(Some),
                "/urunc.json: com.urunc.unikernel.binary is not base64",
            ),
        ];
        for (result, expected) in cases {
            let text = invalid(result);
            assert!(text.contains(expected), "`{text}` lacks `{expected}`");
        }
        let long = "x".repeat(parapet_abi::start_info::MAX_CMDLINE);
        let mut config = GuestConfig::new("/k");
        config.cmdline = long;
        assert!(invalid(config.validate("t").map(|()| 0)).contains("more than 1023"));
    }

    #[test]
    fn memory_sizes() {
        assert_eq!(parse_memory("64M"), Ok(64 << 20));
        assert_eq!(parse_memory("1g"), Ok(1 << 30));
        assert_eq!(parse_memory("2097152"), Ok(2 << 20));
        assert_eq!(parse_memory("32G"), Ok(32 << 30));
        for bad in [
            "",
            "M",
            "-2M",
            "+2M",
            " 2M",
            "1M",
            "33G",
            "0",
            "99999999999T",
            "1.5G",
        ] {
            assert!(parse_memory(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn process_args_replace_the_command_line() {
        let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let with = |a: &[&str]| {
            let mut c = full();
            c.apply_process_args(&args(a)).unwrap();
            c.cmdline
        };
        let image_cmdline = full().cmdline;
        assert_eq!(with(&[]), image_cmdline);
        assert_eq!(with(&[STUB_PATH]), image_cmdline);
        assert_eq!(with(&[KERNEL_PATH]), image_cmdline);
        assert_eq!(with(&[STUB_PATH, "exit=1", "a"]), "exit=1 a");
        assert_eq!(with(&[KERNEL_PATH, "exit=2"]), "exit=2");
        assert_eq!(with(&["exit=3", "b"]), "exit=3 b");
        assert_eq!(with(&["exit=4"]), "exit=4");
        let long = "x".repeat(parapet_abi::start_info::MAX_CMDLINE);
        assert!(invalid(full().apply_process_args(&args(&[&long]))).contains("process.args"));
    }

    #[test]
    fn resolve_prefers_annotations_then_parapet_json_then_urunc_json() {
        let dir = std::env::temp_dir().join(format!("parapet-oci-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let none = HashMap::new();

        assert!(matches!(
            resolve(&none, &dir),
            Err(Error::NotParapet { .. })
        ));
        assert!(
            resolve(&none, &dir)
                .unwrap_err()
                .to_string()
                .starts_with("not a Parapet image")
        );

        let mut from_urunc = GuestConfig::new("/u");
        from_urunc.cmdline = "from urunc.json".into();
        std::fs::write(dir.join("urunc.json"), from_urunc.urunc_json()).unwrap();
        assert_eq!(resolve(&none, &dir).unwrap().cmdline, "from urunc.json");

        std::fs::write(dir.join("parapet.json"), full().to_json()).unwrap();
        assert_eq!(resolve(&none, &dir).unwrap(), full());

        let annotated = GuestConfig::new("/a");
        assert_eq!(resolve(&annotated.annotations(), &dir).unwrap(), annotated);

        // A symlink is refused (it could lead out of the rootfs), as is a huge file.
        std::fs::remove_file(dir.join("parapet.json")).unwrap();
        std::os::unix::fs::symlink("/etc/hostname", dir.join("parapet.json")).unwrap();
        assert!(invalid(resolve(&none, &dir)).contains("/parapet.json: is a symbolic link"));
        std::fs::remove_file(dir.join("parapet.json")).unwrap();
        std::fs::write(
            dir.join("parapet.json"),
            vec![b' '; MAX_FILE_LEN as usize + 1],
        )
        .unwrap();
        assert!(invalid(resolve(&none, &dir)).contains("more than 65536"));
        std::fs::remove_file(dir.join("parapet.json")).unwrap();
        std::fs::create_dir(dir.join("parapet.json")).unwrap();
        assert!(invalid(resolve(&none, &dir)).contains("not a regular file"));

        std::fs::remove_dir_all(&dir).unwrap();
    }
}

//! `cargo xtask oci-image`: a guest as an OCI image layout tarball (docs/containers.md, "The
//! image format") that `ctr images import` loads.
//!
//! The tarball holds `oci-layout`, `index.json` and `blobs/sha256/`: one manifest, its image
//! configuration and one gzip layer. The layer holds the guest at [`KERNEL_PATH`], the disks at
//! [`disk_path`], `/parapet.json` and `/urunc.json` ([`parapet_oci`]) and the entrypoint
//! [`STUB_PATH`], a static Linux program of a few hundred bytes ([`stub_elf`]) that tells whoever runs the
//! image with an ordinary container runtime that it needs Parapet's, and exits 126 (the guest
//! kernel itself, run as a Linux program, would die at once of SIGILL).
//!
//! The output is reproducible: entries in a fixed order, owner 0:0, modification time 0, JSON
//! with sorted keys, a gzip header without a time stamp; so the same inputs give the same
//! digests.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Args;
use oci_spec::image::{
    Arch, ConfigBuilder, Descriptor, ImageConfigurationBuilder, ImageIndexBuilder,
    ImageManifestBuilder, MediaType, Os, Platform, PlatformBuilder, RootFsBuilder, Sha256Digest,
};
use parapet_oci::{Disk, GuestConfig, KERNEL_PATH, STUB_PATH, disk_path};
use sha2::{Digest as _, Sha256};

use crate::Workspace;

/// containerd's annotation for an image's full name in an index (`ctr images import` names the
/// image with it).
const ANNOTATION_IMAGE_NAME: &str = "io.containerd.image.name";
/// The OCI annotation for an image's tag in an index.
const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";
/// What the stub prints on standard error.
const STUB_MESSAGE: &str = "parapet: this image holds a Parapet guest kernel (/parapet/guest, \
     described by /parapet.json), not a Linux program: run it with Parapet's OCI runtime, \
     parapet-runc\n";
/// The stub's exit status: found, but cannot be executed here.
pub const STUB_STATUS: i32 = 126;

#[derive(Debug, Args)]
pub struct OciImageArgs {
    /// The guest: a directory under examples/, tests/guests/ or bench/guests/ (built first), or
    /// the path of a guest ELF image.
    guest: String,
    /// A raw disk image for the guest, as /parapet/diskN.img in order; `,readonly` attaches it
    /// read-only. Repeat for more disks.
    #[arg(long = "disk", value_name = "IMG[,readonly]")]
    disks: Vec<String>,
    /// The guest command line.
    #[arg(long, value_name = "STR", default_value = "")]
    cmdline: String,
    /// Guest RAM, a multiple of 2 MiB (e.g. 64M) [default: the runtime's].
    #[arg(long, value_name = "SIZE")]
    memory: Option<String>,
    /// The tarball to write [default: target/oci/GUEST.tar].
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// The image's name [default: localhost/parapet/GUEST:latest]; `:latest` is added if it has
    /// no tag.
    #[arg(long, value_name = "REF")]
    name: Option<String>,
    /// Build the guest with the release profile.
    #[arg(long)]
    release: bool,
}

/// What goes into an image.
#[derive(Debug)]
pub struct ImageSpec {
    /// The guest ELF on the host.
    pub kernel: PathBuf,
    /// The disk images on the host, in order, and whether each is read-only.
    pub disks: Vec<(PathBuf, bool)>,
    /// The guest command line.
    pub cmdline: String,
    /// Guest RAM, if given.
    pub memory: Option<String>,
    /// The image's full name, with a tag.
    pub reference: String,
}

/// What [`write_image`] wrote.
#[derive(Debug)]
pub struct ImageSummary {
    /// The manifest's digest, `sha256:…`.
    pub manifest_digest: String,
}

pub fn run(ws: &Workspace, args: OciImageArgs) -> Result<std::process::ExitCode> {
    let guests = ws.guests()?;
    let (kernel, name) = if guests.contains(&args.guest) {
        (
            ws.build_guest(&args.guest, args.release)?,
            args.guest.clone(),
        )
    } else {
        let path = PathBuf::from(&args.guest);
        if !path.is_file() {
            bail!(
                "`{}` is neither a guest of this repository ({}) nor a file",
                args.guest,
                guests.join(", ")
            );
        }
        let stem = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("guest")
            .to_ascii_lowercase();
        (path, stem)
    };
    let disks = args
        .disks
        .iter()
        .map(|d| parse_disk(d))
        .collect::<Result<Vec<_>>>()?;
    let reference = normalize_reference(
        args.name
            .as_deref()
            .unwrap_or(&format!("localhost/parapet/{name}")),
    )?;
    let out = args
        .out
        .unwrap_or_else(|| ws.target_dir.join("oci").join(format!("{name}.tar")));
    let spec = ImageSpec {
        kernel,
        disks,
        cmdline: args.cmdline,
        memory: args.memory,
        reference,
    };
    let summary = write_image(&spec, &out)?;
    eprintln!(
        "xtask: wrote the image {} ({}); load it with `ctr images import {}`",
        spec.reference,
        summary.manifest_digest,
        out.display()
    );
    println!("{}", out.display());
    Ok(std::process::ExitCode::SUCCESS)
}

/// `IMG[,readonly]` (also `,ro`), as `parapet run --disk` takes it.
fn parse_disk(s: &str) -> Result<(PathBuf, bool)> {
    let (path, readonly) = match s.rsplit_once(',') {
        Some((path, "readonly" | "ro")) => (path, true),
        _ => (s, false),
    };
    let path = PathBuf::from(path);
    if !path.is_file() {
        bail!("the disk image `{}` is not a file", path.display());
    }
    Ok((path, readonly))
}

/// A full image name with a tag: `:latest` is added when the last path component has no tag
/// or digest (a port in the host part is not a tag). The repository (everything before the tag)
/// must be lowercase; nothing may be blank.
fn normalize_reference(reference: &str) -> Result<String> {
    let last_start = reference.rfind('/').map_or(0, |i| i + 1);
    let tag_at = reference[last_start..]
        .find([':', '@'])
        .map(|i| last_start + i);
    let repository = &reference[..tag_at.unwrap_or(reference.len())];
    let bad = repository.is_empty()
        || repository.ends_with('/')
        || repository.chars().any(|c| c.is_ascii_uppercase())
        || reference
            .chars()
            .any(|c| c.is_whitespace() || c.is_control())
        || tag_at.is_some_and(|at| at + 1 == reference.len());
    if bad {
        bail!(
            "`{reference}` is not an image name like localhost/parapet/hello:latest \
             (a lowercase repository, no spaces)"
        );
    }
    Ok(match tag_at {
        Some(_) => reference.to_owned(),
        None => format!("{reference}:latest"),
    })
}

/// The tag of a normalized reference (for the index's `org.opencontainers.image.ref.name`).
fn reference_tag(reference: &str) -> &str {
    let last = reference.rsplit('/').next().unwrap_or(reference);
    match last.split_once('@') {
        Some((_, digest)) => digest,
        None => last.rsplit_once(':').map_or("latest", |(_, tag)| tag),
    }
}

/// Checks that `path` holds an ELF64 little-endian x86-64 executable.
fn check_elf(path: &Path) -> Result<()> {
    let mut head = [0u8; 20];
    File::open(path)
        .and_then(|mut f| f.read_exact(&mut head))
        .with_context(|| format!("cannot read the guest {}", path.display()))?;
    let ok = head[..4] == *b"\x7fELF"
        && head[4] == 2 // ELFCLASS64
        && head[5] == 1 // little-endian
        && head[16..18] == [2, 0] // ET_EXEC
        && head[18..20] == [0x3e, 0]; // EM_X86_64
    if !ok {
        bail!(
            "{} is not an ELF64 x86-64 executable (a Parapet guest kernel)",
            path.display()
        );
    }
    Ok(())
}

/// Writes the image described by `spec` to `out` (through a temporary file beside it).
pub fn write_image(spec: &ImageSpec, out: &Path) -> Result<ImageSummary> {
    check_elf(&spec.kernel)?;
    let mut config = GuestConfig::new(KERNEL_PATH);
    config.cmdline = spec.cmdline.clone();
    config.memory = spec.memory.clone();
    config.disks = spec
        .disks
        .iter()
        .enumerate()
        .map(|(i, (_, readonly))| Disk {
            path: disk_path(i),
            readonly: *readonly,
        })
        .collect();
    config
        .validate("the image's options")
        .map_err(anyhow::Error::msg)?;
    let annotations = config.annotations();

    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let tmp = TempPath(out.with_extension("tar.tmp"));
    let layer_tmp = TempPath(out.with_extension("layer.tmp"));

    // The layer, gzip-compressed, to a temporary file: its digest (of the gzip) and diff ID (of
    // the tar) are hashed on the way.
    let layer = write_layer(spec, &config, &layer_tmp.0)?;

    let config_json = canonical_json(
        &ImageConfigurationBuilder::default()
            .architecture(Arch::Amd64)
            .os(Os::Linux)
            .config(
                ConfigBuilder::default()
                    .entrypoint(vec![STUB_PATH.to_owned()])
                    .labels(annotations.clone().into_iter().collect::<HashMap<_, _>>())
                    .build()?,
            )
            .rootfs(
                RootFsBuilder::default()
                    .typ("layers")
                    .diff_ids(vec![format!("sha256:{}", layer.diff_id)])
                    .build()?,
            )
            .build()?,
    )?;
    let config_desc = descriptor(MediaType::ImageConfig, &config_json)?;
    let layer_desc = Descriptor::new(
        MediaType::ImageLayerGzip,
        layer.size,
        layer.digest.parse::<Sha256Digest>()?,
    );

    let manifest_json = canonical_json(
        &ImageManifestBuilder::default()
            .schema_version(2u32)
            .media_type(MediaType::ImageManifest)
            .config(config_desc.clone())
            .layers(vec![layer_desc])
            .annotations(annotations.into_iter().collect::<HashMap<_, _>>())
            .build()?,
    )?;
    let mut manifest_desc = descriptor(MediaType::ImageManifest, &manifest_json)?;
    manifest_desc.set_platform(Some(platform()?));
    manifest_desc.set_annotations(Some(
        [
            (ANNOTATION_IMAGE_NAME.to_owned(), spec.reference.clone()),
            (
                ANNOTATION_REF_NAME.to_owned(),
                reference_tag(&spec.reference).to_owned(),
            ),
        ]
        .into(),
    ));
    let index_json = canonical_json(
        &ImageIndexBuilder::default()
            .schema_version(2u32)
            .media_type(MediaType::ImageIndex)
            .manifests(vec![manifest_desc.clone()])
            .build()?,
    )?;

    let file =
        File::create(&tmp.0).with_context(|| format!("cannot create {}", tmp.0.display()))?;
    let mut outer = tar::Builder::new(BufWriter::new(file));
    append_bytes(
        &mut outer,
        "oci-layout",
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )?;
    append_bytes(&mut outer, "index.json", &index_json)?;
    append_dir(&mut outer, "blobs/")?;
    append_dir(&mut outer, "blobs/sha256/")?;
    let blob = |digest: &Descriptor| format!("blobs/sha256/{}", digest.digest().digest());
    append_bytes(&mut outer, &blob(&manifest_desc), &manifest_json)?;
    append_bytes(&mut outer, &blob(&config_desc), &config_json)?;
    let layer_file = File::open(&layer_tmp.0)?;
    append_file(
        &mut outer,
        &format!("blobs/sha256/{}", layer.digest),
        layer_file,
        layer.size,
        0o644,
    )?;
    outer
        .into_inner()?
        .into_inner()
        .map_err(|e| e.into_error())?
        .sync_all()?;
    std::fs::rename(&tmp.0, out)
        .with_context(|| format!("cannot rename {} to {}", tmp.0.display(), out.display()))?;
    Ok(ImageSummary {
        manifest_digest: manifest_desc.digest().to_string(),
    })
}

/// The platform of every Parapet image: the guest is x86-64, and containerd unpacks only
/// images of its own OS.
fn platform() -> Result<Platform> {
    Ok(PlatformBuilder::default()
        .architecture(Arch::Amd64)
        .os(Os::Linux)
        .build()?)
}

/// JSON with sorted keys and no spaces, so that equal inputs give equal digests (the spec
/// types keep annotations in hash maps).
fn canonical_json<T: serde::Serialize>(value: &T) -> Result<Vec<u8>> {
    Ok(serde_json::to_vec(&serde_json::to_value(value)?)?)
}

/// The descriptor of a blob held in memory.
fn descriptor(media_type: MediaType, bytes: &[u8]) -> Result<Descriptor> {
    let digest = hex(&Sha256::digest(bytes));
    Ok(Descriptor::new(
        media_type,
        bytes.len() as u64,
        digest.parse::<Sha256Digest>()?,
    ))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The layer's digests and size.
struct Layer {
    /// SHA-256 of the gzip stream, hex.
    digest: String,
    /// Bytes of the gzip stream.
    size: u64,
    /// SHA-256 of the uncompressed tar, hex.
    diff_id: String,
}

/// Writes the layer to `path`: `parapet/` (guest, stub, disks), `parapet.json`, `urunc.json`.
fn write_layer(spec: &ImageSpec, config: &GuestConfig, path: &Path) -> Result<Layer> {
    let file = File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    let gz = flate2::GzBuilder::new()
        .operating_system(255) // "unknown": the same bytes on every host
        .write(
            HashingWriter::new(BufWriter::new(file)),
            flate2::Compression::default(),
        );
    let mut layer = tar::Builder::new(HashingWriter::new(gz));

    append_dir(&mut layer, "parapet/")?;
    let kernel = File::open(&spec.kernel)
        .with_context(|| format!("cannot open {}", spec.kernel.display()))?;
    let len = kernel.metadata()?.len();
    append_file(&mut layer, rel(KERNEL_PATH), kernel, len, 0o755)?;
    for (i, (disk, _)) in spec.disks.iter().enumerate() {
        let file = File::open(disk).with_context(|| format!("cannot open {}", disk.display()))?;
        let len = file.metadata()?.len();
        append_file(&mut layer, rel(&disk_path(i)), file, len, 0o644)?;
    }
    append_bytes_mode(&mut layer, rel(STUB_PATH), &stub_elf(STUB_MESSAGE), 0o755)?;
    append_bytes(
        &mut layer,
        rel(parapet_oci::CONFIG_FILE),
        config.to_json().as_bytes(),
    )?;
    append_bytes(
        &mut layer,
        rel(parapet_oci::URUNC_FILE),
        config.urunc_json().as_bytes(),
    )?;

    let tar_hash = layer.into_inner()?;
    let diff_id = hex(&tar_hash.hasher.finalize());
    let gz_hash = tar_hash.inner.finish()?;
    let size = gz_hash.written;
    let digest = hex(&gz_hash.hasher.finalize());
    gz_hash
        .inner
        .into_inner()
        .map_err(|e| e.into_error())?
        .sync_all()?;
    Ok(Layer {
        digest,
        size,
        diff_id,
    })
}

/// An image path as a tar entry name (relative, as layers have them).
fn rel(path: &str) -> &str {
    path.trim_start_matches('/')
}

/// A header for an entry owned by root, time 0.
fn header(kind: tar::EntryType, size: u64, mode: u32) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h
}

fn append_dir<W: Write>(ar: &mut tar::Builder<W>, name: &str) -> Result<()> {
    let mut h = header(tar::EntryType::Directory, 0, 0o755);
    ar.append_data(&mut h, name, io::empty())?;
    Ok(())
}

fn append_bytes<W: Write>(ar: &mut tar::Builder<W>, name: &str, bytes: &[u8]) -> Result<()> {
    append_bytes_mode(ar, name, bytes, 0o644)
}

fn append_bytes_mode<W: Write>(
    ar: &mut tar::Builder<W>,
    name: &str,
    bytes: &[u8],
    mode: u32,
) -> Result<()> {
    append_file(ar, name, bytes, bytes.len() as u64, mode)
}

/// Appends `len` bytes from `data` as a regular file; fails if `data` has fewer.
fn append_file<W: Write, R: Read>(
    ar: &mut tar::Builder<W>,
    name: &str,
    data: R,
    len: u64,
    mode: u32,
) -> Result<()> {
    let mut h = header(tar::EntryType::Regular, len, mode);
    let mut counted = CountingReader {
        inner: data.take(len),
        read: 0,
    };
    ar.append_data(&mut h, name, &mut counted)
        .with_context(|| format!("cannot add {name} to the archive"))?;
    if counted.read != len {
        bail!("{name} changed while it was being archived");
    }
    Ok(())
}

struct CountingReader<R> {
    inner: R,
    read: u64,
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        Ok(n)
    }
}

/// A writer that hashes (SHA-256) and counts what passes through it.
struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    written: u64,
}

impl<W> HashingWriter<W> {
    fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            hasher: Sha256::new(),
            written: 0,
        }
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A file removed when dropped, unless it was renamed away first.
struct TempPath(PathBuf);

impl Drop for TempPath {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A static x86-64 Linux executable that writes `message` to standard error and exits with
/// [`STUB_STATUS`]: one ELF header, one program header (the whole file, read+execute, at
/// 0x400000), 36 bytes of code, then the message.
///
/// ```text
/// mov eax, 1           ; write
/// mov edi, 2           ;   to standard error
/// lea rsi, [rip+19]    ;   the message, right after the code
/// mov edx, LEN
/// syscall
/// mov eax, 60          ; exit
/// mov edi, 126
/// syscall
/// ```
pub fn stub_elf(message: &str) -> Vec<u8> {
    const BASE: u64 = 0x40_0000;
    const EHDR: usize = 64;
    const PHDR: usize = 56;
    let msg = message.as_bytes();
    let len = u32::try_from(msg.len()).expect("a short message");
    let mut code = Vec::new();
    code.extend([0xb8, 1, 0, 0, 0]); // mov eax, 1
    code.extend([0xbf, 2, 0, 0, 0]); // mov edi, 2
    code.extend([0x48, 0x8d, 0x35]); // lea rsi, [rip + disp32]
    let disp_at = code.len();
    code.extend([0; 4]);
    code.push(0xba); // mov edx, imm32
    code.extend(len.to_le_bytes());
    code.extend([0x0f, 0x05]); // syscall
    code.extend([0xb8, 60, 0, 0, 0]); // mov eax, 60
    code.push(0xbf); // mov edi, imm32
    code.extend((STUB_STATUS as u32).to_le_bytes());
    code.extend([0x0f, 0x05]); // syscall
    // The displacement counts from the end of the lea (disp_at + 4) to the message (code end).
    let disp = (code.len() - (disp_at + 4)) as u32;
    code[disp_at..disp_at + 4].copy_from_slice(&disp.to_le_bytes());

    let total = (EHDR + PHDR + code.len() + msg.len()) as u64;
    let entry = BASE + (EHDR + PHDR) as u64;
    let mut elf = Vec::with_capacity(total as usize);
    // ELF header.
    elf.extend(b"\x7fELF");
    elf.extend([2, 1, 1, 0]); // 64-bit, little-endian, version 1, System V ABI
    elf.extend([0; 8]);
    elf.extend(2u16.to_le_bytes()); // ET_EXEC
    elf.extend(0x3eu16.to_le_bytes()); // EM_X86_64
    elf.extend(1u32.to_le_bytes()); // EV_CURRENT
    elf.extend(entry.to_le_bytes());
    elf.extend((EHDR as u64).to_le_bytes()); // program headers right after
    elf.extend(0u64.to_le_bytes()); // no section headers
    elf.extend(0u32.to_le_bytes()); // flags
    elf.extend((EHDR as u16).to_le_bytes());
    elf.extend((PHDR as u16).to_le_bytes());
    elf.extend(1u16.to_le_bytes()); // one program header
    elf.extend(64u16.to_le_bytes()); // section header size
    elf.extend(0u16.to_le_bytes()); // no sections
    elf.extend(0u16.to_le_bytes()); // no section names
    debug_assert_eq!(elf.len(), EHDR);
    // Program header: PT_LOAD of the whole file, R+X.
    elf.extend(1u32.to_le_bytes()); // PT_LOAD
    elf.extend(5u32.to_le_bytes()); // PF_R | PF_X
    elf.extend(0u64.to_le_bytes()); // offset
    elf.extend(BASE.to_le_bytes()); // virtual address
    elf.extend(BASE.to_le_bytes()); // physical address
    elf.extend(total.to_le_bytes()); // size in the file
    elf.extend(total.to_le_bytes()); // size in memory
    elf.extend(0x1000u64.to_le_bytes()); // alignment
    debug_assert_eq!(elf.len(), EHDR + PHDR);
    elf.extend(code);
    elf.extend(msg);
    elf
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("xtask-oci-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// An ELF header good enough for [`check_elf`] (the image is never booted here).
    fn fake_kernel(dir: &Path) -> PathBuf {
        let path = dir.join("kernel");
        let mut elf = stub_elf("not a kernel");
        elf.extend([0u8; 100]);
        std::fs::write(&path, elf).unwrap();
        path
    }

    #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
    #[test]
    fn the_stub_says_what_the_image_needs_and_exits_126() {
        use std::os::unix::fs::PermissionsExt;
        let dir = scratch("stub");
        let stub = dir.join("stub");
        std::fs::write(&stub, stub_elf(STUB_MESSAGE)).unwrap();
        std::fs::set_permissions(&stub, std::fs::Permissions::from_mode(0o755)).unwrap();
        let out = std::process::Command::new(&stub).output().unwrap();
        assert_eq!(out.status.code(), Some(STUB_STATUS));
        assert_eq!(String::from_utf8_lossy(&out.stderr), STUB_MESSAGE);
        assert!(out.stdout.is_empty());
        assert!(stub_elf(STUB_MESSAGE).len() < 400);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn references_get_a_tag() {
        let n = |s: &str| normalize_reference(s).map_err(|e| e.to_string());
        assert_eq!(
            n("localhost/parapet/hello").unwrap(),
            "localhost/parapet/hello:latest"
        );
        assert_eq!(n("hello:v1").unwrap(), "hello:v1");
        assert_eq!(
            n("localhost:5000/hello").unwrap(),
            "localhost:5000/hello:latest"
        );
        assert_eq!(
            n("localhost:5000/hello:2").unwrap(),
            "localhost:5000/hello:2"
        );
        assert_eq!(reference_tag("localhost:5000/hello:2"), "2");
        assert_eq!(reference_tag("localhost/parapet/hello:latest"), "latest");
        assert_eq!(n("localhost/x:V1.0").unwrap(), "localhost/x:V1.0");
        for bad in ["", "Hello", "a b", "x/:tag", "UPPER/x", "x:", ":tag"] {
            assert!(n(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_same_inputs_give_the_same_bytes() {
        let dir = scratch("repro");
        let disk = dir.join("disk.img");
        std::fs::write(&disk, vec![7u8; 4096]).unwrap();
        let spec = ImageSpec {
            kernel: fake_kernel(&dir),
            disks: vec![(disk, true)],
            cmdline: "exit=3".into(),
            memory: Some("32M".into()),
            reference: "localhost/parapet/test:latest".into(),
        };
        let (a, b) = (dir.join("a.tar"), dir.join("b.tar"));
        let first = write_image(&spec, &a).unwrap();
        let second = write_image(&spec, &b).unwrap();
        assert_eq!(first.manifest_digest, second.manifest_digest);
        assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
        // No temporary files are left beside the output.
        let mut names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["a.tar", "b.tar", "disk.img", "kernel"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn bad_options_are_refused_in_one_line() {
        let dir = scratch("bad");
        let kernel = fake_kernel(&dir);
        let spec = |memory: &str, kernel: &Path| ImageSpec {
            kernel: kernel.to_owned(),
            disks: vec![],
            cmdline: String::new(),
            memory: Some(memory.into()),
            reference: "x:latest".into(),
        };
        let out = dir.join("x.tar");
        let err = write_image(&spec("3M", &kernel), &out)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("memory: `3M` is not a multiple of 2 MiB"),
            "{err}"
        );
        let not_elf = dir.join("not-elf");
        std::fs::write(&not_elf, b"#!/bin/sh\nexit 0\n-------------").unwrap();
        let err = write_image(&spec("64M", &not_elf), &out)
            .unwrap_err()
            .to_string();
        assert!(err.contains("is not an ELF64 x86-64 executable"), "{err}");
        assert!(!out.exists());
        let err = parse_disk(&dir.join("missing.img,readonly").display().to_string())
            .unwrap_err()
            .to_string();
        assert!(err.contains("missing.img` is not a file"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

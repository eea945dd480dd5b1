//! A guest that uses a FAT file system on a PV block device: it lists the root directory with
//! the files' sizes, prints one file, writes another, flushes the disk and powers off.
//!
//! The file system is `embedded-sdmmc`'s (FAT16/FAT32), on [`guest_sdk::block::BlockDevice`]
//! through [`guest_sdk::block::sdmmc::SdmmcDisk`]. The image may be a bare file system
//! (`mkfs.vfat -F 32 IMAGE`, no partition table) or have an MBR whose first partition is FAT.
//!
//! ```text
//! truncate -s 64M /tmp/d.img && mkfs.vfat -F 32 /tmp/d.img
//! echo 'Hello, disk!' > hello.txt && mcopy -i /tmp/d.img hello.txt ::HELLO.TXT
//! parapet run blk-fat --disk /tmp/d.img --cmdline 'cat=HELLO.TXT write=GUEST.TXT text=Hi there'
//! mtype -i /tmp/d.img ::GUEST.TXT        # "Hi there\n"
//! ```
//!
//! # Command line
//!
//! Words, all optional:
//!
//! | word | meaning | default |
//! |---|---|---|
//! | `disk=N` | use the `N`th `--disk` (from 0) | `0` |
//! | `cat=NAME` | the root-directory file whose content is printed (8.3 name, any case) | `HELLO.TXT` |
//! | `write=NAME` | the root-directory file created (or truncated) and written | `GUEST.TXT` |
//! | `text=…` | the content to write: **everything after `text=` to the end of the command line**, verbatim (spaces included), followed by one `\n`; so it must come last | `Hello from the Parapet blk-fat guest!` + `\n` |
//!
//! # Output (each line exactly as shown; `<…>` are values)
//!
//! ```text
//! blk-fat: disk <sectors> sectors, <FAT at sector 0|reading the MBR>[, read-only]
//! file <NAME> <size>            one line per file in the root directory, in directory order,
//!   long name: <long name>      8.3 name as stored (upper case), size in bytes in decimal;
//! dir <NAME>                    the long-name line only if the file has one
//! files: <n>                    number of `file` lines
//! cat <NAME> <size>
//! <the file's bytes, verbatim; then a newline if they did not end with one>
//! end <NAME>
//! wrote <NAME> <length>         bytes written (text + "\n")
//! verified <NAME>               read back after closing it: same bytes
//! flushed                       the volume was closed and the disk flushed: it is durable
//! blk-fat: ok
//! ```
//!
//! The volume label and `.`/`..` entries are not listed. On any failure the guest prints
//! `blk-fat: error: <what>` and powers off with a non-zero code:
//!
//! | code | failure |
//! |---|---|
//! | 1 | no block device (the VMM was not given `--disk`) or it could not be connected |
//! | 2 | the disk holds no FAT16/FAT32 file system |
//! | 3 | the `cat` file is missing or unreadable |
//! | 4 | writing the `write` file failed (e.g. a read-only disk), or it read back wrong |
//! | 5 | closing the volume or flushing the disk failed |
//! | 6 | bad command line |
#![cfg_attr(target_os = "none", no_std)]
#![no_main]

extern crate alloc;

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::ops::ControlFlow;

use guest_sdk::block::sdmmc::embedded_sdmmc::{
    LfnBuffer, Mode, ShortFileName, VolumeIdx, VolumeManager,
};
use guest_sdk::block::sdmmc::{SdmmcDisk, WallClock};
use guest_sdk::block::{BlockDevice, BlockError};
use guest_sdk::start_info::cmdline;
use guest_sdk::{console, println};

guest_sdk::entry!(main);

const DEFAULT_TEXT: &str = "Hello from the Parapet blk-fat guest!";

/// A failure: exit code and message.
type Failure = (u32, String);

struct Args<'a> {
    disk: usize,
    cat: &'a str,
    write: &'a str,
    text: &'a str,
}

fn parse(line: &str) -> Result<Args<'_>, String> {
    // `text=` takes the rest of the line; it must start a word.
    let text_at = line
        .match_indices("text=")
        .map(|(i, _)| i)
        .find(|&i| i == 0 || line.as_bytes()[i - 1].is_ascii_whitespace());
    let (words, text) = match text_at {
        Some(i) => (&line[..i], &line[i + "text=".len()..]),
        None => (line, DEFAULT_TEXT),
    };
    let mut args = Args {
        disk: 0,
        cat: "HELLO.TXT",
        write: "GUEST.TXT",
        text,
    };
    for word in words.split_ascii_whitespace() {
        match word.split_once('=') {
            Some(("cat", v)) if !v.is_empty() => args.cat = v,
            Some(("write", v)) if !v.is_empty() => args.write = v,
            Some(("disk", v)) => {
                args.disk = v.parse().map_err(|_| format!("bad disk number {v:?}"))?;
            }
            _ => {
                return Err(format!(
                    "unknown word {word:?} (usage: [disk=N] [cat=NAME] [write=NAME] [text=...])"
                ));
            }
        }
    }
    Ok(args)
}

fn main() -> u32 {
    match run() {
        Ok(()) => {
            println!("blk-fat: ok");
            0
        }
        Err((code, message)) => {
            println!("blk-fat: error: {message}");
            code
        }
    }
}

fn run() -> Result<(), Failure> {
    let args = parse(cmdline()).map_err(|e| (6, e))?;
    let dev = BlockDevice::open(args.disk).map_err(|e| match e {
        BlockError::NoDevice => (
            1,
            format!("no block device {} (run with --disk PATH)", args.disk),
        ),
        e => (1, format!("cannot connect block device {}: {e}", args.disk)),
    })?;
    let (sectors, read_only) = (dev.sectors(), dev.read_only());
    let disk = SdmmcDisk::new(dev).map_err(|e| (2, format!("cannot read sector 0: {e}")))?;
    println!(
        "blk-fat: disk {sectors} sectors, {}{}",
        if disk.is_superfloppy() {
            "FAT at sector 0"
        } else {
            "reading the MBR"
        },
        if read_only { ", read-only" } else { "" }
    );
    let volumes = VolumeManager::new(disk, WallClock);
    let volume = volumes
        .open_volume(VolumeIdx(0))
        .map_err(|e| (2, format!("not a FAT16/FAT32 disk: {e}")))?;
    let root = volume
        .open_root_dir()
        .map_err(|e| (2, format!("cannot open the root directory: {e}")))?;

    list(&root)?;

    // The file to print.
    let content = {
        let file = root
            .open_file_in_dir(args.cat, Mode::ReadOnly)
            .map_err(|e| (3, format!("cannot open {}: {e}", args.cat)))?;
        let content = read_all(&file).map_err(|e| (3, format!("cannot read {}: {e}", args.cat)))?;
        file.close()
            .map_err(|e| (3, format!("cannot close {}: {e}", args.cat)))?;
        content
    };
    let cat_name = short_name(args.cat);
    println!("cat {cat_name} {}", content.len());
    console::write_bytes(&content);
    if content.last().is_some_and(|&b| b != b'\n') {
        println!();
    }
    println!("end {cat_name}");

    // The file to write.
    let mut data = args.text.as_bytes().to_vec();
    data.push(b'\n');
    let write_name = short_name(args.write);
    {
        let fail = |e: &dyn core::fmt::Display| (4, format!("cannot write {}: {e}", args.write));
        let file = root
            .open_file_in_dir(args.write, Mode::ReadWriteCreateOrTruncate)
            .map_err(|e| fail(&e))?;
        file.write(&data).map_err(|e| fail(&e))?;
        file.close().map_err(|e| fail(&e))?;
    }
    println!("wrote {write_name} {}", data.len());
    {
        let fail =
            |e: &dyn core::fmt::Display| (4, format!("cannot read back {}: {e}", args.write));
        let file = root
            .open_file_in_dir(args.write, Mode::ReadOnly)
            .map_err(|e| fail(&e))?;
        let back = read_all(&file).map_err(|e| fail(&e))?;
        file.close().map_err(|e| fail(&e))?;
        if back != data {
            return Err((4, format!("{} read back differently", args.write)));
        }
    }
    println!("verified {write_name}");

    let fail = |e: &dyn core::fmt::Display| (5, format!("cannot close the volume: {e}"));
    root.close().map_err(|e| fail(&e))?;
    volume.close().map_err(|e| fail(&e))?;
    volumes
        .device(|d| d.device().flush())
        .map_err(|e| (5, format!("flush: {e}")))?;
    println!("flushed");
    Ok(())
}

/// The 8.3 name as the directory stores it (upper case), or the argument if it is not one.
fn short_name(name: &str) -> String {
    ShortFileName::create_from_str(name).map_or_else(|_| name.to_string(), |n| n.to_string())
}

/// Prints the root directory's files and directories.
fn list<D, T, const DIRS: usize, const FILES: usize, const VOLS: usize>(
    root: &guest_sdk::block::sdmmc::embedded_sdmmc::Directory<'_, D, T, DIRS, FILES, VOLS>,
) -> Result<(), Failure>
where
    D: guest_sdk::block::sdmmc::embedded_sdmmc::BlockDevice,
    T: guest_sdk::block::sdmmc::embedded_sdmmc::TimeSource,
{
    struct Entry {
        name: String,
        long: Option<String>,
        size: u32,
        dir: bool,
    }
    let mut entries = Vec::new();
    let mut storage = [0u8; 1024];
    let mut lfn = LfnBuffer::new(&mut storage);
    root.iterate_dir_lfn(&mut lfn, |entry, long| {
        let name = entry.name.to_string();
        if !entry.attributes.is_volume() && name != "." && name != ".." {
            entries.push(Entry {
                name,
                long: long.map(ToString::to_string),
                size: entry.size,
                dir: entry.attributes.is_directory(),
            });
        }
        ControlFlow::Continue(())
    })
    .map_err(|e| (2, format!("cannot list the root directory: {e}")))?;
    let mut files = 0;
    for e in &entries {
        if e.dir {
            println!("dir {}", e.name);
        } else {
            files += 1;
            println!("file {} {}", e.name, e.size);
        }
        if let Some(long) = &e.long {
            println!("  long name: {long}");
        }
    }
    println!("files: {files}");
    Ok(())
}

/// Reads a file to its end.
fn read_all<D, T, const DIRS: usize, const FILES: usize, const VOLS: usize>(
    file: &guest_sdk::block::sdmmc::embedded_sdmmc::File<'_, D, T, DIRS, FILES, VOLS>,
) -> Result<Vec<u8>, guest_sdk::block::sdmmc::embedded_sdmmc::Error<D::Error>>
where
    D: guest_sdk::block::sdmmc::embedded_sdmmc::BlockDevice,
    T: guest_sdk::block::sdmmc::embedded_sdmmc::TimeSource,
{
    let mut out = Vec::new();
    let mut buf = [0u8; 512];
    while !file.is_eof() {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    Ok(out)
}

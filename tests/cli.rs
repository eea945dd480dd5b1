//! The VMM's handling of bad input: every rejected kernel image, memory size or option gives
//! status 1 with exactly one `parapet: error: ` line (or status 2 for a clap usage error), and
//! never a panic. abi.md §2.1 and §6.

use parapet_tests::elf::{self, Elf, Phdr};
use parapet_tests::{Output, TempDir, guest, parapet, run_kernel};

/// Writes `bytes` to a temporary file named `name` and runs `parapet run FILE ARGS` on it.
fn run_bytes(name: &str, bytes: &[u8], args: &[&str]) -> Output {
    let dir = TempDir::new(name);
    run_kernel(&dir.file(name, bytes), args)
}

/// Writes `image` to a temporary file and runs `parapet run FILE ARGS` on it.
fn run_image(name: &str, image: &Elf, args: &[&str]) -> Output {
    run_bytes(name, &image.bytes(), args)
}

/// Runs the valid minimal kernel with `args`: for the option tests.
fn run_minimal(args: &[&str]) -> Output {
    run_image("minimal", &Elf::minimal_kernel(0), args)
}

/// Words one of which the error line for a malformed ELF must contain.
const NOT_ELF: &[&str] = &[
    "elf",
    "magic",
    "header",
    "truncated",
    "too short",
    "too small",
    "empty",
];
/// Words one of which the error line for a bad segment must contain.
const BAD_SEGMENT: &[&str] = &["segment", "pt_load", "load", "outside", "overflow", "range"];

// The control: the builder makes images the VMM accepts, so the rejections below are caused by
// the one field each test breaks.
#[test]
fn crafted_minimal_kernel_powers_off_with_its_exit_code() {
    let out = run_image("minimal", &Elf::minimal_kernel(42), &[]);
    out.assert_status(42).assert_no_panic();
    assert!(
        out.stdout.is_empty(),
        "the minimal kernel prints nothing\n{out}"
    );
}

#[test]
fn no_arguments_is_a_usage_error() {
    parapet(Vec::<&str>::new())
        .assert_status(2)
        .assert_no_panic();
    parapet(["run"]).assert_status(2).assert_no_panic();
}

#[test]
fn unknown_option_is_a_usage_error() {
    run_minimal(&["--no-such-option"])
        .assert_status(2)
        .assert_no_panic();
}

#[test]
fn missing_kernel_file() {
    let dir = TempDir::new("missing");
    run_kernel(&dir.join("no-such-kernel"), Vec::<&str>::new()).assert_one_line_error(&[
        "no such file",
        "not found",
        "does not exist",
        "no-such-kernel",
    ]);
}

#[test]
fn kernel_is_a_directory() {
    let dir = TempDir::new("directory");
    run_kernel(&dir, Vec::<&str>::new()).assert_one_line_error(&[
        "directory",
        "not a regular file",
        "not a file",
    ]);
}

#[test]
fn empty_file() {
    run_bytes("empty", b"", &[]).assert_one_line_error(NOT_ELF);
}

#[test]
fn text_file_is_not_elf() {
    let text = b"#!/bin/sh\necho this is not a kernel\n".repeat(8);
    run_bytes("text", &text, &[]).assert_one_line_error(&["elf", "magic"]);
}

#[test]
fn truncated_elf_header() {
    let bytes = Elf::minimal_kernel(0).bytes();
    run_bytes("truncated-header", &bytes[..40], &[]).assert_one_line_error(NOT_ELF);
}

#[test]
fn truncated_program_headers() {
    // The header announces one program header, but the file ends right after the ELF header.
    let bytes = Elf::minimal_kernel(0).bytes();
    run_bytes("truncated-phdrs", &bytes[..64], &[]).assert_one_line_error(&[
        "elf",
        "program header",
        "truncated",
        "too short",
        "too small",
        "segment",
        "phdr",
    ]);
}

#[test]
fn elf32_is_rejected() {
    let image = Elf {
        class: 1,
        ..Elf::minimal_kernel(0)
    };
    run_image("elf32", &image, &[]).assert_one_line_error(&["32", "class", "elf64", "64-bit"]);
}

#[test]
fn big_endian_is_rejected() {
    let image = Elf {
        data: 2,
        ..Elf::minimal_kernel(0)
    };
    run_image("big-endian", &image, &[])
        .assert_one_line_error(&["endian", "big", "little", "data", "elf"]);
}

#[test]
fn aarch64_is_rejected() {
    let image = Elf {
        machine: elf::EM_AARCH64,
        ..Elf::minimal_kernel(0)
    };
    run_image("aarch64", &image, &[]).assert_one_line_error(&[
        "machine",
        "aarch64",
        "arm",
        "x86",
        "183",
        "architecture",
    ]);
}

#[test]
fn shared_object_is_rejected() {
    let image = Elf {
        e_type: elf::ET_DYN,
        ..Elf::minimal_kernel(0)
    };
    run_image("et-dyn", &image, &[])
        .assert_one_line_error(&["type", "exec", "dyn", "shared", "pie", "position"]);
}

#[test]
fn relocatable_object_is_rejected() {
    let image = Elf {
        e_type: elf::ET_REL,
        ..Elf::minimal_kernel(0)
    };
    run_image("et-rel", &image, &[]).assert_one_line_error(&["type", "exec", "rel", "object"]);
}

#[test]
fn image_without_loadable_segments_is_rejected() {
    let image = Elf {
        phdrs: vec![],
        ..Elf::minimal_kernel(0)
    };
    run_image("no-load", &image, &[])
        .assert_one_line_error(&["segment", "pt_load", "load", "entry", "empty"]);
}

/// The minimal kernel with its one segment changed by `f`.
fn with_segment(f: impl FnOnce(&mut Phdr)) -> Elf {
    let mut image = Elf::minimal_kernel(0);
    f(&mut image.phdrs[0]);
    image
}

#[test]
fn segment_below_1mib_is_rejected() {
    let image = Elf {
        entry: 0x8_0000,
        ..with_segment(|p| p.vaddr = 0x8_0000)
    };
    run_image("low-segment", &image, &[])
        .assert_one_line_error(&["1 mib", "1mib", "0x100000", "below", "segment", "low"]);
}

#[test]
fn segment_end_overflowing_u64_is_rejected() {
    let image = with_segment(|p| {
        p.vaddr = 0xffff_ffff_ffff_f000;
        p.memsz = 0x2000;
    });
    run_image("overflow", &image, &[]).assert_one_line_error(BAD_SEGMENT);
}

#[test]
fn segment_file_range_past_end_of_file_is_rejected() {
    // The file holds a few dozen bytes of segment; the header claims 64 KiB (memsz is larger, so
    // only the file range is wrong).
    let image = with_segment(|p| {
        p.filesz = 0x1_0000;
        p.memsz = 0x2_0000;
    });
    run_image("filesz-past-eof", &image, &[]).assert_one_line_error(&[
        "segment",
        "file",
        "truncated",
        "eof",
        "outside",
        "range",
        "elf",
    ]);
}

#[test]
fn segment_past_end_of_ram_is_rejected() {
    // 128 MiB of segment in the default 64 MiB of RAM.
    let image = with_segment(|p| p.memsz = 128 << 20);
    run_image("past-ram", &image, &[])
        .assert_one_line_error(&["ram", "memory", "outside", "segment", "exceeds"]);
}

#[test]
fn hello_does_not_fit_in_1mib_of_ram() {
    // The kernel image starts at 1 MiB, so with 1 MiB of RAM nothing of it fits.
    run_kernel(&guest("hello"), ["--memory", "1M"]).assert_one_line_error(&[
        "ram",
        "memory",
        "outside",
        "segment",
        "exceeds",
        "too small",
        "too little",
    ]);
}

#[test]
fn memory_zero_is_rejected() {
    run_minimal(&["--memory", "0"]).assert_rejected(&["memory", "size"]);
}

#[test]
fn memory_not_a_number_is_rejected() {
    run_minimal(&["--memory", "abc"]).assert_rejected(&["memory", "size", "abc"]);
}

#[test]
fn memory_too_big_is_rejected() {
    run_minimal(&["--memory", "1T"]).assert_rejected(&["memory", "size", "large", "big", "1t"]);
}

#[test]
fn memory_size_suffixes_are_accepted() {
    for size in ["64M", "1G", "4096K", "16777216"] {
        run_minimal(&["--memory", size])
            .assert_status(0)
            .assert_no_panic();
    }
}

#[test]
fn bad_hypercall_transport_is_a_usage_error() {
    run_minimal(&["--hypercall-transport", "carrier-pigeon"])
        .assert_status(2)
        .assert_no_panic();
}

#[test]
fn huge_sparse_segment_is_refused_before_it_is_read() {
    // 136 bytes of headers and a 20 GiB PT_LOAD whose bytes are a hole in a sparse file: the
    // VMM must compare the segment with the guest's memory before it reads a byte of it.
    let mut image = Elf::minimal_kernel(0);
    image.contents.clear();
    image.phdrs[0].offset = 0x1000;
    image.phdrs[0].filesz = 20 << 30;
    image.phdrs[0].memsz = 20 << 30;
    let dir = TempDir::new("sparse");
    let path = dir.file("sparse", &image.bytes());
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .and_then(|f| f.set_len(0x1000 + (20 << 30)))
        .expect("make the sparse file");
    let out = run_kernel(&path, ["--memory", "64M"]);
    assert!(!out.killed, "the VMM read the whole segment\n{out}");
    out.assert_one_line_error(&["memory", "limit", "spans"]);
}

#[test]
fn kernel_is_a_fifo() {
    let dir = TempDir::new("fifo");
    let path = dir.join("fifo");
    let made = std::process::Command::new("mkfifo")
        .arg(&path)
        .status()
        .expect("run mkfifo");
    assert!(made.success(), "mkfifo failed");
    // Nobody opens the FIFO for writing: a blocking open would never return.
    let out = run_kernel(&path, Vec::<&str>::new());
    assert!(!out.killed, "the VMM blocked on the FIFO\n{out}");
    out.assert_one_line_error(&["fifo", "not a regular file"]);
}

#[test]
fn disk_is_a_fifo() {
    let dir = TempDir::new("disk-fifo");
    let path = dir.join("disk");
    let made = std::process::Command::new("mkfifo")
        .arg(&path)
        .status()
        .expect("run mkfifo");
    assert!(made.success(), "mkfifo failed");
    // Read-only: a blocking open would wait for a writer forever.
    let disk = format!("{},readonly", path.display());
    let out = run_minimal(&["--disk", &disk]);
    assert!(!out.killed, "the VMM blocked on the FIFO\n{out}");
    out.assert_one_line_error(&["not a regular file"]);
}

#[test]
fn net_fd_must_be_an_inherited_tap() {
    // Nothing is open at 900: one line says so, before anything else happens.
    run_minimal(&["--net", "fd=900"]).assert_one_line_error(&["fd=900: is not open"]);
    // The console's descriptors and a TAP given twice over are usage errors.
    run_minimal(&["--net", "fd=1"])
        .assert_status(2)
        .assert_no_panic()
        .assert_stderr_contains("descriptors 0-2 are the guest's console");
    run_minimal(&["--net", "fd=3,tap=tap0"])
        .assert_status(2)
        .assert_no_panic()
        .assert_stderr_contains("one TAP device");
    run_minimal(&["--net", "fd=3,mtu=9000"])
        .assert_status(2)
        .assert_stderr_contains("the MTU is 68 to 1500");
}

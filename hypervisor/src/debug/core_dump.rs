//! ELF core dumps of a guest that faulted or panicked (`parapet run --core FILE`), which
//! `gdb GUEST FILE` opens at the faulting frame.
//!
//! The core has the layout Linux gives a process's: one `PT_NOTE` with an `NT_PRSTATUS` (the
//! registers, in `user_regs_struct` order), then one `PT_LOAD` per run of the guest's virtual
//! address space ([`page_walk::mappings`]), at the guest's virtual addresses, so the symbols of
//! the guest ELF apply. Writing happens on a thread of its own ([`CoreDumper`]), started before
//! the guest runs: the vCPU thread may not create files.

use crate::error::{Error, Result};
use crate::kvm::vcpu::Vcpu;
use crate::memory::GuestRam;
use crate::outcome::GuestExit;
use crate::page_walk::{self, Mapping};
use object::LittleEndian as LE;
use object::elf;
use object::endian::{U16, U32, U64};
use object::pod::bytes_of;
use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use vm_memory::GuestAddress;

/// The registers a core records.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CoreRegisters {
    /// RAX, RBX, RCX, RDX, RSI, RDI, RBP, RSP, R8–R15 (gdb's order).
    pub gprs: [u64; 16],
    /// The faulting instruction.
    pub rip: u64,
    /// RFLAGS.
    pub rflags: u64,
    /// CS, SS, DS, ES, FS, GS selectors.
    pub selectors: [u64; 6],
    /// FS base.
    pub fs_base: u64,
    /// GS base.
    pub gs_base: u64,
}

/// The page-table root and registers a core dump records for `exit`; `None` if the guest did
/// not fault or panic.
pub fn registers(exit: &GuestExit, vcpu: &Vcpu) -> Option<(u64, CoreRegisters)> {
    let report = match exit {
        GuestExit::Fault(info) => info.report.as_deref().copied(),
        GuestExit::Crash => None,
        _ => return None,
    };
    let r = vcpu.fd().get_regs().ok()?;
    let s = vcpu.fd().get_sregs().ok()?;
    let mut regs = CoreRegisters {
        gprs: super::gprs_from_kvm(&r),
        rip: r.rip,
        rflags: r.rflags,
        selectors: [s.cs, s.ss, s.ds, s.es, s.fs, s.gs].map(|seg| u64::from(seg.selector)),
        fs_base: s.fs.base,
        gs_base: s.gs.base,
    };
    if let Some(f) = report {
        regs.gprs = super::gprs_from_report(&f);
        (regs.rip, regs.rflags) = (f.rip, f.rflags);
    }
    Some((s.cr3, regs))
}

/// Size of Linux's x86-64 `struct elf_prstatus`.
const PRSTATUS_SIZE: usize = 336;
/// Offset of `pr_reg` (a `user_regs_struct`) in it.
const PR_REG: usize = 112;
const PAGE: u64 = 4096;

/// `struct elf_prstatus` with `signal` and `regs`.
fn prstatus(regs: &CoreRegisters, signal: u32) -> [u8; PRSTATUS_SIZE] {
    let mut b = [0u8; PRSTATUS_SIZE];
    b[0..4].copy_from_slice(&signal.to_le_bytes()); // pr_info.si_signo
    b[12..14].copy_from_slice(&(signal as u16).to_le_bytes()); // pr_cursig
    b[32..36].copy_from_slice(&1u32.to_le_bytes()); // pr_pid
    let g = regs.gprs;
    let [cs, ss, ds, es, fs, gs] = regs.selectors;
    // user_regs_struct: r15 r14 r13 r12 rbp rbx r11 r10 r9 r8 rax rcx rdx rsi rdi orig_rax rip
    // cs eflags rsp ss fs_base gs_base ds es fs gs.
    let user_regs = [
        g[15],
        g[14],
        g[13],
        g[12],
        g[6],
        g[1],
        g[11],
        g[10],
        g[9],
        g[8],
        g[0],
        g[2],
        g[3],
        g[4],
        g[5],
        u64::MAX,
        regs.rip,
        cs,
        regs.rflags,
        g[7],
        ss,
        regs.fs_base,
        regs.gs_base,
        ds,
        es,
        fs,
        gs,
    ];
    for (i, value) in user_regs.iter().enumerate() {
        let at = PR_REG + i * 8;
        b[at..at + 8].copy_from_slice(&value.to_le_bytes());
    }
    b
}

/// The core file's headers and note, and where each mapping's bytes go in the file.
#[derive(Debug)]
struct Layout {
    head: Vec<u8>,
    /// (file offset, mapping)
    segments: Vec<(u64, Mapping)>,
}

fn layout(mappings: &[Mapping], regs: &CoreRegisters, signal: u32) -> Layout {
    let e = LE;
    let phnum = mappings.len() + 1;
    let ehsize = size_of::<elf::FileHeader64<LE>>();
    let phsize = size_of::<elf::ProgramHeader64<LE>>();
    let note_offset = (ehsize + phnum * phsize) as u64;
    let mut note = Vec::new();
    note.extend_from_slice(bytes_of(&elf::NoteHeader64::<LE> {
        n_namesz: U32::new(e, 5),
        n_descsz: U32::new(e, PRSTATUS_SIZE as u32),
        n_type: U32::new(e, elf::NT_PRSTATUS),
    }));
    note.extend_from_slice(b"CORE\0\0\0\0");
    note.extend_from_slice(&prstatus(regs, signal));
    let mut offset = (note_offset + note.len() as u64).next_multiple_of(PAGE);
    let segments: Vec<_> = mappings
        .iter()
        .map(|m| {
            let at = offset;
            offset += m.len;
            (at, *m)
        })
        .collect();

    let mut head = Vec::new();
    head.extend_from_slice(bytes_of(&elf::FileHeader64::<LE> {
        e_ident: elf::Ident {
            magic: elf::ELFMAG,
            class: elf::ELFCLASS64,
            data: elf::ELFDATA2LSB,
            version: elf::EV_CURRENT,
            os_abi: elf::ELFOSABI_SYSV,
            abi_version: 0,
            padding: [0; 7],
        },
        e_type: U16::new(e, elf::ET_CORE),
        e_machine: U16::new(e, elf::EM_X86_64),
        e_version: U32::new(e, elf::EV_CURRENT.0.into()),
        e_entry: U64::new(e, 0),
        e_phoff: U64::new(e, ehsize as u64),
        e_shoff: U64::new(e, 0),
        e_flags: U32::new(e, Default::default()),
        e_ehsize: U16::new(e, ehsize as u16),
        e_phentsize: U16::new(e, phsize as u16),
        e_phnum: U16::new(e, phnum as u16),
        e_shentsize: U16::new(e, 0),
        e_shnum: U16::new(e, 0),
        e_shstrndx: U16::new(e, Default::default()),
    }));
    head.extend_from_slice(bytes_of(&elf::ProgramHeader64::<LE> {
        p_type: U32::new(e, elf::PT_NOTE),
        p_flags: U32::new(e, Default::default()),
        p_offset: U64::new(e, note_offset),
        p_vaddr: U64::new(e, 0),
        p_paddr: U64::new(e, 0),
        p_filesz: U64::new(e, note.len() as u64),
        p_memsz: U64::new(e, 0),
        p_align: U64::new(e, 4),
    }));
    for (at, m) in &segments {
        head.extend_from_slice(bytes_of(&elf::ProgramHeader64::<LE> {
            p_type: U32::new(e, elf::PT_LOAD),
            p_flags: U32::new(e, elf::PF_R | elf::PF_W | elf::PF_X),
            p_offset: U64::new(e, *at),
            p_vaddr: U64::new(e, m.va),
            p_paddr: U64::new(e, m.gpa),
            p_filesz: U64::new(e, m.len),
            p_memsz: U64::new(e, m.len),
            p_align: U64::new(e, PAGE),
        }));
    }
    head.extend_from_slice(&note);
    Layout { head, segments }
}

/// Writes the core of the guest in `ram` (address space at `cr3`) to `file`.
fn write_core(
    file: &File,
    ram: &GuestRam,
    cr3: u64,
    regs: &CoreRegisters,
    signal: u32,
) -> io::Result<()> {
    let mappings = page_walk::mappings(ram, cr3);
    let layout = layout(&mappings, regs, signal);
    file.set_len(0)?;
    file.write_all_at(&layout.head, 0)?;
    let mut buf = vec![0u8; 1 << 20];
    for (at, m) in &layout.segments {
        let mut done = 0;
        while done < m.len {
            let n = (m.len - done).min(buf.len() as u64) as usize;
            ram.read(GuestAddress(m.gpa + done), &mut buf[..n])
                .map_err(|_| io::Error::other("a mapping left guest RAM"))?;
            file.write_all_at(&buf[..n], at + done)?;
            done += n as u64;
        }
    }
    file.sync_data()
}

/// What the vCPU thread asks the dumper for.
#[derive(Debug)]
struct Request {
    cr3: u64,
    regs: CoreRegisters,
    signal: u32,
}

/// The thread that writes the core, started before the guest runs.
#[derive(Debug)]
pub struct CoreDumper {
    path: PathBuf,
    requests: crossbeam_channel::Sender<Request>,
    done: crossbeam_channel::Receiver<io::Result<()>>,
}

impl CoreDumper {
    /// Checks `path` can be a core file and starts the dumper for the guest in `ram`.
    pub fn start(path: &Path, ram: Arc<GuestRam>) -> Result<CoreDumper> {
        let bad = |why: String| Error::Debug(format!("--core {}: {why}", path.display()));
        if path.is_dir() {
            return Err(bad("is a directory".into()));
        }
        let parent = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        if !parent.is_dir() {
            return Err(bad(format!("{} is not a directory", parent.display())));
        }
        let (requests, incoming) = crossbeam_channel::bounded::<Request>(1);
        let (done_tx, done) = crossbeam_channel::bounded(1);
        let target = path.to_path_buf();
        crate::seccomp::spawn(crate::seccomp::Role::CoreDump, move || {
            let Ok(request) = incoming.recv() else {
                return;
            };
            let result = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&target)
                .and_then(|file| {
                    write_core(&file, &ram, request.cr3, &request.regs, request.signal)
                });
            let _ = done_tx.send(result);
        })
        .map_err(|source| Error::Io {
            op: "cannot start the core dump thread",
            source,
        })?;
        Ok(CoreDumper {
            path: path.to_path_buf(),
            requests,
            done,
        })
    }

    /// Writes the core and waits until it is on disk.
    pub fn dump(self, cr3: u64, regs: CoreRegisters, signal: u32) -> io::Result<PathBuf> {
        self.requests
            .send(Request { cr3, regs, signal })
            .map_err(|_| io::Error::other("the core dump thread is gone"))?;
        self.done
            .recv()
            .map_err(|_| io::Error::other("the core dump thread is gone"))??;
        Ok(self.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object::read::elf::{ElfFile64, ProgramHeader as _};
    use object::{Object, ObjectSegment};

    #[test]
    fn prstatus_puts_registers_where_linux_does() {
        let mut regs = CoreRegisters {
            rip: 0x4000_1234,
            rflags: 0x246,
            fs_base: 0x7000,
            ..Default::default()
        };
        regs.gprs[0] = 0xaa; // rax
        regs.gprs[7] = 0x5000; // rsp
        regs.gprs[15] = 0xff; // r15
        let b = prstatus(&regs, 11);
        let reg = |i: usize| {
            u64::from_le_bytes(b[PR_REG + i * 8..PR_REG + i * 8 + 8].try_into().unwrap())
        };
        assert_eq!(reg(0), 0xff); // r15
        assert_eq!(reg(10), 0xaa); // rax
        assert_eq!(reg(16), 0x4000_1234); // rip
        assert_eq!(reg(18), 0x246); // eflags
        assert_eq!(reg(19), 0x5000); // rsp
        assert_eq!(reg(21), 0x7000); // fs_base
        assert_eq!(u32::from_le_bytes(b[0..4].try_into().unwrap()), 11);
    }

    #[test]
    fn core_is_an_elf_core_with_the_mappings_at_their_virtual_addresses() {
        let ram = GuestRam::new(2 << 20).unwrap();
        ram.write(GuestAddress(0x3000), b"guest bytes").unwrap();
        let mappings = [Mapping {
            va: 0xffff_8000_0000_0000,
            gpa: 0x3000,
            len: 0x1000,
        }];
        let layout = layout(&mappings, &CoreRegisters::default(), 6);
        let mut file = layout.head.clone();
        let (at, m) = layout.segments[0];
        file.resize(at as usize, 0);
        let mut page = vec![0u8; m.len as usize];
        ram.read(GuestAddress(m.gpa), &mut page).unwrap();
        file.extend_from_slice(&page);

        let elf = ElfFile64::<LE>::parse(&file[..]).unwrap();
        assert_eq!(elf.kind(), object::ObjectKind::Core);
        let seg = elf.segments().next().unwrap();
        assert_eq!(seg.address(), 0xffff_8000_0000_0000);
        assert!(seg.data().unwrap().starts_with(b"guest bytes"));
        let note = elf
            .elf_program_headers()
            .iter()
            .find(|p| p.p_type(LE) == elf::PT_NOTE)
            .unwrap();
        let mut notes = note.notes(LE, &file[..]).unwrap().unwrap();
        let n = notes.next().unwrap().unwrap();
        assert_eq!(n.name(), b"CORE");
        assert_eq!(n.n_type(LE), elf::NT_PRSTATUS);
        assert_eq!(n.desc().len(), PRSTATUS_SIZE);
    }
}

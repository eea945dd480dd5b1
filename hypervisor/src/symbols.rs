//! Guest symbols, for naming addresses in fault reports. Parsed only when a report needs them.

use object::{Object, ObjectSymbol, SymbolKind};

/// Function and data symbols of a guest image, sorted by address.
#[derive(Debug, Default)]
pub struct SymbolTable {
    entries: Vec<(u64, u64, String)>,
}

impl SymbolTable {
    /// Reads the symbol table of an ELF image; an image without one gives an empty table.
    pub fn from_elf(data: &[u8]) -> SymbolTable {
        let Ok(file) = object::File::parse(data) else {
            return SymbolTable::default();
        };
        let mut entries: Vec<_> = file
            .symbols()
            .filter(|s| matches!(s.kind(), SymbolKind::Text | SymbolKind::Data) && s.address() != 0)
            .filter_map(|s| Some((s.address(), s.size(), s.name().ok()?.to_owned())))
            .collect();
        entries.sort_by_key(|e| e.0);
        SymbolTable { entries }
    }

    /// `name+0xoff` of the symbol containing `addr`, demangled.
    pub fn describe(&self, addr: u64) -> Option<String> {
        let i = self
            .entries
            .partition_point(|e| e.0 <= addr)
            .checked_sub(1)?;
        let (start, size, name) = &self.entries[i];
        let off = addr - start;
        if *size != 0 && off >= *size {
            return None;
        }
        Some(format!("{:#}+{off:#x}", rustc_demangle::demangle(name)))
    }
}

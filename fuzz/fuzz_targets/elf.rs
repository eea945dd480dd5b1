#![no_main]
//! Fuzz target `elf`: see `parapet::fuzzing::elf` and docs/fuzzing.md.

libfuzzer_sys::fuzz_target!(|data: &[u8]| parapet::fuzzing::elf(data));

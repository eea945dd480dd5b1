#![no_main]
//! Fuzz target `blkif`: see `parapet::fuzzing::blkif` and docs/fuzzing.md.

libfuzzer_sys::fuzz_target!(|data: &[u8]| parapet::fuzzing::blkif(data));

//! Replays the checked-in fuzz corpus (`fuzz/corpus/TARGET/`) through the fuzz target bodies
//! (`parapet::fuzzing`), so every input the fuzzers kept, and every crash they found once, is
//! an ordinary test on stable Rust. `cargo fuzz run TARGET` (nightly) explores further; see
//! docs/fuzzing.md.

use std::path::PathBuf;

fn corpus_dir(target: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target)
}

#[test]
fn every_target_replays_its_corpus() {
    for (name, body) in parapet::fuzzing::TARGETS {
        let dir = corpus_dir(name);
        let entries = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("no corpus for fuzz target {name} at {dir:?}: {e}"));
        let mut replayed = 0;
        for entry in entries {
            let path = entry.expect("read the corpus folder").path();
            let input = std::fs::read(&path).expect("read a corpus file");
            let outcome = std::panic::catch_unwind(|| body(&input));
            assert!(outcome.is_ok(), "fuzz target {name} fails on {path:?}");
            replayed += 1;
        }
        assert!(replayed > 0, "the corpus of fuzz target {name} is empty");
    }
}

#[test]
fn every_target_survives_empty_and_patterned_inputs() {
    for (_, body) in parapet::fuzzing::TARGETS {
        body(&[]);
        for fill in [0x00u8, 0xff, 0x41] {
            for len in [1, 7, 4096, 4096 + 128, 48 * 1024] {
                body(&vec![fill; len]);
            }
        }
    }
}

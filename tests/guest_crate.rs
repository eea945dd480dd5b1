//! Guests written in crates of their own (README, "Writing your own guest"): `cargo xtask
//! new-guest PATH` makes a crate outside the repository that plain `cargo run` builds and boots
//! with the `parapet` on PATH; a guest crate without the SDK's rustflags fails with one error
//! that names them; and in this repository `cargo run --target x86_64-unknown-none -p GUEST`
//! boots the guest on Parapet rather than running the kernel on the host.
//!
//! The generated crates live in temporary directories, removed afterwards; they build into this
//! test's target directory, so that they reuse the dependencies already compiled there.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use parapet_tests::{
    GUEST_TARGET, Output, TempDir, profile, run_with_limit, target_dir, vmm, workspace_root,
};

/// The safety limit for commands that build: a first build compiles the SDK's dependencies.
const BUILD_LIMIT: Duration = Duration::from_secs(20 * 60);

/// A `cargo` command in `dir`, building into this test's target directory, with none of the
/// host codegen flags a developer may have set (a guest's flags come from its config).
fn cargo(dir: &Path) -> Command {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(dir)
        .env("CARGO_TARGET_DIR", target_dir())
        .env("CARGO_TERM_COLOR", "never")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS");
    cmd
}

/// `--release` if this test was built with the release profile, so that the nested builds
/// reuse what is already compiled.
fn profile_args() -> &'static [&'static str] {
    if profile() == "release" {
        &["--release"]
    } else {
        &[]
    }
}

/// Runs the documented command, `cargo xtask new-guest PATH`, in the repository.
fn new_guest(path: &Path) -> Output {
    let mut cmd = cargo(workspace_root());
    cmd.args(["xtask", "new-guest"]).arg(path);
    let out = run_with_limit(cmd, BUILD_LIMIT);
    out.assert_status(0).assert_no_panic();
    for file in ["Cargo.toml", ".cargo/config.toml", "src/main.rs"] {
        assert!(
            path.join(file).is_file(),
            "new-guest wrote no {file}\n{out}"
        );
    }
    out
}

/// A fresh temporary directory outside the repository.
fn outside_the_repository(tag: &str) -> TempDir {
    let dir = TempDir::new(tag);
    let repo = workspace_root()
        .canonicalize()
        .expect("canonical workspace root");
    let canonical = dir.canonicalize().expect("canonical temp dir");
    assert!(
        !canonical.starts_with(&repo),
        "the temporary directory {} lies inside the repository",
        canonical.display()
    );
    dir
}

/// PATH with the built `parapet`'s directory first, as if `parapet` were installed.
fn path_with_parapet() -> std::ffi::OsString {
    let bin_dir = vmm().parent().expect("parapet's directory").to_path_buf();
    let rest = std::env::var_os("PATH").unwrap_or_default();
    std::env::join_paths(std::iter::once(bin_dir).chain(std::env::split_paths(&rest)))
        .expect("a PATH")
}

#[test]
fn a_new_guest_crate_outside_the_repository_builds_and_boots_with_cargo_run() {
    let dir = outside_the_repository("new-guest");
    let krate: PathBuf = dir.join("parapet-test-guest");
    new_guest(&krate);

    let path = path_with_parapet();
    let cargo_run = |vmm_args: &[&str]| {
        let mut cmd = cargo(&krate);
        // No incremental cache: the crate's path, and so its cache's name, is new every run.
        cmd.env("PATH", &path)
            .env("CARGO_INCREMENTAL", "0")
            .arg("run")
            .args(profile_args())
            .arg("--")
            .args(vmm_args);
        run_with_limit(cmd, BUILD_LIMIT)
    };

    // The arguments after `--` go to `parapet run`; the guest's exit code is cargo's status.
    let out = cargo_run(&["--cmdline", "exit=7 greeting"]);
    out.assert_status(7)
        .assert_no_panic()
        .assert_stdout_contains("Hello from parapet-test-guest on Parapet (")
        .assert_stdout_contains("command line: \"exit=7 greeting\"")
        .assert_stderr_contains("Running `parapet run ");
    assert!(
        out.stderr.contains(&format!("{GUEST_TARGET}/")),
        "the guest was not built for {GUEST_TARGET}\n{out}"
    );
    assert!(
        !out.stderr.contains("warning"),
        "the new guest crate builds with warnings\n{out}"
    );

    // No command line: exit code 0.
    cargo_run(&[])
        .assert_status(0)
        .assert_stdout_contains("command line: \"\"");

    // VMM options reach `parapet run`: a memory size it accepts, and one it refuses.
    cargo_run(&["--memory", "128M", "--cmdline", "exit=3"])
        .assert_status(3)
        .assert_stdout_contains("Hello from parapet-test-guest");
    let out = cargo_run(&["--memory", "3M"]);
    out.assert_status(1)
        .assert_stderr_contains("parapet: error: ")
        .assert_stderr_contains("2 MiB");
    assert!(out.stdout.is_empty(), "the guest ran with 3M\n{out}");
}

#[test]
fn a_guest_crate_without_the_sdk_rustflags_fails_with_one_clear_error() {
    let dir = outside_the_repository("no-rustflags");
    let krate = dir.join("parapet-test-noflags");
    new_guest(&krate);

    // The user's mistake: a config without the SDK's rustflags.
    let config = krate.join(".cargo/config.toml");
    let text = std::fs::read_to_string(&config).expect("read the config");
    let start = text
        .find("rustflags = [")
        .expect("the config sets rustflags");
    let end = start + text[start..].find(']').expect("the rustflags end") + 1;
    let text = format!("{}{}", &text[..start], &text[end..]);
    assert!(!text.contains("relocation-model"), "{text}");
    std::fs::write(&config, text).expect("write the config");

    let mut cmd = cargo(&krate);
    cmd.env("CARGO_INCREMENTAL", "0")
        .arg("build")
        .args(profile_args());
    let out = run_with_limit(cmd, BUILD_LIMIT);
    assert!(!out.killed, "the build did not finish\n{out}");
    assert_ne!(out.status, Some(0), "the build succeeded\n{out}");
    for linker_noise in ["undefined symbol", "__stack_top", "linking with"] {
        assert!(
            !out.stderr.contains(linker_noise),
            "the build got as far as the linker ({linker_noise:?})\n{out}"
        );
    }

    // One error naming the three flags and where they go (cargo adds its own line after it).
    let errors: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.starts_with("error"))
        .collect();
    let first = errors.first().copied().unwrap_or_default();
    for needle in [
        "needs the SDK's rustflags",
        "link-arg=-Tparapet-guest.ld",
        "link-arg=--no-pie",
        "relocation-model=static",
        ".cargo/config.toml",
        "[target.x86_64-unknown-none]",
    ] {
        assert!(
            first.contains(needle),
            "the first error does not name {needle:?}\n{out}"
        );
    }
    assert!(errors.len() <= 2, "more than one error\n{out}");
    // Short: apart from cargo's progress lines, only the error itself.
    let progress = [
        "Compiling ",
        "Blocking ",
        "Locking ",
        "Adding ",
        "Updating ",
        "Downloading ",
        "Downloaded ",
    ];
    let said: Vec<&str> = out
        .stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !progress.iter().any(|p| l.starts_with(p)))
        .filter(|l| !l.starts_with("warning: build failed, waiting for other jobs"))
        .collect();
    assert!(said.len() <= 3, "a long error\n{out}");
}

#[test]
fn cargo_run_for_the_guest_target_boots_an_example_guest() {
    // `cargo xtask run-kernel` (the runner) builds the VMM; build it first, outside the limit.
    vmm();
    let cargo_run = |guest: &str, vmm_args: &[&str]| {
        let mut cmd = cargo(workspace_root());
        cmd.args(["run", "--target", GUEST_TARGET, "-p", guest])
            .args(profile_args())
            .arg("--")
            .args(vmm_args);
        run_with_limit(cmd, BUILD_LIMIT)
    };
    cargo_run("hello", &[])
        .assert_status(0)
        .assert_no_panic()
        .assert_stdout_contains("Hello from Parapet! platform=")
        .assert_stderr_contains("xtask run-kernel");
    cargo_run("crash", &["--cmdline", "exit=42"])
        .assert_status(42)
        .assert_no_panic();
}

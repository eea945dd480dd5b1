//! `cargo xtask new-guest PATH [--name NAME]`: a standalone guest crate, outside this workspace.
//!
//! The crate depends on this checkout's `guest-sdk` by absolute path, and its
//! `.cargo/config.toml` makes plain `cargo build` build for `x86_64-unknown-none` with the SDK's
//! rustflags and plain `cargo run -- ARGS` boot it with `parapet run ELF ARGS` (`parapet` on
//! PATH). The files come from `xtask/template/`:
//!
//! | file | from |
//! |---|---|
//! | `Cargo.toml` | `Cargo.toml.in`, with the name and the SDK's path filled in |
//! | `.cargo/config.toml` | `config.toml` |
//! | `src/main.rs` | `main.rs` |
//! | `.gitignore` | `gitignore` |
//! | `rust-toolchain.toml` | this repository's |
//! | `Cargo.lock` | this repository's: the dependency versions the SDK is tested with (cargo drops the entries the guest does not use) |

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::Workspace;

const CARGO_TOML: &str = include_str!("../template/Cargo.toml.in");
const CONFIG_TOML: &str = include_str!("../template/config.toml");
const MAIN_RS: &str = include_str!("../template/main.rs");
const GITIGNORE: &str = include_str!("../template/gitignore");

/// Names cargo refuses for a package, or that would clash with the SDK dependency.
const RESERVED: &[&str] = &[
    "alloc",
    "core",
    "std",
    "test",
    "proc_macro",
    "proc-macro",
    "guest-sdk",
    "guest_sdk",
];

/// Creates the guest crate at `path`, named `name` or after the directory; returns its
/// directory.
pub fn create(ws: &Workspace, path: &Path, name: Option<&str>) -> Result<PathBuf> {
    let name = match name {
        Some(name) => name.to_owned(),
        None => path
            .file_name()
            .and_then(|n| n.to_str())
            .with_context(|| {
                format!(
                    "cannot name a guest after {}; give --name NAME",
                    path.display()
                )
            })?
            .to_owned(),
    };
    check_name(&name)?;
    if inside(path, &ws.root)? {
        bail!(
            "{} lies inside this repository: a guest here belongs under examples/, as a member \
             of this workspace (README, \"A guest in this repository\"); `new-guest` makes a crate \
             of its own, to put elsewhere",
            path.display()
        );
    }
    if path.exists() {
        let empty = path.is_dir()
            && std::fs::read_dir(path)
                .with_context(|| format!("cannot read {}", path.display()))?
                .next()
                .is_none();
        if !empty {
            bail!(
                "{} already exists and is not an empty directory",
                path.display()
            );
        }
    }
    let sdk = ws.root.join("guest-sdk");
    let sdk = sdk
        .to_str()
        .with_context(|| format!("the SDK's path {} is not UTF-8", sdk.display()))?;
    let toolchain = std::fs::read_to_string(ws.root.join("rust-toolchain.toml"))
        .context("cannot read rust-toolchain.toml")?;
    let lock =
        std::fs::read_to_string(ws.root.join("Cargo.lock")).context("cannot read Cargo.lock")?;

    let files = [
        (
            "Cargo.toml",
            CARGO_TOML
                .replace("@NAME@", &name)
                .replace("@SDK@", &toml_string(sdk)),
        ),
        (".cargo/config.toml", CONFIG_TOML.to_owned()),
        ("src/main.rs", MAIN_RS.to_owned()),
        (".gitignore", GITIGNORE.to_owned()),
        ("rust-toolchain.toml", toolchain),
        ("Cargo.lock", lock),
    ];
    for (file, contents) in files {
        let dest = path.join(file);
        if let Some(dir) = dest.parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        std::fs::write(&dest, contents)
            .with_context(|| format!("cannot write {}", dest.display()))?;
    }
    Ok(path.to_path_buf())
}

/// Whether `path` (which need not exist yet) lies inside directory `root`, symbolic links
/// resolved.
fn inside(path: &Path, root: &Path) -> Result<bool> {
    let path = std::env::current_dir()?.join(path);
    let root = root
        .canonicalize()
        .with_context(|| format!("cannot resolve {}", root.display()))?;
    // The nearest ancestor that exists, resolved; the missing rest cannot be a link.
    let existing = path
        .ancestors()
        .find(|a| a.exists())
        .context("no part of the path exists")?;
    let resolved = existing
        .canonicalize()
        .with_context(|| format!("cannot resolve {}", existing.display()))?;
    Ok(resolved.starts_with(&root))
}

/// Accepts what cargo accepts as a package and binary name, as far as a guest needs: ASCII
/// letters, digits, `-` and `_`, not starting with a digit or `-`.
fn check_name(name: &str) -> Result<()> {
    let valid = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    if !valid {
        bail!(
            "`{name}` cannot be a package name: use ASCII letters, digits, `-` and `_`, starting \
             with a letter (give --name NAME to name the guest apart from its directory)"
        );
    }
    if RESERVED.contains(&name) {
        bail!("`{name}` cannot be a guest's package name; give --name NAME");
    }
    Ok(())
}

/// `s` as a TOML basic string.
fn toml_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for good in ["my-guest", "hello", "a", "_x", "guest_2"] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "2fast",
            "-x",
            "my guest",
            "my.guest",
            "ünï",
            "core",
            "guest-sdk",
        ] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn paths_inside_the_repository_are_recognised() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        assert!(inside(&root.join("examples/new-one"), root).unwrap());
        assert!(inside(&root.join("xtask/a/b/c"), root).unwrap());
        assert!(inside(root, root).unwrap());
        assert!(!inside(&std::env::temp_dir().join("parapet-new-one"), root).unwrap());
    }

    #[test]
    fn toml_strings() {
        assert_eq!(toml_string("/a/b"), r#""/a/b""#);
        assert_eq!(toml_string(r#"/a "b"\c"#), r#""/a \"b\"\\c""#);
        assert_eq!(toml_string("a\tb"), r#""a\u0009b""#);
    }

    #[test]
    fn the_template_names_the_guest_and_the_sdk() {
        let toml = CARGO_TOML
            .replace("@NAME@", "g")
            .replace("@SDK@", &toml_string("/sdk"));
        assert!(!toml.contains('@'), "an unfilled placeholder:\n{toml}");
        assert!(toml.contains("name = \"g\""));
        assert!(toml.contains("guest-sdk = { path = \"/sdk\" }"));
        assert!(toml.contains("test = false") && toml.contains("bench = false"));
        assert!(toml.contains("\n[workspace]\n"));
    }
}

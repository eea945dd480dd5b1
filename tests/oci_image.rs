//! `cargo xtask oci-image` (docs/containers.md, "The image format"): the hello guest with two
//! disks packed as an OCI image layout tarball, read back here with no OCI library — index.json
//! → manifest → config and layer, every digest and size checked — then unpacked like a
//! container runtime would: the run description from `/parapet.json` boots the guest, and the
//! image's entrypoint, run as a Linux program, says it needs Parapet's runtime. Needs no
//! containerd.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::Path;
use std::process::Command;

use parapet_oci::{GuestConfig, KERNEL_PATH, STUB_PATH};
use parapet_tests::{TempDir, guest, host_binary, parapet, run};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// Every entry of a tar stream: name → (mode, contents); directories have no contents.
fn entries(reader: impl Read) -> BTreeMap<String, (u32, Option<Vec<u8>>)> {
    let mut archive = tar::Archive::new(reader);
    let mut map = BTreeMap::new();
    for entry in archive.entries().expect("a tar stream") {
        let mut entry = entry.expect("a tar entry");
        let header = entry.header();
        let name = entry.path().unwrap().to_string_lossy().into_owned();
        let mode = header.mode().unwrap();
        assert_eq!(
            (
                header.uid().unwrap(),
                header.gid().unwrap(),
                header.mtime().unwrap()
            ),
            (0, 0, 0),
            "{name}: owner 0:0, time 0"
        );
        let contents = match header.entry_type() {
            tar::EntryType::Directory => None,
            tar::EntryType::Regular => {
                let mut bytes = Vec::new();
                entry.read_to_end(&mut bytes).unwrap();
                Some(bytes)
            }
            other => panic!("{name}: unexpected entry type {other:?}"),
        };
        assert!(
            map.insert(name.clone(), (mode, contents)).is_none(),
            "{name} twice"
        );
    }
    map
}

fn sha256(bytes: &[u8]) -> String {
    let hex: String = Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256:{hex}")
}

/// The blob a descriptor names, checked against its digest and size.
fn blob<'a>(
    layout: &'a BTreeMap<String, (u32, Option<Vec<u8>>)>,
    desc: &Value,
    media_type: &str,
) -> &'a [u8] {
    assert_eq!(desc["mediaType"], media_type, "{desc}");
    let digest = desc["digest"].as_str().unwrap();
    let hex = digest.strip_prefix("sha256:").expect("a sha256 digest");
    let bytes = layout[&format!("blobs/sha256/{hex}")]
        .1
        .as_deref()
        .expect("a blob is a file");
    assert_eq!(sha256(bytes), digest, "the blob's digest");
    assert_eq!(
        desc["size"].as_u64(),
        Some(bytes.len() as u64),
        "the blob's size"
    );
    bytes
}

fn json(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).expect("JSON")
}

fn string_map(value: &Value) -> HashMap<String, String> {
    serde_json::from_value(value.clone()).expect("a map of strings")
}

#[test]
fn hello_image_has_the_documented_layout_and_boots_from_its_description() {
    let dir = TempDir::new("oci-image");
    let kernel = guest("hello");
    let disk0: Vec<u8> = (0..64 * 1024u32).map(|i| (i % 251) as u8).collect();
    let disk0_path = dir.file("data.img", &disk0);
    let disk1_path = dir.file("scratch.img", &vec![0u8; 128 * 1024]);
    let out = dir.join("hello.tar");

    let mut cmd = Command::new(host_binary("xtask", "xtask"));
    cmd.arg("oci-image")
        .arg(&kernel)
        .arg("--disk")
        .arg(format!("{},readonly", disk0_path.display()))
        .arg("--disk")
        .arg(&disk1_path)
        .args(["--cmdline", "loglevel=warn answer=42", "--memory", "32M"])
        .arg("--out")
        .arg(&out)
        .args(["--name", "localhost/parapet/hello-test"]);
    let built = run(cmd);
    built.assert_status(0);
    assert_eq!(built.stdout.trim(), out.display().to_string());

    // The layout: oci-layout, index.json, blobs.
    let layout = entries(std::fs::File::open(&out).unwrap());
    let file = |name: &str| layout[name].1.as_deref().unwrap();
    assert_eq!(
        json(file("oci-layout")),
        json(br#"{"imageLayoutVersion":"1.0.0"}"#)
    );
    assert_eq!(
        layout["blobs/sha256/"].1, None,
        "blobs/sha256/ is a directory"
    );

    let index = json(file("index.json"));
    assert_eq!(index["schemaVersion"], 2);
    assert_eq!(
        index["mediaType"],
        "application/vnd.oci.image.index.v1+json"
    );
    let manifests = index["manifests"].as_array().unwrap();
    assert_eq!(manifests.len(), 1);
    let entry = &manifests[0];
    assert_eq!(
        entry["annotations"]["io.containerd.image.name"],
        "localhost/parapet/hello-test:latest"
    );
    assert_eq!(
        entry["annotations"]["org.opencontainers.image.ref.name"],
        "latest"
    );
    assert_eq!(entry["platform"]["architecture"], "amd64");
    assert_eq!(entry["platform"]["os"], "linux");

    let manifest = json(blob(
        &layout,
        entry,
        "application/vnd.oci.image.manifest.v1+json",
    ));
    assert_eq!(manifest["schemaVersion"], 2);
    let config = json(blob(
        &layout,
        &manifest["config"],
        "application/vnd.oci.image.config.v1+json",
    ));
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 1, "one layer");
    let layer_gz = blob(
        &layout,
        &layers[0],
        "application/vnd.oci.image.layer.v1.tar+gzip",
    );
    let mut layer_tar = Vec::new();
    flate2::read::GzDecoder::new(layer_gz)
        .read_to_end(&mut layer_tar)
        .unwrap();
    assert_eq!(config["rootfs"]["type"], "layers");
    assert_eq!(
        config["rootfs"]["diff_ids"][0],
        sha256(&layer_tar),
        "diff ID"
    );
    assert_eq!(
        (config["architecture"].as_str(), config["os"].as_str()),
        (Some("amd64"), Some("linux"))
    );
    assert_eq!(
        config["config"]["Entrypoint"],
        serde_json::json!([STUB_PATH])
    );
    assert!(config["config"].get("Cmd").is_none(), "no Cmd: {config}");

    // The layer's files.
    let layer = entries(&layer_tar[..]);
    let names: Vec<&str> = layer.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "parapet.json",
            "parapet/",
            "parapet/disk0.img",
            "parapet/disk1.img",
            "parapet/guest",
            "parapet/needs-parapet-runc",
            "urunc.json"
        ]
    );
    let in_layer = |name: &str| layer[name].1.as_deref().unwrap();
    assert_eq!(layer["parapet/guest"].0, 0o755);
    assert_eq!(in_layer("parapet/guest"), std::fs::read(&kernel).unwrap());
    assert_eq!(layer["parapet/needs-parapet-runc"].0, 0o755);
    assert_eq!(layer["parapet/disk0.img"].0, 0o644);
    assert_eq!(in_layer("parapet/disk0.img"), disk0);
    assert_eq!(in_layer("parapet/disk1.img").len(), 128 * 1024);

    // One description, four ways: /parapet.json, the manifest's annotations, the config's
    // labels and (what urunc's schema holds of it) /urunc.json.
    let described = GuestConfig::from_json(in_layer("parapet.json")).unwrap();
    assert_eq!(described.kernel, KERNEL_PATH);
    assert_eq!(described.cmdline, "loglevel=warn answer=42");
    assert_eq!(described.memory.as_deref(), Some("32M"));
    let disks: Vec<(&str, bool)> = described
        .disks
        .iter()
        .map(|d| (d.path.as_str(), d.readonly))
        .collect();
    assert_eq!(
        disks,
        [("/parapet/disk0.img", true), ("/parapet/disk1.img", false)]
    );
    let annotations = string_map(&manifest["annotations"]);
    let labels = string_map(&config["config"]["Labels"]);
    assert_eq!(annotations, labels);
    assert_eq!(
        GuestConfig::from_annotations(&annotations)
            .unwrap()
            .as_ref(),
        Some(&described)
    );
    assert_eq!(annotations["com.urunc.unikernel.hypervisor"], "parapet");
    assert_eq!(annotations["com.urunc.unikernel.binary"], KERNEL_PATH);
    let urunc = GuestConfig::from_urunc_json(in_layer("urunc.json")).unwrap();
    assert_eq!(
        (urunc.kernel.as_str(), urunc.cmdline.as_str()),
        (KERNEL_PATH, "loglevel=warn answer=42")
    );
    assert_eq!(urunc.disks[0].path, "/parapet/disk0.img");

    // Unpacked as a runtime would: the description from the rootfs boots the guest.
    let rootfs = dir.join("rootfs");
    std::fs::create_dir(&rootfs).unwrap();
    tar::Archive::new(&layer_tar[..]).unpack(&rootfs).unwrap();
    let resolved = parapet_oci::resolve(&HashMap::new(), &rootfs).unwrap();
    assert_eq!(resolved, described);
    let host = |image_path: &str| rootfs.join(image_path.trim_start_matches('/'));
    let mut args = vec![
        "run".to_owned(),
        host(&resolved.kernel).display().to_string(),
        "--memory".into(),
        resolved.memory.clone().unwrap(),
        "--cmdline".into(),
        resolved.cmdline.clone(),
    ];
    for disk in &resolved.disks {
        args.push("--disk".into());
        let suffix = if disk.readonly { ",readonly" } else { "" };
        args.push(format!("{}{suffix}", host(&disk.path).display()));
    }
    let booted = parapet(&args);
    booted.assert_status(0).assert_no_panic();
    assert!(booted.stdout.contains("Hello from Parapet!"), "{booted}");

    // The entrypoint, run as an ordinary container runtime would, says what the image needs.
    stub_says_it_needs_parapet(&host(STUB_PATH));
}

fn stub_says_it_needs_parapet(stub: &Path) {
    let ran = run(Command::new(stub));
    ran.assert_status(126);
    assert!(ran.stdout.is_empty(), "{ran}");
    assert!(
        ran.stderr
            .starts_with("parapet: this image holds a Parapet guest kernel")
            && ran.stderr.trim_end().ends_with("parapet-runc")
            && ran.stderr.lines().count() == 1,
        "{ran}"
    );
}

#[test]
fn a_file_that_is_not_a_guest_is_refused_in_one_line() {
    let dir = TempDir::new("oci-image-bad");
    let script = dir.file("not-a-guest", b"#!/bin/sh\necho hi\n# padding padding\n");
    let out = dir.join("x.tar");
    let mut cmd = Command::new(host_binary("xtask", "xtask"));
    cmd.arg("oci-image").arg(&script).arg("--out").arg(&out);
    let refused = run(cmd);
    refused.assert_status(1);
    assert_eq!(refused.stderr_lines().len(), 1, "{refused}");
    assert!(
        refused.stderr.contains("is not an ELF64 x86-64 executable"),
        "{refused}"
    );
    assert!(!out.exists());

    let mut cmd = Command::new(host_binary("xtask", "xtask"));
    cmd.args(["oci-image", "no-such-guest"]);
    let refused = run(cmd);
    refused.assert_status(1);
    assert!(
        refused
            .stderr
            .contains("`no-such-guest` is neither a guest of this repository (")
            && refused.stderr.contains("hello"),
        "{refused}"
    );
}

//! Kubernetes pods through containerd's CRI with the `parapet` runtime class: this test is the
//! kubelet. It starts a containerd of its own with the CRI plugin (root, state, sockets, CNI
//! directories, runtime roots and the pods' logs in a temporary directory, the CRI's streaming
//! server on a free port of 127.0.0.1, the pods' cgroups under a parent of its own), configured by
//! runtime/deploy/containerd-cri.toml exactly as documented but for `BinaryName` and `Root`, and
//! talks to it over the CRI's gRPC API (the `k8s-cri` crate) as the kubelet does:
//! RunPodSandbox with the runtime handler `parapet`, CreateContainer, StartContainer,
//! ContainerStatus, ExecSync, StopContainer, StopPodSandbox, RemovePodSandbox.
//!
//! The pod sandbox's image is a pause program this test writes (a static x86-64 ELF of 129
//! bytes), which parapet-runc hands to runc; the containers' images are made by
//! `cargo xtask oci-image` from the hello, ticker and net-http guests, imported with
//! `ctr -n k8s.io images import`.
//!
//! containerd runs in a network namespace the test makes, with a "host" interface of its own, so
//! pods on the host's network are on that one, and the pod network (CNI's bridge plugin) is
//! inside it too: no pod can touch the machine's interfaces or meet another test's addresses.
//!
//! Needs root and Debian's `containerd` (containerd, ctr, containerd-shim-runc-v2), `runc` and
//! `containernetworking-plugins` packages, as CI has (`.ci/run` installs them, and
//! `protobuf-compiler`, which building `k8s-cri` needs). containerd 1.6's shims put their sockets
//! in `/run/containerd/s/`, named by a hash of the address; everything else stays in the
//! temporary directory.

use k8s_cri::v1 as cri;
use parapet_tests::{Output, TempDir, guest, host_binary, run, vmm, workspace_root};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cri::image_service_client::ImageServiceClient;
use cri::runtime_service_client::RuntimeServiceClient;

/// The documented containerd configuration, relative to the workspace.
const DEPLOY_CONFIG: &str = "runtime/deploy/containerd-cri.toml";
/// The line of [`DEPLOY_CONFIG`] naming the runtime binary, which the test points at its own.
const DEPLOY_BINARY: &str = "BinaryName = \"/usr/local/bin/parapet-runc\"";
/// The line of [`DEPLOY_CONFIG`] naming parapet-runc's state directory.
const DEPLOY_ROOT: &str = "Root = \"/run/containerd/parapet-runc\"";
/// The runtime handler, as a RuntimeClass names it (runtime/deploy/runtimeclass.yaml).
const HANDLER: &str = "parapet";
/// The containerd namespace of the CRI.
const K8S_NAMESPACE: &str = "k8s.io";
/// The sandbox image (`sandbox_image`): the pause program.
const PAUSE_IMAGE: &str = "localhost/parapet-test/pause:1";
/// `cargo xtask oci-image hello`.
const HELLO_IMAGE: &str = "localhost/parapet-test/hello:1";
/// `cargo xtask oci-image ticker`.
const TICKER_IMAGE: &str = "localhost/parapet-test/ticker:1";
/// `cargo xtask oci-image net-http`.
const NET_HTTP_IMAGE: &str = "localhost/parapet-test/net-http:1";
/// Where Debian's containernetworking-plugins puts the CNI plugins.
const CNI_PLUGINS: &str = "/usr/lib/cni";
/// The pod network: a bridge in containerd's network namespace (the test's own), so the
/// addresses meet nothing else.
const POD_SUBNET: &str = "198.51.100.0/24";
/// How long the test waits for something that normally takes well under a second: a safety
/// net, never a timing assertion.
const PATIENCE: Duration = Duration::from_secs(60);

/// runtime/deploy/containerd-cri.toml with `BinaryName` and `Root` substituted, between the
/// test's own settings, which keep every path in `dir`.
fn containerd_config(dir: &Path, runc: &Path) -> String {
    let deploy = std::fs::read_to_string(workspace_root().join(DEPLOY_CONFIG))
        .unwrap_or_else(|e| panic!("read {DEPLOY_CONFIG}: {e}"));
    let substitute = |text: &str, line: &str, with: String| {
        assert_eq!(
            text.matches(line).count(),
            1,
            "{DEPLOY_CONFIG} should have the line `{line}` once"
        );
        text.replace(line, &with)
    };
    let deploy = substitute(
        &deploy,
        DEPLOY_BINARY,
        format!("BinaryName = \"{}\"", runc.display()),
    );
    let deploy = substitute(
        &deploy,
        DEPLOY_ROOT,
        format!("Root = \"{}\"", dir.join("parapet-runc").display()),
    );
    let d = dir.display();
    format!(
        "# The test's settings: every path in {d}.\n\
         root = \"{d}/root\"\n\
         state = \"{d}/state\"\n\
         \n\
         # {DEPLOY_CONFIG}, BinaryName and Root substituted.\n\
         {deploy}\n\
         # The test's settings again.\n\
         [grpc]\n  address = \"{d}/c.sock\"\n\
         [ttrpc]\n  address = \"{d}/c.sock.ttrpc\"\n\
         [plugins.\"io.containerd.internal.v1.opt\"]\n  path = \"{d}/opt\"\n\
         [plugins.\"io.containerd.grpc.v1.cri\"]\n\
         \x20 sandbox_image = \"{PAUSE_IMAGE}\"\n\
         \x20 stream_server_address = \"127.0.0.1\"\n\
         \x20 stream_server_port = \"0\"\n\
         \x20 netns_mounts_under_state_dir = true\n\
         \x20 # The sandbox's oom_score_adj (-998) no lower than containerd's: root may lack\n\
         \x20 # CAP_SYS_RESOURCE (in a container, say), and runc then cannot lower it.\n\
         \x20 restrict_oom_score_adj = true\n\
         [plugins.\"io.containerd.grpc.v1.cri\".cni]\n\
         \x20 bin_dir = \"{d}/cni/bin\"\n\
         \x20 conf_dir = \"{d}/cni/conf\"\n\
         [plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc]\n\
         \x20 runtime_type = \"io.containerd.runc.v2\"\n\
         [plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc.options]\n\
         \x20 Root = \"{d}/runc-default\"\n"
    )
}

/// A private containerd with the CRI plugin ([`Node`]), and a CRI client of it.
struct Cri {
    rt: tokio::runtime::Runtime,
    runtime: RuntimeServiceClient<tonic::transport::Channel>,
    images: ImageServiceClient<tonic::transport::Channel>,
    node: Node,
}

impl std::ops::Deref for Cri {
    type Target = Node;
    fn deref(&self) -> &Node {
        &self.node
    }
}

/// The test's directory and the containerd running in it: on drop (from the moment the
/// directory exists, so a failure half-way through setting up leaves nothing either) everything
/// run there is ended (runc's containers, shims, VMMs, containerd) and unmounted, and its
/// cgroups are removed.
struct Node {
    daemon: Option<Child>,
    dir: TempDir,
}

impl Cri {
    fn start(tag: &str) -> Cri {
        for tool in ["containerd", "ctr", "containerd-shim-runc-v2", "runc"] {
            assert!(
                on_path(tool),
                "`{tool}` is not on PATH: the CRI test needs Debian's containerd and runc \
                 packages (apt-get install containerd runc) and root"
            );
        }
        // parapet-runc finds parapet beside itself.
        let runc = host_binary("parapet-runc", "parapet-runc");
        assert_eq!(runc.parent(), vmm().parent());

        let mut node = Node {
            daemon: None,
            dir: TempDir::new(&format!("cri-{tag}")),
        };
        let dir = &node.dir;
        for sub in ["cni/bin", "cni/conf", "pods"] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
        }
        let config = dir.file("config.toml", containerd_config(dir, &runc).as_bytes());
        // The pod network (for pods not on the host's): CNI's bridge and host-local plugins,
        // leases kept in the directory; containerd runs the loopback plugin on its own, from
        // the same directory.
        for plugin in ["bridge", "host-local", "loopback"] {
            let _ = std::os::unix::fs::symlink(
                Path::new(CNI_PLUGINS).join(plugin),
                dir.join("cni/bin").join(plugin),
            );
        }
        let cni = serde_json::json!({
            "cniVersion": "0.4.0",
            "name": "parapet-test",
            "plugins": [{
                "type": "bridge",
                "bridge": "cni-parapet0",
                "isGateway": true,
                "ipMasq": false,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{ "subnet": POD_SUBNET }]],
                    "routes": [{ "dst": "0.0.0.0/0" }],
                    "dataDir": dir.join("cni/leases"),
                },
            }],
        });
        dir.file(
            "cni/conf/10-parapet-test.conflist",
            cni.to_string().as_bytes(),
        );
        // containerd, and with it every pod, lives in a network namespace of the test's own
        // (`unshare --net=FILE` keeps it with a bind mount): a pod on "the host's network" is on
        // this one, and no pod can touch the machine's own interfaces.
        let netns = dir.file("netns", b"");
        let mut unshare = Command::new("unshare");
        unshare
            .arg(format!("--net={}", netns.display()))
            .arg("true");
        run(unshare).assert_status(0);
        // Its "host" interface, as a machine has one: up, an Ethernet address, an IPv4 address
        // (a documentation one: nothing is sent) and the default route. A runtime that took the
        // host's interface for a guest would take this one.
        for args in [
            "link set lo up",
            "link add host0 type veth peer name host0-peer",
            "addr add 192.0.2.2/24 dev host0",
            "link set host0-peer up",
            "link set host0 up",
            "route add default via 192.0.2.1 dev host0",
        ] {
            let mut ip = Command::new("nsenter");
            ip.arg(format!("--net={}", netns.display()))
                .arg("ip")
                .args(args.split(' '));
            run(ip).assert_status(0);
        }
        let log = std::fs::File::create(dir.join("containerd.log")).expect("containerd log");
        // nsenter joins the namespace and execs containerd: the child is containerd.
        let daemon = Command::new("nsenter")
            .arg(format!("--net={}", netns.display()))
            .arg("containerd")
            .arg("--config")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start containerd (the CRI test needs root)");
        node.daemon = Some(daemon);
        let dir = &node.dir;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let address = dir.join("c.sock");
        let deadline = Instant::now() + PATIENCE;
        while !address.exists() {
            assert!(
                Instant::now() < deadline,
                "containerd did not come up (the CRI test needs root)\n{}",
                log_tail(dir)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let channel = rt
            .block_on(
                tonic::transport::Endpoint::from_shared(format!("unix://{}", address.display()))
                    .unwrap()
                    .connect(),
            )
            .unwrap_or_else(|e| panic!("connect to {}: {e}", address.display()));
        let mut cri = Cri {
            rt,
            runtime: RuntimeServiceClient::new(channel.clone()),
            images: ImageServiceClient::new(channel),
            node,
        };
        // The CRI answers once its plugin has loaded; the runtime is then ready (the network
        // soon after, once it has read the CNI configuration).
        cri.wait_for("the CRI runtime to be ready", |cri| {
            let mut client = cri.runtime.clone();
            let status = cri
                .rt
                .block_on(client.status(cri::StatusRequest { verbose: false }))
                .ok()?
                .into_inner()
                .status?;
            status
                .conditions
                .iter()
                .any(|c| c.r#type == "RuntimeReady" && c.status)
                .then_some(())
        });
        cri.import_images();
        cri
    }

    /// The pause image, hello, ticker and net-http, imported into `k8s.io` and known to the CRI.
    fn import_images(&mut self) {
        let pause = self.dir.file(
            "pause.tar",
            &oci_layout(PAUSE_IMAGE, "pause", &pause_elf(), "/pause"),
        );
        let mut tarballs = vec![pause];
        for (name, reference) in [
            ("hello", HELLO_IMAGE),
            ("ticker", TICKER_IMAGE),
            ("net-http", NET_HTTP_IMAGE),
        ] {
            let out = self.dir.join(format!("{name}.tar"));
            let mut cmd = Command::new(host_binary("xtask", "xtask"));
            cmd.args(["oci-image"])
                .arg(guest(name))
                .arg("--out")
                .arg(&out)
                .args(["--name", reference]);
            run(cmd).assert_status(0);
            tarballs.push(out);
        }
        for tarball in tarballs {
            self.ctr(&["images", "import", tarball.to_str().unwrap()])
                .assert_status(0);
        }
        for reference in [PAUSE_IMAGE, HELLO_IMAGE, TICKER_IMAGE, NET_HTTP_IMAGE] {
            self.wait_for(&format!("the CRI to list {reference}"), |cri| {
                let mut client = cri.images.clone();
                let request = cri::ImageStatusRequest {
                    image: Some(image_spec(reference)),
                    verbose: false,
                };
                cri.rt
                    .block_on(client.image_status(request))
                    .ok()?
                    .into_inner()
                    .image
                    .map(|_| ())
            });
        }
    }

    /// `ctr --address … --namespace k8s.io ARGS`.
    fn ctr(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new("ctr");
        cmd.arg("--address")
            .arg(self.dir.join("c.sock"))
            .args(["--namespace", K8S_NAMESPACE])
            .args(args);
        run(cmd)
    }

    /// Polls `f` until it gives a value; fails the test after [`PATIENCE`].
    fn wait_for<T>(&self, what: &str, mut f: impl FnMut(&Cri) -> Option<T>) -> T {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(v) = f(self) {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "waited in vain for {what}\n{}",
                log_tail(&self.dir)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Runs one CRI call to completion.
    fn call<T>(
        &self,
        what: &str,
        f: impl AsyncFnOnce(
            RuntimeServiceClient<tonic::transport::Channel>,
        ) -> Result<tonic::Response<T>, tonic::Status>,
    ) -> Result<T, tonic::Status> {
        let client = self.runtime.clone();
        let result = self.rt.block_on(f(client)).map(tonic::Response::into_inner);
        if let Err(e) = &result {
            eprintln!("cri: {what}: {}", e.message());
        }
        result
    }

    /// RunPodSandbox with the `parapet` handler, the host's network and a log directory.
    fn run_pod(&self, name: &str, annotations: &[(&str, &str)]) -> (String, cri::PodSandboxConfig) {
        self.run_pod_on(name, annotations, cri::NamespaceMode::Node)
    }

    /// RunPodSandbox with the `parapet` handler and a log directory, on the host's network
    /// (`Node`) or a network of the pod's own from CNI (`Pod`).
    fn run_pod_on(
        &self,
        name: &str,
        annotations: &[(&str, &str)],
        network: cri::NamespaceMode,
    ) -> (String, cri::PodSandboxConfig) {
        let log_directory = self.dir.join("pods").join(name);
        std::fs::create_dir_all(&log_directory).unwrap();
        let config = cri::PodSandboxConfig {
            metadata: Some(cri::PodSandboxMetadata {
                name: name.into(),
                uid: format!("uid-{name}"),
                namespace: "default".into(),
                attempt: 0,
            }),
            // A pod on the host's network has the host's UTS namespace too, so no hostname of
            // its own (runc refuses one); the test's pods do without.
            hostname: String::new(),
            log_directory: log_directory.display().to_string(),
            annotations: annotations
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            linux: Some(cri::LinuxPodSandboxConfig {
                cgroup_parent: self.cgroup_parent(),
                security_context: Some(cri::LinuxSandboxSecurityContext {
                    namespace_options: Some(cri::NamespaceOption {
                        network: network as i32,
                        pid: cri::NamespaceMode::Pod as i32,
                        ipc: cri::NamespaceMode::Pod as i32,
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let request = cri::RunPodSandboxRequest {
            config: Some(config.clone()),
            runtime_handler: HANDLER.into(),
        };
        let id = self
            .call("RunPodSandbox", async move |mut c| {
                c.run_pod_sandbox(request).await
            })
            .unwrap_or_else(|e| panic!("RunPodSandbox {name}: {e}\n{}", log_tail(&self.dir)))
            .pod_sandbox_id;
        (id, config)
    }

    /// CreateContainer and StartContainer; returns the container's ID and its CRI log file.
    fn start_container(
        &self,
        pod: &(String, cri::PodSandboxConfig),
        name: &str,
        image: &str,
        args: &[&str],
        memory_limit: i64,
    ) -> (String, PathBuf) {
        let log_path = format!("{name}.log");
        let config = cri::ContainerConfig {
            metadata: Some(cri::ContainerMetadata {
                name: name.into(),
                attempt: 0,
            }),
            image: Some(image_spec(image)),
            args: args.iter().map(|a| a.to_string()).collect(),
            log_path: log_path.clone(),
            linux: Some(cri::LinuxContainerConfig {
                resources: Some(cri::LinuxContainerResources {
                    memory_limit_in_bytes: memory_limit,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let request = cri::CreateContainerRequest {
            pod_sandbox_id: pod.0.clone(),
            config: Some(config),
            sandbox_config: Some(pod.1.clone()),
        };
        let id = self
            .call("CreateContainer", async move |mut c| {
                c.create_container(request).await
            })
            .unwrap_or_else(|e| panic!("CreateContainer {name}: {e}\n{}", log_tail(&self.dir)))
            .container_id;
        let container_id = id.clone();
        self.call("StartContainer", async move |mut c| {
            c.start_container(cri::StartContainerRequest { container_id })
                .await
        })
        .unwrap_or_else(|e| panic!("StartContainer {name}: {e}\n{}", log_tail(&self.dir)));
        (id, Path::new(&pod.1.log_directory).join(log_path))
    }

    /// ContainerStatus (verbose: `info` holds containerd's view, with the PID).
    fn container_status(&self, id: &str) -> (cri::ContainerStatus, HashMap<String, String>) {
        let container_id = id.to_string();
        let response = self
            .call("ContainerStatus", async move |mut c| {
                c.container_status(cri::ContainerStatusRequest {
                    container_id,
                    verbose: true,
                })
                .await
            })
            .unwrap_or_else(|e| panic!("ContainerStatus {id}: {e}"));
        (response.status.expect("a status"), response.info)
    }

    /// Waits until the container is in `state`.
    fn wait_for_state(&self, id: &str, state: cri::ContainerState) -> cri::ContainerStatus {
        self.wait_for(&format!("container {id} to be {state:?}"), |cri| {
            let (status, _) = cri.container_status(id);
            (status.state == state as i32).then_some(status)
        })
    }

    /// StopPodSandbox and RemovePodSandbox.
    fn remove_pod(&self, id: &str) {
        let pod_sandbox_id = id.to_string();
        self.call("StopPodSandbox", async move |mut c| {
            c.stop_pod_sandbox(cri::StopPodSandboxRequest { pod_sandbox_id })
                .await
        })
        .unwrap_or_else(|e| panic!("StopPodSandbox {id}: {e}\n{}", log_tail(&self.dir)));
        let pod_sandbox_id = id.to_string();
        self.call("RemovePodSandbox", async move |mut c| {
            c.remove_pod_sandbox(cri::RemovePodSandboxRequest { pod_sandbox_id })
                .await
        })
        .unwrap_or_else(|e| panic!("RemovePodSandbox {id}: {e}\n{}", log_tail(&self.dir)));
    }

    /// Checks that nothing of the pods is left: no pod in the CRI, no VMM, no runc container, no
    /// parapet-runc state, no shim, nothing mounted in the test's directory.
    fn assert_nothing_left(&self) {
        let pods = self
            .call("ListPodSandbox", async move |mut c| {
                c.list_pod_sandbox(cri::ListPodSandboxRequest { filter: None })
                    .await
            })
            .unwrap()
            .items;
        assert!(pods.is_empty(), "pods left: {pods:?}");
        assert!(
            vmms(&self.dir).is_empty(),
            "VMMs left: {:?}",
            vmms(&self.dir)
        );
        let runc = self.runc_containers();
        assert!(runc.is_empty(), "runc containers left: {runc:?}");
        assert_eq!(
            self.parapet_runc_containers(),
            Vec::<String>::new(),
            "parapet-runc state left"
        );
        // containerd shuts a pod's shim down after the pod's removal; the shim may take a moment
        // to exit.
        let address = self.dir.join("c.sock").display().to_string();
        self.wait_for("the shims to exit", |_| {
            shims_of(&address).is_empty().then_some(())
        });
        let netns = self.netns().display().to_string();
        let mounts: Vec<String> = mounts_under(&self.dir)
            .into_iter()
            .filter(|m| *m != netns)
            .collect();
        assert_eq!(mounts, Vec::<String>::new(), "mounts left");
        // runc removed the sandbox's cgroups; only their parent, the test's, is left.
        let cgroups: Vec<PathBuf> = self
            .cgroups()
            .into_iter()
            .filter(|c| !c.ends_with(self.cgroup_parent().trim_start_matches('/')))
            .collect();
        assert!(cgroups.is_empty(), "cgroups left: {cgroups:?}");
    }

    /// `parapet-runc --root ROOT ARGS`, as the shim would call it.
    fn parapet_runc(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(host_binary("parapet-runc", "parapet-runc"));
        cmd.arg("--root").arg(self.parapet_runc_root()).args(args);
        run(cmd)
    }
}

impl Node {
    /// `parapet-runc`'s `--root` for the CRI's namespace (the shim adds the namespace).
    fn parapet_runc_root(&self) -> PathBuf {
        self.dir.join("parapet-runc").join(K8S_NAMESPACE)
    }

    /// Where parapet-runc's runc keeps the containers it was handed.
    fn runc_root(&self) -> PathBuf {
        self.parapet_runc_root().join("runc")
    }

    /// `runc --root RUNC_ROOT list` as (ID, PID, status); none if runc never ran.
    fn runc_containers(&self) -> Vec<(String, i64, String)> {
        if !self.runc_root().exists() {
            return Vec::new();
        }
        let mut cmd = Command::new("runc");
        cmd.arg("--root")
            .arg(self.runc_root())
            .args(["list", "--format", "json"]);
        let out = run(cmd);
        out.assert_status(0);
        let list: Value = serde_json::from_str(out.stdout.trim()).unwrap_or(Value::Null);
        list.as_array()
            .into_iter()
            .flatten()
            .map(|c| {
                (
                    c["id"].as_str().unwrap_or_default().to_string(),
                    c["pid"].as_i64().unwrap_or_default(),
                    c["status"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect()
    }

    /// The containers parapet-runc itself holds (its state directories, runc's left out).
    fn parapet_runc_containers(&self) -> Vec<String> {
        let mut ids: Vec<String> = std::fs::read_dir(self.parapet_runc_root())
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|name| name != "runc")
            .collect();
        ids.sort();
        ids
    }

    /// The pods' cgroup parent (the kubelet's `kubepods`), one of the test's own: runc makes the
    /// sandbox's cgroup under it.
    fn cgroup_parent(&self) -> String {
        format!("/{}", self.dir.file_name().unwrap().to_string_lossy())
    }

    /// Every cgroup directory under [`Node::cgroup_parent`] in each hierarchy, the parent's own
    /// included, deepest first.
    fn cgroups(&self) -> Vec<PathBuf> {
        fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
            for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    walk(&entry.path(), out);
                }
            }
            out.push(dir.to_path_buf());
        }
        let parent = self.cgroup_parent();
        let mut hierarchies = vec![PathBuf::from("/sys/fs/cgroup")];
        hierarchies.extend(
            std::fs::read_dir("/sys/fs/cgroup")
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.path()),
        );
        let mut out = Vec::new();
        for h in hierarchies {
            let dir = h.join(parent.trim_start_matches('/'));
            if dir.is_dir() {
                walk(&dir, &mut out);
            }
        }
        out
    }

    /// The network namespace containerd and the pods' "host network" are in.
    fn netns(&self) -> PathBuf {
        self.dir.join("netns")
    }

    /// [`Node::runc_containers`] for `Drop`: never panics.
    fn runc_containers_quiet(&self) -> Vec<(String, i64, String)> {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.runc_containers()))
            .unwrap_or_default()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        // runc's containers (the pause processes) outlive their shims: delete them with runc.
        for (id, _, _) in self.runc_containers_quiet() {
            let _ = Command::new("runc")
                .arg("--root")
                .arg(self.runc_root())
                .args(["delete", "--force", &id])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        // Shims (their command line names the address), VMMs and `parapet-runc init` (theirs
        // name a bundle): every process whose command line names the directory, but containerd.
        let daemon = self.daemon.as_ref().map(|d| d.id() as i32);
        for pid in pids_whose_cmdline_contains(&self.dir.display().to_string()) {
            if Some(pid) != daemon
                && let Some(pid) = rustix::process::Pid::from_raw(pid)
            {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            }
        }
        if let Some(daemon) = &mut self.daemon {
            if let Some(pid) = rustix::process::Pid::from_raw(daemon.id() as i32) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
            }
            let deadline = Instant::now() + Duration::from_secs(10);
            while daemon.try_wait().ok().flatten().is_none() {
                if Instant::now() > deadline {
                    let _ = daemon.kill();
                    let _ = daemon.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        // The pods' mounts and the network namespace's.
        for target in mounts_under(&self.dir) {
            let _ = Command::new("umount").args(["--lazy", &target]).status();
        }
        for cgroup in self.cgroups() {
            let _ = std::fs::remove_dir(cgroup);
        }
    }
}

fn image_spec(reference: &str) -> cri::ImageSpec {
    cri::ImageSpec {
        image: reference.into(),
        ..Default::default()
    }
}

fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .any(|d| d.join(tool).is_file())
}

fn log_tail(dir: &Path) -> String {
    let log = std::fs::read_to_string(dir.join("containerd.log")).unwrap_or_default();
    let tail: Vec<&str> = log.lines().rev().take(30).collect();
    let tail: Vec<&str> = tail.into_iter().rev().collect();
    format!("containerd log (tail):\n{}", tail.join("\n"))
}

/// Processes whose command line contains `needle`.
fn pids_whose_cmdline_contains(needle: &str) -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| argv(*pid).is_some_and(|a| a.join(" ").contains(needle)) && !is_zombie(*pid))
        .collect()
}

/// A process's arguments, if it still exists.
fn argv(pid: i32) -> Option<Vec<String>> {
    let bytes = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(
        bytes
            .split(|&b| b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect(),
    )
}

fn is_zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| s.contains(") Z "))
}

/// The `parapet` VMMs running a guest from a bundle under `dir`.
fn vmms(dir: &Path) -> Vec<i32> {
    pids_whose_cmdline_contains(&dir.join("state").display().to_string())
        .into_iter()
        .filter(|&pid| argv(pid).is_some_and(|a| a[0].ends_with("/parapet")))
        .collect()
}

/// The shims serving the containerd at `address`.
fn shims_of(address: &str) -> Vec<i32> {
    pids_whose_cmdline_contains(address)
        .into_iter()
        .filter(|&pid| argv(pid).is_some_and(|a| a[0].ends_with("containerd-shim-runc-v2")))
        .collect()
}

/// Mount points in or under `dir`, deepest first.
fn mounts_under(dir: &Path) -> Vec<String> {
    let prefix = dir.display().to_string();
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let mut targets: Vec<String> = mounts
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .filter(|t| t.starts_with(&prefix))
        .map(str::to_owned)
        .collect();
    targets.sort_by_key(|t| std::cmp::Reverse(t.len()));
    targets
}

/// The text of a CRI log file's lines (`TIMESTAMP STREAM TAG TEXT`, the kubelet's format),
/// checking each line's shape; `stream` picks `stdout` or `stderr`.
fn cri_log(path: &Path, stream: &str) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    // Whole lines only: containerd may be writing the last one.
    text.split_inclusive('\n')
        .filter_map(|line| line.strip_suffix('\n'))
        .filter_map(|line| {
            let mut fields = line.splitn(4, ' ');
            let (time, s, tag) = (fields.next()?, fields.next()?, fields.next()?);
            let text = fields.next().unwrap_or_default();
            assert!(
                time.len() > 20 && time.as_bytes()[4] == b'-' && time.as_bytes()[10] == b'T',
                "{path:?}: not an RFC 3339 time stamp: {line:?}"
            );
            assert!(
                matches!(s, "stdout" | "stderr") && matches!(tag, "F" | "P"),
                "{path:?}: not a CRI log line: {line:?}"
            );
            (s == stream).then(|| text.to_string())
        })
        .collect()
}

/// A static x86-64 Linux program that calls pause(2) for ever, like Kubernetes' pause image: an
/// ELF header, one program header loading the whole file (read and execute) at 4 MiB, and nine
/// bytes of code. runc kills it with SIGKILL when the pod stops.
fn pause_elf() -> Vec<u8> {
    const BASE: u64 = 0x40_0000;
    const EHDR: u64 = 64;
    const PHDR: u64 = 56;
    const CODE: [u8; 9] = [
        0xb8, 34, 0, 0, 0, // mov eax, 34 (SYS_pause)
        0x0f, 0x05, // syscall
        0xeb, 0xf7, // jmp -9: back to the mov
    ];
    let size = EHDR + PHDR + CODE.len() as u64;
    let mut elf = Vec::with_capacity(size as usize);
    elf.extend(b"\x7fELF\x02\x01\x01\0"); // 64-bit, little-endian, version 1, System V
    elf.extend([0; 8]);
    elf.extend(2u16.to_le_bytes()); // ET_EXEC
    elf.extend(0x3eu16.to_le_bytes()); // EM_X86_64
    elf.extend(1u32.to_le_bytes()); // EV_CURRENT
    elf.extend((BASE + EHDR + PHDR).to_le_bytes()); // entry: the code, after the headers
    elf.extend(EHDR.to_le_bytes()); // program headers right after this one
    elf.extend(0u64.to_le_bytes()); // no section headers
    elf.extend(0u32.to_le_bytes()); // flags
    elf.extend((EHDR as u16).to_le_bytes());
    elf.extend((PHDR as u16).to_le_bytes());
    elf.extend(1u16.to_le_bytes()); // one program header
    elf.extend(64u16.to_le_bytes()); // section header size
    elf.extend([0; 4]); // no sections, no section names
    elf.extend(1u32.to_le_bytes()); // PT_LOAD
    elf.extend(5u32.to_le_bytes()); // PF_R | PF_X
    elf.extend(0u64.to_le_bytes()); // from file offset 0
    elf.extend(BASE.to_le_bytes()); // virtual address
    elf.extend(BASE.to_le_bytes()); // physical address
    elf.extend(size.to_le_bytes()); // size in the file
    elf.extend(size.to_le_bytes()); // size in memory
    elf.extend(0x1000u64.to_le_bytes()); // alignment
    elf.extend(CODE);
    assert_eq!(elf.len() as u64, size);
    elf
}

fn sha256(bytes: &[u8]) -> String {
    let hex: String = Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256:{hex}")
}

/// An OCI image layout tarball, as `ctr images import` takes it: one uncompressed layer holding
/// the executable `/name`, which is the entry point, for linux/amd64, named `reference`.
fn oci_layout(reference: &str, name: &str, program: &[u8], entrypoint: &str) -> Vec<u8> {
    fn tar(files: &[(&str, u32, &[u8])]) -> Vec<u8> {
        let mut builder = ::tar::Builder::new(Vec::new());
        for (path, mode, bytes) in files {
            let mut header = ::tar::Header::new_ustar();
            header.set_size(bytes.len() as u64);
            header.set_mode(*mode);
            header.set_mtime(0);
            header.set_uid(0);
            header.set_gid(0);
            builder.append_data(&mut header, path, *bytes).unwrap();
        }
        builder.into_inner().unwrap()
    }
    let descriptor = |media_type: &str, bytes: &[u8]| serde_json::json!({ "mediaType": media_type, "digest": sha256(bytes), "size": bytes.len() });
    let layer = tar(&[(name, 0o755, program)]);
    let config = serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": { "Entrypoint": [entrypoint] },
        "rootfs": { "type": "layers", "diff_ids": [sha256(&layer)] },
    })
    .to_string();
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": descriptor("application/vnd.oci.image.config.v1+json", config.as_bytes()),
        "layers": [descriptor("application/vnd.oci.image.layer.v1.tar", &layer)],
    })
    .to_string();
    let mut manifest_descriptor = descriptor(
        "application/vnd.oci.image.manifest.v1+json",
        manifest.as_bytes(),
    );
    manifest_descriptor["platform"] = serde_json::json!({ "architecture": "amd64", "os": "linux" });
    manifest_descriptor["annotations"] = serde_json::json!({
        "io.containerd.image.name": reference,
        "org.opencontainers.image.ref.name": reference.rsplit_once(':').unwrap().1,
    });
    let index =
        serde_json::json!({ "schemaVersion": 2, "manifests": [manifest_descriptor] }).to_string();
    let blob = |bytes: &[u8]| format!("blobs/sha256/{}", &sha256(bytes)["sha256:".len()..]);
    let (layer_blob, config_blob, manifest_blob) = (
        blob(&layer),
        blob(config.as_bytes()),
        blob(manifest.as_bytes()),
    );
    tar(&[
        ("oci-layout", 0o644, br#"{"imageLayoutVersion":"1.0.0"}"#),
        ("index.json", 0o644, index.as_bytes()),
        (&layer_blob, 0o644, &layer),
        (&config_blob, 0o644, config.as_bytes()),
        (&manifest_blob, 0o644, manifest.as_bytes()),
    ])
}

/// `containerd config dump` of the test's configuration shows the runtime handler `parapet` of
/// runtime/deploy/containerd-cri.toml: the runc shim, parapet-runc as its binary, its state
/// directory and the pod annotations it lets through.
#[test]
fn the_documented_containerd_config_defines_the_parapet_handler() {
    assert!(on_path("containerd"), "the CRI test needs containerd");
    let dir = TempDir::new("cri-config");
    let runc = Path::new("/opt/test/parapet-runc");
    let config = dir.file("config.toml", containerd_config(&dir, runc).as_bytes());
    let mut cmd = Command::new("containerd");
    cmd.arg("--config").arg(&config).args(["config", "dump"]);
    let dump = run(cmd);
    dump.assert_status(0);
    // The table of one runtime, up to the next table that is not inside it.
    let table = |name: &str| -> String {
        let header = format!("[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.{name}]");
        let start = dump
            .stdout
            .find(&header)
            .unwrap_or_else(|| panic!("no {header} in the dump:\n{}", dump.stdout));
        let inner = &header[..header.len() - 1];
        dump.stdout[start..]
            .lines()
            .enumerate()
            .take_while(|(i, l)| *i == 0 || !l.trim_start().starts_with('[') || l.contains(inner))
            .map(|(_, l)| l.trim())
            .collect::<Vec<_>>()
            .join("\n")
    };
    let parapet = table(HANDLER);
    for line in [
        "runtime_type = \"io.containerd.runc.v2\"".to_string(),
        "pod_annotations = [\"org.parapet.guest.*\", \"com.urunc.unikernel.*\"]".to_string(),
        format!("BinaryName = \"{}\"", runc.display()),
        format!("Root = \"{}\"", dir.join("parapet-runc").display()),
    ] {
        assert!(
            parapet.lines().any(|l| l == line),
            "`{line}` is not in the dump's parapet runtime:\n{parapet}"
        );
    }
    // The RuntimeClass names this handler.
    let class =
        std::fs::read_to_string(workspace_root().join("runtime/deploy/runtimeclass.yaml")).unwrap();
    assert!(
        class.lines().any(|l| l == format!("handler: {HANDLER}")),
        "{class}"
    );
    // docs/containers.md shows the file as it is.
    let deploy = std::fs::read_to_string(workspace_root().join(DEPLOY_CONFIG)).unwrap();
    let docs = std::fs::read_to_string(workspace_root().join("docs/containers.md")).unwrap();
    assert!(
        docs.contains(&format!("```toml\n{deploy}```\n")),
        "docs/containers.md (Kubernetes) should show {DEPLOY_CONFIG} verbatim"
    );
    // And the test's own settings took: the sandbox image and a directory of the test.
    assert!(
        dump.stdout
            .contains(&format!("sandbox_image = \"{PAUSE_IMAGE}\"")),
        "{}",
        dump.stdout
    );
    assert!(
        dump.stdout
            .contains(&format!("conf_dir = \"{}/cni/conf\"", dir.display())),
        "{}",
        dump.stdout
    );
}

/// A pod of the `parapet` runtime class: its sandbox runs under runc, beside it the hello guest
/// runs as a container, exits 0 and its greeting is in the CRI log; then the pod goes and leaves
/// nothing behind.
#[test]
fn a_pod_of_the_parapet_runtime_class_runs_hello() {
    let cri = Cri::start("hello");
    let pod = cri.run_pod("hello", &[]);

    // The sandbox (pause) was handed to runc: runc runs it, parapet-runc holds nothing of it.
    let runc = cri.runc_containers();
    assert!(
        runc.iter()
            .any(|(id, pid, status)| *id == pod.0 && status == "running" && *pid > 0),
        "runc does not run the sandbox {}: {runc:?}",
        pod.0
    );
    let (_, pause_pid, _) = runc.iter().find(|c| c.0 == pod.0).unwrap();
    assert_eq!(
        argv(*pause_pid as i32).as_deref(),
        Some(&["/pause".to_string()][..])
    );
    assert!(!cri.parapet_runc_containers().contains(&pod.0));
    let cgroups = cri.cgroups();
    assert!(
        cgroups.iter().any(|c| c.ends_with(&pod.0)),
        "runc made no cgroup for the sandbox under {}: {cgroups:?}",
        cri.cgroup_parent()
    );
    // parapet-runc passes what it is asked about runc's containers on to runc, including the
    // commands it has not got itself.
    let state = cri.parapet_runc(&["state", &pod.0]);
    state.assert_status(0);
    let state: Value = serde_json::from_str(&state.stdout).unwrap();
    assert_eq!(
        (&state["status"], &state["pid"]),
        (&"running".into(), &(*pause_pid).into())
    );
    cri.parapet_runc(&["pause", &pod.0]).assert_status(0);
    let paused = cri.runc_containers();
    assert!(
        paused.iter().any(|c| c.0 == pod.0 && c.2 == "paused"),
        "{paused:?}"
    );
    cri.parapet_runc(&["resume", &pod.0]).assert_status(0);
    let resumed = cri.runc_containers();
    assert!(
        resumed.iter().any(|c| c.0 == pod.0 && c.2 == "running"),
        "{resumed:?}"
    );

    let (id, log) = cri.start_container(&pod, "hello", HELLO_IMAGE, &[], 0);
    let status = cri.wait_for_state(&id, cri::ContainerState::ContainerExited);
    assert_eq!(
        (status.exit_code, status.reason.as_str()),
        (0, "Completed"),
        "{status:?}"
    );
    // The guest's console, through the VMM's stdout, in the kubelet's log format.
    let stdout = cri_log(&log, "stdout");
    assert!(
        stdout
            .iter()
            .any(|l| l.starts_with("Hello from Parapet! platform=")),
        "{log:?}: {stdout:?}"
    );
    // The container was never runc's.
    assert!(cri.runc_containers().iter().all(|c| c.0 != id));

    cri.remove_pod(&pod.0);
    cri.assert_nothing_left();
}

/// A pod with Parapet pod annotations (which the documented config lets through to the runtime)
/// and two ticker containers: one takes its command line from the annotations, the other from
/// its `args`, with a memory limit. The second runs until stopped: its process is the VMM, with
/// the limit as guest RAM; `exec` into it fails with one line; StopContainer ends it.
#[test]
fn pod_annotations_args_and_the_memory_limit_reach_the_guest() {
    let cri = Cri::start("args");
    let annotations = [
        ("org.parapet.guest.kernel", "/parapet/guest"),
        ("org.parapet.guest.cmdline", "ticks=4 pause_ms=1"),
        ("example.com/not-for-the-runtime", "1"),
    ];
    let pod = cri.run_pod("ticker", &annotations);
    // The sandbox gets the pod's annotations too, and still goes to runc.
    assert!(
        cri.runc_containers()
            .iter()
            .any(|(id, _, status)| *id == pod.0 && status == "running"),
        "{:?}",
        cri.runc_containers()
    );

    // No args: the command line is the annotation's (ticker's own default is 2 ticks).
    let (annotated, log) = cri.start_container(&pod, "annotated", TICKER_IMAGE, &[], 0);
    let status = cri.wait_for_state(&annotated, cri::ContainerState::ContainerExited);
    assert_eq!(status.exit_code, 0, "{status:?}");
    let ticks: Vec<String> = cri_log(&log, "stdout")
        .into_iter()
        .filter(|l| l.starts_with("tick "))
        .collect();
    assert_eq!(ticks.len(), 4, "{ticks:?}");
    assert!(ticks[3].starts_with("tick 4 at "), "{ticks:?}");

    // args replace the command line; 40 MiB and a bit is 40 MiB of guest RAM.
    let args = ["ticks=1000000", "pause_ms=20"];
    let limit = (40 << 20) + 4096;
    let (limited, log) = cri.start_container(&pod, "limited", TICKER_IMAGE, &args, limit);
    cri.wait_for_state(&limited, cri::ContainerState::ContainerRunning);
    cri.wait_for("the fifth tick", |_| {
        cri_log(&log, "stdout")
            .iter()
            .any(|l| l.starts_with("tick 5 at "))
            .then_some(())
    });
    let (_, info) = cri.container_status(&limited);
    let info: Value = serde_json::from_str(&info["info"]).unwrap();
    let pid = info["pid"].as_i64().expect("containerd knows the PID") as i32;
    let vmm_argv = argv(pid).expect("the container's process runs");
    assert!(vmm_argv[0].ends_with("/parapet"), "{vmm_argv:?}");
    assert!(
        vmm_argv[2].ends_with("/rootfs/parapet/guest"),
        "{vmm_argv:?}"
    );
    let joined = vmm_argv.join(" ");
    assert!(
        joined.contains("--memory 40M") && joined.contains("--cmdline ticks=1000000 pause_ms=20"),
        "{vmm_argv:?}"
    );
    // The pod is on the host's network (containerd's namespace here): the container's spec names
    // the sandbox's namespace, which is the host's, and parapet-runc takes none of its
    // interfaces for the guest.
    assert!(!joined.contains("--net"), "{vmm_argv:?}");
    let links = std::fs::read_to_string(format!("/proc/{pid}/net/dev")).unwrap();
    assert!(!links.contains("ptap0"), "{links}");
    assert_eq!(
        std::fs::metadata(format!("/proc/{pid}/ns/net"))
            .unwrap()
            .ino(),
        std::fs::metadata(cri.netns()).unwrap().ino(),
        "the VMM is not in containerd's network namespace"
    );
    // The VMM is in the container's cgroup (under the pod's parent) in every hierarchy, alone,
    // so containerd's statistics of the container are the VMM's.
    let own = format!("{}/{limited}", cri.cgroup_parent());
    let cgroup_lines = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    assert!(
        cgroup_lines
            .lines()
            .all(|l| l.ends_with(&format!(":{own}"))),
        "{cgroup_lines}"
    );
    for dir in cri.cgroups().iter().filter(|d| d.ends_with(&limited)) {
        let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap();
        assert_eq!(procs.trim(), pid.to_string(), "{}", dir.display());
    }
    let container_id = limited.clone();
    let stats = cri
        .call("ContainerStats", async move |mut c| {
            c.container_stats(cri::ContainerStatsRequest { container_id })
                .await
        })
        .unwrap()
        .stats
        .expect("statistics");
    let memory = stats.memory.expect("memory statistics");
    let usage = memory.usage_bytes.expect("memory usage").value;
    assert!(usage > 0, "{memory:?}");
    // parapet-runc holds it, and has the annotations that were let through.
    let state: Value = serde_json::from_slice(
        &std::fs::read(cri.parapet_runc_root().join(&limited).join("state.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(state["pid"], pid);
    let kept = &state["annotations"];
    assert_eq!(kept["org.parapet.guest.kernel"], "/parapet/guest");
    assert_eq!(kept["io.kubernetes.cri.container-type"], "container");
    assert!(
        kept.get("example.com/not-for-the-runtime").is_none(),
        "{kept}"
    );

    // exec: there is nothing in a guest to exec; one line says so, and the guest runs on.
    let container_id = limited.clone();
    let exec = cri.call("ExecSync", async move |mut c| {
        c.exec_sync(cri::ExecSyncRequest {
            container_id,
            cmd: vec!["/bin/sh".into()],
            timeout: 30,
        })
        .await
    });
    let err = exec.expect_err("exec into a guest");
    assert!(
        err.message()
            .contains("`exec` is not supported by parapet-runc: a Parapet container is one guest")
            && !err.message().contains('\n'),
        "{}",
        err.message()
    );
    let (status, _) = cri.container_status(&limited);
    assert_eq!(
        status.state,
        cri::ContainerState::ContainerRunning as i32,
        "{status:?}"
    );

    // StopContainer: SIGTERM, a shutdown request the ticker honours: it says so and exits 0.
    let container_id = limited.clone();
    cri.call("StopContainer", async move |mut c| {
        c.stop_container(cri::StopContainerRequest {
            container_id,
            timeout: 30,
        })
        .await
    })
    .unwrap();
    let status = cri.wait_for_state(&limited, cri::ContainerState::ContainerExited);
    assert_eq!(status.exit_code, 0, "{status:?}");
    let lines = cri_log(&log, "stdout");
    assert!(
        lines.iter().any(|l| l == "ticker: shutdown requested"),
        "{lines:?}"
    );

    cri.remove_pod(&pod.0);
    cri.assert_nothing_left();
}

/// A pod on a network of its own: CNI's bridge plugin gives the sandbox's namespace an address,
/// parapet-runc hands that interface to the net-http guest (a TAP and redirects, `ip=`/`gw=` on
/// its command line), and the guest answers HTTP at the pod's IP; the pod's removal leaves
/// nothing, the network's plumbing included.
#[test]
fn a_pod_on_a_cni_network_serves_http_at_its_ip() {
    for plugin in ["bridge", "host-local", "loopback"] {
        assert!(
            Path::new(CNI_PLUGINS).join(plugin).is_file(),
            "no CNI plugin {CNI_PLUGINS}/{plugin}: the CRI test needs Debian's \
             containernetworking-plugins package"
        );
    }
    let cri = Cri::start("cni");
    cri.wait_for(
        "the CRI's network to be ready (the CNI configuration)",
        |cri| {
            let mut client = cri.runtime.clone();
            let status = cri
                .rt
                .block_on(client.status(cri::StatusRequest { verbose: false }))
                .ok()?
                .into_inner()
                .status?;
            status
                .conditions
                .iter()
                .any(|c| c.r#type == "NetworkReady" && c.status)
                .then_some(())
        },
    );
    let pod = cri.run_pod_on("web", &[], cri::NamespaceMode::Pod);
    let pod_sandbox_id = pod.0.clone();
    let status = cri
        .call("PodSandboxStatus", async move |mut c| {
            c.pod_sandbox_status(cri::PodSandboxStatusRequest {
                pod_sandbox_id,
                verbose: false,
            })
            .await
        })
        .unwrap()
        .status
        .expect("a status");
    let ip = status.network.expect("the pod's network").ip;
    assert!(ip.starts_with("198.51.100."), "the pod's IP: {ip:?}");

    // requests=1: the guest powers off after one answer; parapet-runc appends ip= and gw=.
    let (web, log) = cri.start_container(&pod, "web", NET_HTTP_IMAGE, &["requests=1"], 0);
    cri.wait_for("net-http to listen", |_| {
        cri_log(&log, "stdout")
            .iter()
            .any(|l| l.starts_with(&format!("net-http: listening on http://{ip}:80/")))
            .then_some(())
    });
    let (_, info) = cri.container_status(&web);
    let info: Value = serde_json::from_str(&info["info"]).unwrap();
    let pid = info["pid"].as_i64().expect("containerd knows the PID") as i32;
    let joined = argv(pid).expect("the VMM runs").join(" ");
    assert!(
        joined.contains(&format!("--cmdline requests=1 ip={ip}/24 gw=198.51.100.1"))
            && joined.contains("--net fd="),
        "{joined}"
    );
    // curl from containerd's namespace, where the bridge is: the guest answers at the pod's IP.
    let page = cri.wait_for("an answer from the pod's IP", |cri| {
        let mut curl = Command::new("nsenter");
        curl.arg(format!("--net={}", cri.netns().display()))
            .args(["curl", "-s", "-m", "5"])
            .arg(format!("http://{ip}/"));
        let out = run(curl);
        (out.status == Some(0)).then_some(out.stdout)
    });
    assert!(page.contains("Hello from Parapet"), "{page}");
    let status = cri.wait_for_state(&web, cri::ContainerState::ContainerExited);
    assert_eq!(status.exit_code, 0, "{status:?}");
    let stdout = cri_log(&log, "stdout");
    assert!(
        stdout.iter().any(|l| l == "net-http: GET / -> 200")
            && stdout.iter().any(|l| l == "net-http: served 1 requests"),
        "{stdout:?}"
    );

    cri.remove_pod(&pod.0);
    cri.assert_nothing_left();
    // CNI took back the address and the pod's end of the bridge.
    let leases: Vec<_> = std::fs::read_dir(cri.dir.join("cni/leases/parapet-test"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("198.51.100."))
        .collect();
    assert!(leases.is_empty(), "leases left: {leases:?}");
    let mut links = Command::new("nsenter");
    links.arg(format!("--net={}", cri.netns().display())).args([
        "ip",
        "-o",
        "link",
        "show",
        "master",
        "cni-parapet0",
    ]);
    let links = run(links);
    links.assert_status(0);
    assert_eq!(links.stdout.trim(), "", "ports left on the bridge");
}

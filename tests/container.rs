//! The container image of `deploy/docker/`, built and run for real with podman.
//!
//! No image registry is reachable here, so the Dockerfile's two base images are made locally
//! under their exact names by `tests/container/base-images.sh` (debootstrap's Debian bookworm
//! with this machine's Rust toolchain for `rust:1-slim-bookworm`; glibc, libgcc_s, libstdc++,
//! OpenSSL's library, tzdata and the CA bundle with a `nonroot` user for
//! `gcr.io/distroless/cc-debian12:nonroot`), and kept between runs in a podman storage of the
//! tests' own under `~/.cache/http_status_exporter-container/`. The Dockerfile is then built as
//! users build it, from the repository root, with the network cut off (`--network=none`): the
//! crates come from `cargo vendor`, handed to the build's `RUN` steps by a read-only volume at
//! `/.cargo` (cargo reads `/.cargo/config.toml` above the build's work directory), so the
//! Dockerfile and its ignore file are the ones users get.
//!
//! The image is run read-only (`--read-only`, no tmpfs either) with a targets file mounted
//! over the default and its port published on a free loopback port, and the test checks that
//! `/-/healthy` answers 200, that a scrape probes an nginx on the host's loopback (reached
//! through slirp4netns, whose 10.0.2.2 is the host's 127.0.0.1, so no traffic leaves the
//! machine's loopback), that the process runs as uid 65532 on a read-only root, that the
//! image's own HEALTHCHECK passes under `podman healthcheck run`, that SIGTERM (`podman stop`)
//! ends it with status 0 within the grace period, and that the image is under 60 MB.
//! The exporter service of `deploy/docker/compose.yaml` is run the same way from what the file
//! says (its command, volume, port and restart policy), with only the host port swapped for a
//! free one; its Prometheus and Grafana services need images that cannot be had here.
//!
//! Every container carries a label with the test's pid and is removed by a guard, so a failed
//! assertion still cleans up; containers of an earlier run that died are removed at start.

mod common;

use std::fs::File;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::LazyLock;
use std::time::{Duration, Instant};

/// The builder stage's base image, as the Dockerfile's `FROM rust:1-slim-bookworm` resolves.
const RUST_IMAGE: &str = "docker.io/library/rust:1-slim-bookworm";
/// The runtime stage's base image.
const CC_IMAGE: &str = "gcr.io/distroless/cc-debian12:nonroot";
/// The largest image we ship, in bytes (podman's sizes are decimal megabytes).
const SIZE_LIMIT: u64 = 60_000_000;
/// Seconds `podman stop` waits after SIGTERM before SIGKILL (Docker's default too).
const STOP_GRACE: u64 = 10;
/// The uid and gid of distroless's `nonroot` user, which the image runs as.
const NONROOT: u32 = 65532;
/// The container port the image listens on (its EXPOSE, CMD and HEALTHCHECK).
const PORT: u16 = 9723;
/// The label every container of these tests carries: the pid of the test process.
const LABEL: &str = "http_status_exporter.test.pid";
/// How the containers reach the host: slirp4netns maps 10.0.2.2 to the host's loopback.
const NETWORK: &str = "slirp4netns:allow_host_loopback=true";
/// The host's 127.0.0.1 as the containers see it on that network.
const HOST_LOOPBACK: &str = "10.0.2.2";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Podman on a storage of these tests' own: its own containers.conf, storage.conf and
/// registries.conf, written before the first podman command on the storage and the same on
/// every run (podman records the storage settings and waits 20 s on every command that
/// disagrees with them).
struct Podman {
    /// The podman program.
    program: PathBuf,
    /// The cache directory: storage, run state, configs and the lock.
    dir: PathBuf,
}

impl Podman {
    /// Check every tool the test drives (failing with the Debian package to install), then
    /// write the configs.
    fn new() -> Podman {
        let program = common::find_program("podman", "podman");
        for (tool, package) in [
            ("runc", "runc"),
            ("conmon", "conmon"),
            ("slirp4netns", "slirp4netns"),
            ("debootstrap", "debootstrap"),
            ("tar", "tar"),
        ] {
            common::find_program(tool, package);
        }
        let cache = std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache")))
            .expect("neither XDG_CACHE_HOME nor HOME is set");
        let dir = cache.join("http_status_exporter-container");
        for sub in ["storage", "run", "tmp", "cni", "conf"] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
        }
        let d = dir.display();
        // crun fails on this machine's cgroup layout and the default rlimits are refused;
        // there is no systemd or journald to manage cgroups or take events and logs.
        write_if_changed(
            &dir.join("conf/containers.conf"),
            &format!(
                "[containers]\n\
                 default_ulimits = [\"nofile=4096:4096\", \"nproc=4096:4096\"]\n\
                 log_driver = \"k8s-file\"\n\
                 [engine]\n\
                 runtime = \"runc\"\n\
                 cgroup_manager = \"cgroupfs\"\n\
                 events_logger = \"none\"\n\
                 tmp_dir = \"{d}/tmp\"\n\
                 [network]\n\
                 network_config_dir = \"{d}/cni\"\n"
            ),
        );
        write_if_changed(
            &dir.join("conf/storage.conf"),
            &format!(
                "[storage]\ndriver = \"overlay\"\ngraphroot = \"{d}/storage\"\nrunroot = \"{d}/run\"\n"
            ),
        );
        // Short names as Docker resolves them: `rust` is docker.io/library/rust.
        write_if_changed(
            &dir.join("conf/registries.conf"),
            "unqualified-search-registries = [\"docker.io\"]\nshort-name-mode = \"permissive\"\n",
        );
        Podman { program, dir }
    }

    /// The environment that points podman (and the base-image script) at this storage.
    fn envs(&self) -> [(&'static str, PathBuf); 3] {
        [
            ("CONTAINERS_CONF", self.dir.join("conf/containers.conf")),
            (
                "CONTAINERS_STORAGE_CONF",
                self.dir.join("conf/storage.conf"),
            ),
            (
                "CONTAINERS_REGISTRIES_CONF",
                self.dir.join("conf/registries.conf"),
            ),
        ]
    }

    fn command(&self) -> Command {
        let mut c = Command::new(&self.program);
        c.envs(self.envs()).stdin(Stdio::null());
        c
    }

    /// Run podman with `args`; its output, whatever the exit status.
    fn output(&self, args: &[&str]) -> Output {
        self.command().args(args).output().unwrap()
    }

    /// Run podman with `args`, which must succeed; its standard output, trimmed.
    fn run(&self, args: &[&str]) -> String {
        let out = self.output(args);
        assert!(
            out.status.success(),
            "podman {} failed ({}):\n{}{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// Remove containers of earlier runs whose test process is gone.
    fn remove_orphans(&self) {
        let list = self.run(&[
            "ps",
            "--all",
            "--filter",
            &format!("label={LABEL}"),
            "--format",
            &format!("{{{{.ID}}}} {{{{index .Labels \"{LABEL}\"}}}}"),
        ]);
        for line in list.lines() {
            let mut words = line.split_whitespace();
            let (Some(id), Some(pid)) = (words.next(), words.next()) else {
                continue;
            };
            if !Path::new("/proc").join(pid).exists() {
                let _ = self.output(&["rm", "--force", "--time", "0", id]);
            }
        }
    }
}

/// Write `text` to `path` unless it holds it already (atomically: a rename).
fn write_if_changed(path: &Path, text: &str) {
    if std::fs::read_to_string(path).is_ok_and(|t| t == text) {
        return;
    }
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// An exclusive lock on a file, held until dropped: one test process at a time makes base
/// images, builds and prunes in the shared storage.
struct Lock {
    _file: File,
}

impl Lock {
    fn take(path: &Path) -> Lock {
        use std::os::fd::AsRawFd;
        let file = File::create(path).unwrap();
        // SAFETY: flock on a descriptor we own; it is released when the file is closed.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
        assert_eq!(rc, 0, "flock {}", path.display());
        Lock { _file: file }
    }
}

/// The Debian mirror this machine's apt uses for bookworm (deb822 `.sources` or one-line
/// `.list` entries), else Debian's own.
fn debian_mirror() -> String {
    let mut files = vec![PathBuf::from("/etc/apt/sources.list")];
    if let Ok(dir) = std::fs::read_dir("/etc/apt/sources.list.d") {
        let mut more: Vec<PathBuf> = dir.map(|e| e.unwrap().path()).collect();
        more.sort();
        files.extend(more);
    }
    for file in files {
        let Ok(text) = std::fs::read_to_string(&file) else {
            continue;
        };
        // deb822: a stanza with `Suites: bookworm ...` and `URIs: ...`.
        for stanza in text.split("\n\n") {
            let field = |name: &str| {
                stanza.lines().find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.trim()
                        .eq_ignore_ascii_case(name)
                        .then(|| v.trim().to_owned())
                })
            };
            let (Some(suites), Some(uris)) = (field("Suites"), field("URIs")) else {
                continue;
            };
            if suites.split_whitespace().any(|s| s == "bookworm") {
                if let Some(uri) = uris.split_whitespace().next() {
                    return uri.to_owned();
                }
            }
        }
        // One-line: `deb [options] URI bookworm components`.
        for line in text.lines() {
            let words: Vec<&str> = line
                .split_whitespace()
                .skip_while(|w| *w != "deb")
                .skip(1)
                .collect();
            let words: Vec<&str> = if words.first().is_some_and(|w| w.starts_with('[')) {
                let end = words.iter().position(|w| w.ends_with(']')).unwrap_or(0);
                words[end + 1..].to_vec()
            } else {
                words
            };
            if line.trim_start().starts_with("deb ") && words.len() >= 2 && words[1] == "bookworm" {
                return words[0].to_owned();
            }
        }
    }
    "http://deb.debian.org/debian".to_owned()
}

/// The image, built once for every test of this file.
struct Image {
    podman: Podman,
    /// Its name: the compose file's `image:` of the exporter service.
    name: String,
    /// Its size in bytes, as podman reports it.
    size: u64,
}

static IMAGE: LazyLock<Result<Image, String>> = LazyLock::new(|| {
    std::panic::catch_unwind(build).map_err(|e| {
        e.downcast_ref::<String>()
            .cloned()
            .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default()
    })
});

fn image() -> &'static Image {
    match &*IMAGE {
        Ok(image) => image,
        Err(e) => panic!("the image could not be built: {e}"),
    }
}

/// The compose file, parsed.
fn compose() -> serde_yaml::Value {
    let text = std::fs::read_to_string(root().join("deploy/docker/compose.yaml")).unwrap();
    serde_yaml::from_str(&text).unwrap()
}

/// Make the base images if the storage lacks them, then build the Dockerfile offline.
fn build() -> Image {
    let podman = Podman::new();
    let _lock = Lock::take(&podman.dir.join("lock"));
    podman.remove_orphans();

    // A stand-in made with another toolchain than this machine's is made again.
    let out = Command::new("rustc").arg("--version").output().unwrap();
    let rustc = String::from_utf8_lossy(&out.stdout);
    let rustc = rustc.split_whitespace().nth(1).expect("rustc --version");
    let env = podman.output(&[
        "image",
        "inspect",
        "--format",
        "{{range .Config.Env}}{{println .}}{{end}}",
        RUST_IMAGE,
    ]);
    let env = String::from_utf8_lossy(&env.stdout);
    if env.lines().any(|l| l.starts_with("RUST_VERSION="))
        && !env.contains(&format!("RUST_VERSION={rustc}\n"))
    {
        podman.run(&["untag", RUST_IMAGE]);
    }

    let started = Instant::now();
    if !(podman
        .output(&["image", "exists", RUST_IMAGE])
        .status
        .success()
        && podman
            .output(&["image", "exists", CC_IMAGE])
            .status
            .success())
    {
        let scratch = tempfile::tempdir_in(&podman.dir).unwrap();
        let out = Command::new("bash")
            .arg(root().join("tests/container/base-images.sh"))
            .arg(debian_mirror())
            .arg(scratch.path())
            .envs(podman.envs())
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "making the base images failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        eprintln!(
            "base images made in {:.0} s",
            started.elapsed().as_secs_f64()
        );
    }

    // The crates, vendored, with a cargo config that points crates.io at them.
    let offline = tempfile::tempdir().unwrap();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .args(["vendor", "--locked", "--quiet"])
        .arg(offline.path().join("vendor"))
        .current_dir(root())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cargo vendor failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::write(
        offline.path().join("config.toml"),
        "[source.crates-io]\nreplace-with = \"vendored\"\n\n\
         [source.vendored]\ndirectory = \"/.cargo/vendor\"\n",
    )
    .unwrap();

    let name = compose()["services"]["exporter"]["image"]
        .as_str()
        .expect("compose.yaml: services.exporter.image")
        .to_owned();
    let iid = offline.path().join("iid");
    let started = Instant::now();
    // Docker's image format, as `docker build` writes it: podman's default (OCI) has no
    // HEALTHCHECK.
    let out = podman
        .command()
        .args(["build", "--pull=never", "--network=none", "--format=docker"])
        .arg(format!("--volume={}:/.cargo:ro", offline.path().display()))
        .arg(format!("--iidfile={}", iid.display()))
        .args(["--tag", &name, "-f", "deploy/docker/Dockerfile", "."])
        .current_dir(root())
        .output()
        .unwrap();
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "podman build failed:\n{log}");
    eprintln!("image built in {:.0} s", started.elapsed().as_secs_f64());
    let id = std::fs::read_to_string(&iid).unwrap();
    prune(&podman, &log, id.trim());

    let size = podman
        .run(&["image", "inspect", "--format", "{{.Size}}", &name])
        .parse()
        .unwrap();
    Image { podman, name, size }
}

/// Remove untagged images that this build did not make or reuse: builds of older sources.
/// The layers of this build stay, so building the same sources again is quick.
fn prune(podman: &Podman, build_log: &str, id: &str) {
    let id = id.trim_start_matches("sha256:");
    let mut keep: Vec<&str> = vec![id];
    for line in build_log.lines() {
        if let Some(rest) = line.strip_prefix("--> ") {
            keep.extend(
                rest.split_whitespace()
                    .filter(|w| w.len() >= 11 && w.bytes().all(|b| b.is_ascii_hexdigit())),
            );
        }
    }
    loop {
        let images = podman.run(&[
            "images",
            "--all",
            "--no-trunc",
            "--format",
            "{{.ID}} {{.Repository}}",
        ]);
        let mut removed = 0;
        for line in images.lines() {
            let Some((image, repo)) = line.split_once(' ') else {
                continue;
            };
            let image = image.trim_start_matches("sha256:");
            if repo == "<none>"
                && !keep.iter().any(|k| image.starts_with(k))
                && podman.output(&["rmi", image]).status.success()
            {
                removed += 1;
            }
        }
        if removed == 0 {
            break;
        }
    }
}

/// A container of these tests: removed (forced) when dropped.
struct Container<'a> {
    podman: &'a Podman,
    id: String,
}

impl<'a> Container<'a> {
    /// `podman run --detach` with these tests' label and `args` (options, image, arguments).
    fn start(podman: &'a Podman, args: &[String]) -> Container<'a> {
        let mut all = vec![
            "run".to_owned(),
            "--detach".to_owned(),
            "--pull=never".to_owned(),
            format!("--label={LABEL}={}", std::process::id()),
        ];
        all.extend_from_slice(args);
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        let id = podman.run(&all);
        Container { podman, id }
    }

    fn inspect(&self, format: &str) -> String {
        self.podman
            .run(&["container", "inspect", "--format", format, &self.id])
    }

    fn logs(&self) -> String {
        let out = self.podman.output(&["logs", &self.id]);
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }
}

impl Drop for Container<'_> {
    fn drop(&mut self) {
        let _ = self
            .podman
            .output(&["rm", "--force", "--time", "0", &self.id]);
    }
}

/// A GET over a fresh connection: status and body, or None if the connection fails or
/// closes before a status line (the published port accepts before the exporter listens).
fn get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    let body = if head.contains("transfer-encoding: chunked") {
        common::dechunk(&raw[split..])
    } else {
        raw[split..].to_vec()
    };
    let body = String::from_utf8_lossy(&body).into_owned();
    Some((status, body))
}

/// What a running container of the image must show, whichever way it was started.
struct Expect<'a> {
    /// Targets of its targets file and the status code a scrape must report for each.
    targets: &'a [(String, f64)],
    /// Whether it was started with a read-only root.
    read_only: bool,
}

/// Check a running container end to end, then stop it with SIGTERM.
fn exercise(c: &Container, addr: SocketAddr, expect: &Expect) {
    let context = || format!("container logs:\n{}", c.logs());

    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match get(addr, "/-/healthy") {
            Some((200, _)) => break,
            _ if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(100)),
            other => panic!("/-/healthy on {addr}: {other:?}\n{}", context()),
        }
    }

    let (status, metrics) = get(addr, "/metrics").unwrap_or_default();
    assert_eq!(status, 200, "/metrics: {metrics}\n{}", context());
    for (target, code) in expect.targets {
        assert_eq!(
            common::target_sample(&metrics, "probe_http_status_code", target),
            Some(*code),
            "probe_http_status_code of {target} in:\n{metrics}\n{}",
            context()
        );
    }

    // The exporter itself, seen from the host: its uid and gid, and how its root is mounted.
    let pid = c.inspect("{{.State.Pid}}");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    for field in ["Uid:", "Gid:"] {
        let ids: Vec<u32> = status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .unwrap()
            .split_whitespace()
            .map(|n| n.parse().unwrap())
            .collect();
        assert_eq!(ids, [NONROOT; 4], "{field} of the exporter (pid {pid})");
    }
    let mountinfo = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).unwrap();
    let root_options = mountinfo
        .lines()
        .map(|l| l.split(' ').collect::<Vec<_>>())
        .find(|f| f.get(4) == Some(&"/"))
        .map(|f| f[5].split(',').map(str::to_owned).collect::<Vec<_>>())
        .expect("the exporter's root in its mountinfo");
    assert_eq!(
        root_options.iter().any(|o| o == "ro"),
        expect.read_only,
        "mount options of the exporter's root: {root_options:?}"
    );

    // The image's own HEALTHCHECK command, run in the container as podman's timer would.
    let health = c.podman.output(&["healthcheck", "run", &c.id]);
    assert!(
        health.status.success(),
        "podman healthcheck run: {}{}\n{}",
        String::from_utf8_lossy(&health.stdout),
        String::from_utf8_lossy(&health.stderr),
        context()
    );
    assert_eq!(c.inspect("{{.State.Health.Status}}"), "healthy");

    let started = Instant::now();
    c.podman
        .run(&["stop", "--time", &STOP_GRACE.to_string(), &c.id]);
    let took = started.elapsed();
    assert_eq!(
        c.inspect("{{.State.ExitCode}}"),
        "0",
        "exit status after SIGTERM\n{}",
        context()
    );
    assert!(
        took < Duration::from_secs(STOP_GRACE),
        "podman stop took {took:?} of a {STOP_GRACE} s grace period"
    );
}

#[test]
fn the_image_builds_offline_and_runs_read_only_as_nonroot() {
    let image = image();
    let podman = &image.podman;
    eprintln!("image {}: {} bytes", image.name, image.size);
    assert!(
        image.size < SIZE_LIMIT,
        "the image is {} bytes, over {SIZE_LIMIT}",
        image.size
    );
    let healthcheck = podman.run(&[
        "image",
        "inspect",
        "--format",
        "{{json .HealthCheck.Test}}",
        &image.name,
    ]);
    assert!(
        healthcheck.contains("\"check\"") && healthcheck.contains("/-/healthy"),
        "the image's HEALTHCHECK: {healthcheck}"
    );

    let nginx = common::Nginx::start(&[]);
    let ok = format!("http://{HOST_LOOPBACK}:{}/ok", nginx.port);
    let missing = format!("http://{HOST_LOOPBACK}:{}/missing", nginx.port);
    let dir = tempfile::tempdir().unwrap();
    let targets = dir.path().join("targets.yaml");
    std::fs::write(&targets, format!("targets:\n  - {ok}\n  - {missing}\n")).unwrap();

    let port = common::free_port();
    let c = Container::start(
        podman,
        &[
            format!("--network={NETWORK}"),
            format!("--publish=127.0.0.1:{port}:{PORT}"),
            "--read-only".to_owned(),
            "--read-only-tmpfs=false".to_owned(),
            format!(
                "--volume={}:/etc/http_status_exporter/targets.yaml:ro",
                targets.display()
            ),
            image.name.clone(),
        ],
    );
    exercise(
        &c,
        ([127, 0, 0, 1], port).into(),
        &Expect {
            targets: &[(ok, 200.0), (missing, 404.0)],
            read_only: true,
        },
    );
}

#[test]
fn the_compose_exporter_service_runs_as_written() {
    let image = image();
    let compose = compose();
    let service = compose["services"]["exporter"]
        .as_mapping()
        .expect("compose.yaml: services.exporter");
    let here = root().join("deploy/docker");
    let mut args = vec![format!("--network={NETWORK}")];
    let mut command = Vec::new();
    let mut published = None;
    for (key, value) in service {
        let key = key.as_str().unwrap();
        match key {
            "build" => {
                let context = here.join(value["context"].as_str().unwrap());
                assert_eq!(
                    context.canonicalize().unwrap(),
                    root().canonicalize().unwrap(),
                    "build.context"
                );
                assert_eq!(
                    value["dockerfile"].as_str(),
                    Some("deploy/docker/Dockerfile"),
                    "build.dockerfile: the one this test builds"
                );
            }
            // The name the image was built under.
            "image" => assert_eq!(value.as_str(), Some(image.name.as_str())),
            "command" => {
                command = value
                    .as_sequence()
                    .expect("command as a list")
                    .iter()
                    .map(|a| a.as_str().unwrap().to_owned())
                    .collect();
            }
            "volumes" => {
                for v in value.as_sequence().unwrap() {
                    let v = v.as_str().expect("short volume syntax");
                    let (source, rest) = v.split_once(':').unwrap();
                    let source = here.join(source);
                    assert!(source.exists(), "volume source {}", source.display());
                    args.push(format!("--volume={}:{rest}", source.display()));
                }
            }
            "ports" => {
                for p in value.as_sequence().unwrap() {
                    let p = p.as_str().expect("ports as strings");
                    let container: u16 = p.rsplit(':').next().unwrap().parse().unwrap();
                    assert_eq!(container, PORT, "the published container port");
                    let host = common::free_port();
                    args.push(format!("--publish=127.0.0.1:{host}:{container}"));
                    published = Some(host);
                }
            }
            "restart" => args.push(format!("--restart={}", value.as_str().unwrap())),
            other => panic!(
                "compose.yaml's exporter service has `{other}`, which this test does not yet \
                 pass on to podman run"
            ),
        }
    }
    let port = published.expect("the exporter service publishes its port");
    args.push(image.name.clone());
    args.extend(command);

    let c = Container::start(&image.podman, &args);
    // The compose file mounts examples/targets.yaml, whose targets are the exporter's own
    // endpoints (up) and a port nothing listens on (0: no status).
    exercise(
        &c,
        ([127, 0, 0, 1], port).into(),
        &Expect {
            targets: &[
                ("http://127.0.0.1:9723/-/healthy".to_owned(), 200.0),
                ("http://localhost:9723/config".to_owned(), 200.0),
                ("http://127.0.0.1:9/".to_owned(), 0.0),
            ],
            read_only: false,
        },
    );
}

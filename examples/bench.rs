//! The benchmark: one run measures rounds of 1,000 / 10,000 / 100,000 plain HTTP targets and
//! 1,000 HTTPS targets (full handshakes) against a local nginx, the peak RSS of the exporter
//! process for each, the time to render 10,000 targets' metrics, and the machine's practical
//! limit measured with wrk (a new connection per request, plain and TLS); then prints a table.
//!
//! Run it with `bash examples/bench.sh` (installs nginx and wrk when missing, builds, runs).
//! Like the tests, it is tooling: any failure to set up stops it with a message.
//!
//! `--names` adds the scenario real target files are: the same 10,000 targets named by 10,000
//! distinct host names, served by a DNS server (ours, `tests/common/dns.rs`) that answers every
//! query after 20 ms, through the built-in resolver with `options attempts:1` (so that a false
//! failure shows instead of being retried); through unbound (Debian package `unbound`) in
//! front of the same server, cold (unbound restarted before every round) and warm (its cache
//! full from an earlier round); and, when the benchmark runs as root with `unshare`, through
//! getaddrinfo (`--dns.resolver=system`, in a mount namespace whose /etc/resolv.conf names
//! that server on 127.53.0.1:53), beside the IP-literal round of the same targets in the same
//! run. The `failed` column counts the probes that did not succeed over all measured rounds.
//! A second table shows where the CPU went in each of those rounds: the exporter, nginx, the
//! DNS servers (this process, which serves the zone, and unbound) and the whole machine,
//! against what its cores could give in the scrape's time.
//!
//! The witness: a peer that answers exactly 20 ms after its request, run under `chrt -f`
//! (SCHED_FIFO) so that its own timing does not move with the load, probed alone and inside a
//! saturated round of 10,000; loaded minus alone is the exporter's error under load.
//!
//! A plain run does all of it, in one run: the rounds and wrk, then the names, then the
//! witness. `--names` or `--witness` runs one part alone. `BENCH_EXPORTER=path` runs any of
//! them against another build of the exporter.
//!
//! `--body-checks [N]` runs only the body checks scenario: N targets (10,000 by default) with
//! a header check, two body patterns and a 64 KiB limit against an nginx of its own that
//! answers every path with 1 KiB of JSON; it prints the round time and the peak RSS beside the
//! same targets without checks.
//!
//! `--size N` runs only the plain round of N targets (5 rounds, 3 with `--quick`) and prints
//! its round time and peak RSS.
//!
//! `--compare OLD_BINARY` runs only the 10,000-target plain round, by turns with this build
//! and with `OLD_BINARY` (an earlier commit's build), and prints both medians. With `--names`
//! it runs the names scenarios instead (all but getaddrinfo), by turns, and prints their
//! medians: round, the exporter's CPU and peak RSS.
//!
//! 100,000 targets would run out of ephemeral ports towards one address (every probe leaves a
//! TIME_WAIT socket on our side), so large scenarios spread their targets over several
//! loopback addresses (127.0.0.1 to 127.0.0.16) served by the same nginx.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[allow(dead_code, clippy::all)]
#[path = "../tests/common/dns.rs"]
mod dns;
mod support;

use support::Proc;

/// Loopback addresses nginx listens on.
const ADDRESSES: u8 = 16;

/// Find a program or stop naming its Debian package.
fn program(name: &str, package: &str) -> PathBuf {
    let path = std::env::var("PATH").unwrap_or_default();
    for dir in path.split(':').chain(["/usr/sbin", "/sbin"]) {
        let p = Path::new(dir).join(name);
        if p.is_file() {
            return p;
        }
    }
    eprintln!("`{name}` is missing: apt-get install -y {package}");
    std::process::exit(2);
}

/// A free port on 127.0.0.1.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Start nginx: plain on 127.0.0.1..=127.0.0.16, TLS on 127.0.0.1.
fn start_nginx(dir: &Path) -> (Proc, u16, u16) {
    let nginx = program("nginx", "nginx");
    let (port, tls_port) = (free_port(), free_port());
    let ca = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    let mut ca = ca;
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_key = rcgen::KeyPair::generate().expect("key");
    let issuer = rcgen::CertifiedIssuer::self_signed(ca, ca_key).expect("CA");
    let leaf_key = rcgen::KeyPair::generate().expect("key");
    let leaf = rcgen::CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
        .expect("params")
        .signed_by(&leaf_key, &issuer)
        .expect("leaf");
    std::fs::write(dir.join("ca.pem"), issuer.pem()).expect("write");
    std::fs::write(dir.join("leaf.pem"), leaf.pem()).expect("write");
    std::fs::write(dir.join("leaf.key"), leaf_key.serialize_pem()).expect("write");
    let d = dir.display();
    let listens: String = (1..=ADDRESSES)
        .map(|i| format!("        listen 127.0.0.{i}:{port} backlog=8192 reuseport;\n"))
        .collect();
    let conf = format!(
        "daemon off;\nworker_processes 2;\nworker_rlimit_nofile 200000;\npid {d}/nginx.pid;\n\
         error_log {d}/error.log crit;\nevents {{ worker_connections 65536; multi_accept on; }}\n\
         http {{\n    access_log off;\n    client_body_temp_path {d}/b;\n    proxy_temp_path {d}/p;\n\
         fastcgi_temp_path {d}/f;\n    uwsgi_temp_path {d}/u;\n    scgi_temp_path {d}/s;\n\
         ssl_session_cache off;\n    ssl_session_tickets off;\n\
         server {{\n{listens}        location / {{ return 200; }}\n    }}\n\
         server {{\n        listen 127.0.0.1:{tls_port} ssl backlog=8192;\n        ssl_protocols TLSv1.2 TLSv1.3;\n\
         ssl_certificate {d}/leaf.pem;\n        ssl_certificate_key {d}/leaf.key;\n        location / {{ return 200; }}\n    }}\n}}\n"
    );
    std::fs::write(dir.join("nginx.conf"), conf).expect("write");
    let child = Command::new(nginx)
        .arg("-e")
        .arg(dir.join("error.log"))
        .arg("-p")
        .arg(dir)
        .arg("-c")
        .arg(dir.join("nginx.conf"))
        .stdout(Stdio::null())
        .spawn()
        .expect("nginx starts");
    for p in [port, tls_port] {
        let end = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", p)).is_err() {
            assert!(Instant::now() < end, "nginx did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    (Proc(child), port, tls_port)
}

/// The exporter binary next to this example's folder.
fn exporter_bin() -> PathBuf {
    if let Some(other) = BINARY.lock().expect("not poisoned").clone() {
        return other;
    }
    // Any scenario against another build: `BENCH_EXPORTER=path/to/binary`.
    if let Some(other) = std::env::var_os("BENCH_EXPORTER") {
        return PathBuf::from(other);
    }
    let exe = std::env::current_exe().expect("own path");
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    dir.join("http_status_exporter")
}

/// The exporter binary to run instead of the one built beside the benchmark (`--compare`).
static BINARY: std::sync::Mutex<Option<PathBuf>> = std::sync::Mutex::new(None);

/// `--compare OLD`: the 10,000-target plain round of this build and of the binary `OLD` (a
/// build of an earlier commit), run by turns in the same run, so that the machine's drift
/// falls on both alike.
fn compare(dir: &Path, port: u16, old: &Path, turns: usize) {
    let yaml = plain_targets(port, 10_000, 1);
    let mut times: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    let mut scrapes: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    for turn in 0..turns {
        for (i, bin) in [None, Some(old.to_owned())].into_iter().enumerate() {
            *BINARY.lock().expect("not poisoned") = bin;
            let row = scenario(dir, "10000 http", &yaml, 10_000, 5);
            assert_eq!(row.ok, 10_000, "every probe succeeds");
            eprintln!(
                "turn {turn}: {} {:.3} s",
                ["this build", "baseline"][i],
                row.round
            );
            times[i].push(row.round);
            scrapes[i].push(row.scrape);
        }
    }
    *BINARY.lock().expect("not poisoned") = None;
    println!("\n| 10,000 http targets | round (median of {turns} runs) | scrape (median) |");
    println!("|---|---:|---:|");
    for (i, name) in ["this build", "baseline"].iter().enumerate() {
        println!(
            "| {name} | {:.3} s | {:.3} s |",
            percentile(times[i].clone(), 0.5),
            percentile(scrapes[i].clone(), 0.5)
        );
    }
}

/// `--names --compare OLD`: the names scenarios (IP literals, DNS at 20 ms, unbound cold and
/// warm; 3 rounds each) of this build and of `OLD`, by turns, each turn with a DNS server and
/// unbound of its own; prints, per scenario and build, the medians over the turns of the
/// round, the exporter's CPU per round and the peak RSS, and in how many turns this build's
/// round was the shorter.
fn compare_names(dir: &Path, port: u16, old: &Path, turns: usize) {
    let builds = ["this build", "baseline"];
    // by build, then scenario: one row per turn.
    let mut rows: [Vec<Vec<Row>>; 2] = [Vec::new(), Vec::new()];
    for turn in 0..turns {
        for (i, bin) in [None, Some(old.to_owned())].into_iter().enumerate() {
            *BINARY.lock().expect("not poisoned") = bin;
            let got = names_scenarios(dir, port, 10_000, 3, false);
            let times: Vec<String> = got.iter().map(|r| format!("{:.3}", r.round)).collect();
            eprintln!("turn {turn}: {} {} s", builds[i], times.join(" / "));
            for (k, row) in got.into_iter().enumerate() {
                if rows[i].len() <= k {
                    rows[i].push(Vec::new());
                }
                rows[i][k].push(row);
            }
        }
    }
    *BINARY.lock().expect("not poisoned") = None;
    println!(
        "\n| same 10,000 targets, {turns} turns | build | round (median) | exporter CPU per round | peak RSS | shorter round |"
    );
    println!("|---|---|---:|---:|---:|---:|");
    let [mine, theirs] = &rows;
    for (a, b) in mine.iter().zip(theirs) {
        let wins = a.iter().zip(b).filter(|(x, y)| x.round < y.round).count();
        for (build, runs, shorter) in [(builds[0], a, wins), (builds[1], b, turns - wins)] {
            let of = |f: fn(&Row) -> f64| percentile(runs.iter().map(f).collect(), 0.5);
            println!(
                "| {} | {build} | {:.3} s | {:.3} s | {:.1} MiB | {shorter} of {turns} |",
                runs[0].name,
                of(|r| r.round),
                of(|r| r.cpu.exporter),
                of(|r| r.rss),
            );
        }
    }
}

/// A running exporter.
struct Exporter {
    /// The process.
    proc: Proc,
    /// Where it listens.
    addr: SocketAddr,
}

/// Start the exporter on a targets file, with extra flags, under `wrapper` (a command that ends
/// by running its last arguments) if given.
fn start_exporter(config: &Path, extra: &[String], wrapper: &[String]) -> Exporter {
    let mut command = match wrapper.split_first() {
        Some((program, args)) => {
            let mut c = Command::new(program);
            c.args(args).arg(exporter_bin());
            c
        }
        None => Command::new(exporter_bin()),
    };
    let mut child = command
        .arg("--config.file")
        .arg(config)
        .args(["--web.listen-address", "127.0.0.1:0", "--log.level", "info"])
        .args(extra)
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("exporter starts (build it with cargo build --release)");
    let addr = support::listening_address(&mut child);
    Exporter {
        proc: Proc(child),
        addr,
    }
}

/// Scrape once; returns (wall time, body).
fn scrape(addr: SocketAddr) -> (Duration, String) {
    let t = Instant::now();
    let mut s = TcpStream::connect(addr).expect("connect");
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Prometheus-Scrape-Timeout-Seconds: 120\r\n\r\n")
        .expect("write");
    let mut body = String::new();
    s.read_to_string(&mut body).expect("read");
    (t.elapsed(), body)
}

/// The value of an unlabelled sample.
fn value(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or(f64::NAN)
}

/// Peak RSS of a process, MiB.
fn peak_rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kib| kib / 1024.0)
}

/// Median of samples.
fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// One scenario's figures.
struct Row {
    /// What was probed.
    name: String,
    /// Targets per round.
    targets: usize,
    /// Median round time (the exporter's own metric), seconds.
    round: f64,
    /// Median scrape wall time, seconds.
    scrape: f64,
    /// Peak RSS of the exporter, MiB.
    rss: f64,
    /// Successful probes in the last round.
    ok: usize,
    /// Median and 99th percentile of the resolve phase over the last round, seconds.
    resolve: (f64, f64),
    /// Probes that did not succeed, over all measured rounds.
    failed: usize,
    /// Measured rounds.
    rounds: usize,
    /// CPU spent during the measured scrapes, per round.
    cpu: Cpu,
}

/// CPU seconds spent, by whom: the exporter, nginx, the DNS servers (this process, which
/// serves the benchmark's zone and scrapes, and unbound) and the whole machine; and the wall
/// time they were spent in.
#[derive(Debug, Clone, Copy, Default)]
struct Cpu {
    /// The exporter process.
    exporter: f64,
    /// nginx, master and workers.
    nginx: f64,
    /// This process (the DNS server of the names scenarios, and the scrapes) and unbound.
    dns: f64,
    /// Every process and the kernel's interrupt work, on every core.
    machine: f64,
    /// Wall time.
    wall: f64,
}

/// Clock ticks per second of /proc's times.
fn ticks_per_second() -> f64 {
    // SAFETY: sysconf only reads a system constant.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as f64 } else { 100.0 }
}

/// `(pid, parent, command name, user + system ticks)` of one process.
fn proc_times(pid: &str) -> Option<(u32, u32, String, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (open, close) = (stat.find('(')?, stat.rfind(')')?);
    let comm = stat[open + 1..close].to_owned();
    let f: Vec<&str> = stat[close + 2..].split_whitespace().collect();
    let ticks = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some((pid.parse().ok()?, f.get(1)?.parse().ok()?, comm, ticks))
}

impl Cpu {
    /// CPU spent so far by the processes this benchmark started (`exporter` is the
    /// exporter's pid) and by the machine.
    fn now(exporter: u32) -> Cpu {
        let me = std::process::id();
        let hz = ticks_per_second();
        let all: Vec<_> = std::fs::read_dir("/proc")
            .map(|d| {
                d.filter_map(|e| proc_times(e.ok()?.file_name().to_str()?))
                    .collect()
            })
            .unwrap_or_default();
        // This process's descendants: nginx and unbound are its children, nginx's workers
        // their children.
        let mut ours = vec![me];
        loop {
            let more: Vec<u32> = all
                .iter()
                .filter(|p| ours.contains(&p.1) && !ours.contains(&p.0))
                .map(|p| p.0)
                .collect();
            if more.is_empty() {
                break;
            }
            ours.extend(more);
        }
        let mut cpu = Cpu::default();
        for (pid, _, comm, ticks) in &all {
            let secs = *ticks as f64 / hz;
            if *pid == exporter {
                cpu.exporter += secs;
            } else if *pid == me || (comm == "unbound" && ours.contains(pid)) {
                cpu.dns += secs;
            } else if comm == "nginx" && ours.contains(pid) {
                cpu.nginx += secs;
            }
        }
        // The first line of /proc/stat: user nice system idle iowait irq softirq steal ...
        let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
        let fields: Vec<u64> = stat
            .lines()
            .next()
            .unwrap_or_default()
            .split_whitespace()
            .skip(1)
            .filter_map(|v| v.parse().ok())
            .collect();
        let busy: u64 = fields
            .iter()
            .take(8)
            .enumerate()
            .filter(|(i, _)| *i != 3 && *i != 4)
            .map(|(_, v)| v)
            .sum();
        cpu.machine = busy as f64 / hz;
        cpu
    }

    /// Each figure of `self` combined with the same figure of `o` by `f`.
    fn zip(self, o: Cpu, f: impl Fn(f64, f64) -> f64) -> Cpu {
        Cpu {
            exporter: f(self.exporter, o.exporter),
            nginx: f(self.nginx, o.nginx),
            dns: f(self.dns, o.dns),
            machine: f(self.machine, o.machine),
            wall: f(self.wall, o.wall),
        }
    }
}

/// A percentile of samples (0.5 the median).
fn percentile(mut v: Vec<f64>, p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let i = ((v.len() as f64 * p).ceil() as usize).clamp(1, v.len()) - 1;
    v[i]
}

/// Every target's resolve phase in a scrape.
fn resolve_times(body: &str) -> Vec<f64> {
    body.lines()
        .filter(|l| {
            l.starts_with("probe_http_duration_seconds{") && l.contains("phase=\"resolve\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
        .collect()
}

/// Run `rounds` scrapes of a targets file and collect the figures.
fn scenario(dir: &Path, name: &str, yaml: &str, targets: usize, rounds: usize) -> Row {
    scenario_with(dir, name, yaml, targets, rounds, &[], &[])
}

/// [`scenario`] with extra exporter flags and a wrapper command.
fn scenario_with(
    dir: &Path,
    name: &str,
    yaml: &str,
    targets: usize,
    rounds: usize,
    extra: &[String],
    wrapper: &[String],
) -> Row {
    scenario_full(
        dir,
        name,
        yaml,
        (targets, rounds, 0),
        extra,
        wrapper,
        &mut || {},
    )
}

/// [`scenario_with`] that runs `warmup` rounds first without measuring them, and calls
/// `before_round` before each measured round.
fn scenario_full(
    dir: &Path,
    name: &str,
    yaml: &str,
    (targets, rounds, warmup): (usize, usize, usize),
    extra: &[String],
    wrapper: &[String],
    before_round: &mut dyn FnMut(),
) -> Row {
    let path = dir.join(format!("{}.yaml", name.replace([' ', ',', '/', '='], "_")));
    std::fs::write(&path, yaml).expect("write targets");
    let e = start_exporter(&path, extra, wrapper);
    let mut round_times = Vec::new();
    let mut scrape_times = Vec::new();
    let mut ok = 0;
    let mut failed = 0;
    let mut resolve = Vec::new();
    let mut cpu = Cpu::default();
    let pid = e.proc.0.id();
    for round in 0..warmup + rounds {
        if round >= warmup {
            before_round();
        }
        let before = Cpu::now(pid);
        let (wall, body) = scrape(e.addr);
        if round >= warmup {
            let spent = Cpu {
                wall: wall.as_secs_f64(),
                ..Cpu::now(pid).zip(before, |a, b| a - b)
            };
            cpu = cpu.zip(spent, |a, b| a + b);
        }
        // Let TIME_WAIT sockets of the previous round age a little between rounds.
        std::thread::sleep(Duration::from_millis(200));
        if round < warmup {
            continue;
        }
        round_times.push(value(&body, "http_status_exporter_round_duration_seconds"));
        scrape_times.push(wall.as_secs_f64());
        ok = body
            .lines()
            .filter(|l| l.starts_with("probe_success{") && l.ends_with(" 1"))
            .count();
        failed += targets - ok;
        resolve = resolve_times(&body);
    }
    let rss = peak_rss_mib(e.proc.0.id());
    Row {
        name: name.to_owned(),
        targets,
        round: median(round_times),
        scrape: median(scrape_times),
        rss,
        ok,
        resolve: (percentile(resolve.clone(), 0.5), percentile(resolve, 0.99)),
        failed,
        rounds,
        cpu: cpu.zip(Cpu::default(), |a, _| a / rounds.max(1) as f64),
    }
}

/// Targets file of `n` plain URLs on `host(i)`.
fn targets_on(port: u16, n: usize, host: impl Fn(usize) -> String) -> String {
    let mut y = String::with_capacity(n * 48);
    y.push_str("targets:\n");
    for i in 0..n {
        y.push_str(&format!("  - http://{}:{port}/p{i}\n", host(i)));
    }
    y
}

/// The names scenarios: the same targets as IP literals, as names through the built-in
/// resolver, and (with `system`) as names through getaddrinfo when this process may make a
/// mount namespace.
fn names_scenarios(dir: &Path, port: u16, n: usize, rounds: usize, system: bool) -> Vec<Row> {
    let zone = || dns::Zone {
        wildcard: Some((
            ".bench.test".to_owned(),
            vec![dns::Rec::A([127, 0, 0, 1].into())],
        )),
        delay: Duration::from_millis(20),
        ..dns::Zone::default()
    };
    let server = dns::DnsServer::start(zone());
    // One attempt: a lookup that fails falsely shows as a failure instead of a retry.
    let resolv = server.resolv_conf(dir, "options attempts:1\n");
    let hosts = dir.join("hosts");
    std::fs::write(&hosts, "127.0.0.1 localhost\n").expect("write hosts");
    let named = targets_on(port, n, |i| format!("t{i}.bench.test"));
    let mut rows = vec![scenario(
        dir,
        &format!("{n} http, IP literals"),
        &targets_on(port, n, |_| "127.0.0.1".to_owned()),
        n,
        rounds,
    )];
    let mut flags = vec![
        "--dns.resolv-conf".to_owned(),
        resolv.display().to_string(),
        "--dns.hosts-file".to_owned(),
        hosts.display().to_string(),
    ];
    // More resolver flags to compare, such as `BENCH_DNS_FLAGS="--dns.concurrency 1024"`.
    let more = std::env::var("BENCH_DNS_FLAGS").unwrap_or_default();
    flags.extend(more.split_whitespace().map(str::to_owned));
    rows.push(scenario_with(
        dir,
        &format!("{n} http, names, DNS at 20 ms"),
        &named,
        n,
        rounds,
        &flags,
        &[],
    ));
    // unbound in front of the same server: cold (restarted before every round, so every name
    // goes to the server) and warm (every answer in its cache from the round before).
    // Caches that hold every name, and a receive buffer that holds a round's burst of queries
    // (the default drops most of them).
    let cache = "    msg-cache-size: 64m\n    rrset-cache-size: 128m\n    \
                 outgoing-range: 8192\n    num-queries-per-thread: 8192\n    \
                 so-rcvbuf: 16m\n    so-sndbuf: 16m\n";
    let mut unbound = Some(dns::Unbound::start("127.0.0.1:0", &[server.addr], cache));
    let at = unbound.as_ref().expect("started").addr;
    let via = dir.join("resolv-unbound.conf");
    std::fs::write(
        &via,
        format!("nameserver {}#{}\noptions attempts:1\n", at.ip(), at.port()),
    )
    .expect("write");
    let mut through = vec!["--dns.resolv-conf".to_owned(), via.display().to_string()];
    through.extend(flags[2..].iter().cloned());
    rows.push(scenario_full(
        dir,
        &format!("{n} http, names, unbound cold"),
        &named,
        (n, rounds, 0),
        &through,
        &[],
        &mut || {
            unbound = None;
            unbound = Some(dns::Unbound::start(&at.to_string(), &[server.addr], cache));
        },
    ));
    rows.push(scenario_full(
        dir,
        &format!("{n} http, names, unbound warm"),
        &named,
        (n, rounds, 1),
        &through,
        &[],
        &mut || {},
    ));
    // getaddrinfo reads /etc/resolv.conf, which names no port: serve the zone on port 53 of a
    // loopback address of its own and show it to the exporter through a mount namespace.
    if !system {
        return rows;
    }
    let system = std::net::UdpSocket::bind("127.53.0.1:53").is_ok()
        && Command::new("unshare").arg("--help").output().is_ok();
    if system {
        let on53 = dns::DnsServer::start_on("127.53.0.1:53", zone());
        let conf = dir.join("resolv-53.conf");
        std::fs::write(&conf, format!("nameserver {}\n", on53.addr.ip())).expect("write");
        let script = format!(
            "mount --bind {} /etc/resolv.conf && mount --bind {} /etc/hosts && exec \"$@\"",
            conf.display(),
            hosts.display()
        );
        rows.push(scenario_with(
            dir,
            &format!("{n} http, names, DNS at 20 ms, --dns.resolver=system"),
            &named,
            n,
            rounds,
            &["--dns.resolver=system".to_owned()],
            &[
                "unshare".to_owned(),
                "-m".to_owned(),
                "sh".to_owned(),
                "-c".to_owned(),
                script,
                "sh".to_owned(),
            ],
        ));
    } else {
        eprintln!("skipping --dns.resolver=system: needs root, unshare and 127.53.0.1:53 free");
    }
    rows
}

/// Targets file of `n` plain URLs spread over the loopback addresses.
fn plain_targets(port: u16, n: usize, spread: u8) -> String {
    let mut y = String::with_capacity(n * 48);
    y.push_str("targets:\n");
    for i in 0..n {
        let host = (i % usize::from(spread)) + 1;
        y.push_str(&format!("  - http://127.0.0.{host}:{port}/p{i}\n"));
    }
    y
}

/// wrk's requests per second with a new connection per request.
fn wrk(url: &str) -> f64 {
    let wrk = program("wrk", "wrk");
    let out = Command::new(wrk)
        .args(["-t2", "-c128", "-d5s", "-H", "Connection: close", url])
        .output()
        .expect("wrk runs");
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(f64::NAN)
}

/// Median time to render 10,000 targets' metrics, in the library.
fn render_time() -> f64 {
    use http_status_exporter::outcome::{HttpVersion, Nanos, Reason, StatusLine};
    use http_status_exporter::outcome::{Phases, ProbeResult};
    let yaml = plain_targets(8080, 10_000, 1);
    let cfg = http_status_exporter::config::parse(Path::new("bench.yaml"), &yaml).expect("config");
    let results: Vec<ProbeResult> = (0..cfg.targets.len())
        .map(|i| ProbeResult {
            status: Some(StatusLine {
                version: HttpVersion::Http11,
                code: 200,
                reason: Reason::new(200, "OK"),
            }),
            duration: Duration::from_micros(1234 + i as u64).into(),
            phases: Phases {
                resolve: Duration::from_micros(3).into(),
                connect: Duration::from_micros(120).into(),
                proxy: Nanos::ZERO,
                tls: Nanos::ZERO,
                processing: Duration::from_micros(300).into(),
            },
            ip: Some(std::net::Ipv4Addr::LOCALHOST.into()),
            ..Default::default()
        })
        .collect();
    let round = Arc::new(http_status_exporter::round::Round::of(
        Arc::new(cfg),
        results,
        None,
    ));
    let mut samples = Vec::new();
    for _ in 0..21 {
        let t = Instant::now();
        let mut render = http_status_exporter::metrics::ChunkedRender::new(round.clone());
        let mut bytes = 0;
        while let Some(chunk) = render.next_chunk() {
            bytes += chunk.len();
        }
        samples.push(t.elapsed().as_secs_f64());
        assert!(bytes > 1_000_000);
    }
    median(samples)
}

/// The witness's answer time: it answers this long after its request arrived.
const WITNESS_DELAY: Duration = Duration::from_millis(20);

/// `--witness-serve`: the witness peer, run by [`witness`] under `chrt -f` (SCHED_FIFO), so
/// that its own timing does not move with the load. It prints its port, then answers each
/// connection in turn exactly [`WITNESS_DELAY`] after the end of its request head arrived.
fn witness_serve() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    println!("{}", listener.local_addr().expect("address").port());
    std::io::stdout().flush().expect("flush");
    for conn in listener.incoming() {
        let Ok(mut conn) = conn else { continue };
        let _ = conn.set_nodelay(true);
        let mut head = Vec::new();
        let mut buf = [0u8; 2048];
        let arrived = loop {
            match conn.read(&mut buf) {
                Ok(0) | Err(_) => break None,
                Ok(n) => {
                    head.extend_from_slice(&buf[..n]);
                    if head.windows(4).any(|w| w == b"\r\n\r\n") {
                        break Some(Instant::now());
                    }
                    if head.len() > 64 * 1024 {
                        break None;
                    }
                }
            }
        };
        let Some(arrived) = arrived else { continue };
        std::thread::sleep((arrived + WITNESS_DELAY).saturating_duration_since(Instant::now()));
        let _ =
            conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    }
}

/// One probe's times of the witness in a scrape: connect, processing, total (seconds).
fn witness_times(body: &str) -> Option<[f64; 3]> {
    let sample = |prefix: &str, phase: Option<&str>| {
        body.lines().find_map(|l| {
            let rest = l.strip_prefix(prefix)?;
            if !rest.contains("/witness\"") || phase.is_some_and(|p| !rest.contains(p)) {
                return None;
            }
            rest.rsplit(' ').next()?.parse::<f64>().ok()
        })
    };
    let ok = body
        .lines()
        .any(|l| l.starts_with("probe_success{") && l.contains("/witness\"") && l.ends_with(" 1"));
    ok.then_some([
        sample("probe_http_duration_seconds{", Some("phase=\"connect\""))?,
        sample("probe_http_duration_seconds{", Some("phase=\"processing\""))?,
        sample("probe_duration_seconds{", None)?,
    ])
}

/// The witness's figures: per time (connect, processing, total), median and p99 alone and
/// inside a saturated round, from `rounds` probes each.
struct Witness {
    /// Alone: [connect, processing, total] x [median, p99], seconds.
    alone: [[f64; 2]; 3],
    /// Inside a round of `load` other targets, the same.
    loaded: [[f64; 2]; 3],
    /// The other targets of the loaded round.
    load: usize,
    /// Probes of the witness each way.
    rounds: usize,
}

/// The witness peer: probed alone, then as one target in the middle of a round of `load`
/// nginx targets, `rounds` times each. A loaded time minus the alone time is the exporter's
/// error under load: the witness's own timing does not move, as it runs under SCHED_FIFO.
fn witness(dir: &Path, port: u16, load: usize, rounds: usize) -> Witness {
    let chrt = program("chrt", "util-linux");
    let me = std::env::current_exe().expect("own path");
    let mut child = Command::new(chrt)
        .args(["-f", "50"])
        .arg(me)
        .arg("--witness-serve")
        .stdout(Stdio::piped())
        .spawn()
        .expect("the witness starts under chrt -f (needs root or CAP_SYS_NICE)");
    let mut line = String::new();
    let mut out = child.stdout.take().expect("piped");
    let mut byte = [0u8; 1];
    while out.read(&mut byte).expect("witness port") == 1 && byte[0] != b'\n' {
        line.push(char::from(byte[0]));
    }
    let witness_port: u16 = line.trim().parse().expect("the witness prints its port");
    let _witness = Proc(child);
    let url = format!("http://127.0.0.1:{witness_port}/witness");
    let run = |name: &str, yaml: String| {
        let path = dir.join(format!("{name}.yaml"));
        std::fs::write(&path, yaml).expect("write targets");
        let e = start_exporter(&path, &[], &[]);
        let mut times: [Vec<f64>; 3] = Default::default();
        for _ in 0..rounds {
            let (_, body) = scrape(e.addr);
            let t = witness_times(&body).expect("the witness answered");
            for (i, v) in t.into_iter().enumerate() {
                times[i].push(v);
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        times.map(|v| [percentile(v.clone(), 0.5), percentile(v, 0.99)])
    };
    let alone = run("witness_alone", format!("targets:\n  - {url}\n"));
    let mut yaml = plain_targets(port, load, 1);
    // In the middle of the round, when it is saturated.
    let at = yaml
        .match_indices("\n  - ")
        .nth(load / 2)
        .map_or(yaml.len(), |(i, _)| i + 1);
    yaml.insert_str(at, &format!("  - {url}\n"));
    let loaded = run("witness_loaded", yaml);
    Witness {
        alone,
        loaded,
        load,
        rounds,
    }
}

/// The witness table.
fn print_witness(w: &Witness) {
    println!(
        "\n| witness (answers in {} ms, SCHED_FIFO), {} probes each | alone median / p99 | inside {} targets median / p99 | loaded minus alone median / p99 |",
        WITNESS_DELAY.as_millis(),
        w.rounds,
        w.load
    );
    println!("|---|---:|---:|---:|");
    for (i, name) in ["connect", "processing", "total (probe_duration_seconds)"]
        .iter()
        .enumerate()
    {
        let (a, l) = (w.alone[i], w.loaded[i]);
        println!(
            "| {name} | {:.3} / {:.3} ms | {:.3} / {:.3} ms | {:+.3} / {:+.3} ms |",
            a[0] * 1e3,
            a[1] * 1e3,
            l[0] * 1e3,
            l[1] * 1e3,
            (l[0] - a[0]) * 1e3,
            (l[1] - a[1]) * 1e3
        );
    }
}

/// The names table: round time against the IP-literal round, and the resolve phase.
fn print_names(rows: &[Row]) {
    println!(
        "\n| same {} targets | round (median) | vs literals | resolve median | resolve p99 | peak RSS | ok (last round) | failed (all rounds) |",
        rows[0].targets
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for r in rows {
        println!(
            "| {} | {:.3} s | {:.2}x | {:.1} ms | {:.1} ms | {:.1} MiB | {} | {} of {} |",
            r.name,
            r.round,
            r.round / rows[0].round,
            r.resolve.0 * 1000.0,
            r.resolve.1 * 1000.0,
            r.rss,
            r.ok,
            r.failed,
            r.targets * r.rounds
        );
    }
}

/// Where the CPU went in each names scenario, per round: the exporter, nginx, the DNS servers
/// and the machine as a whole, against what the machine's cores could give in that time.
fn print_cpu(rows: &[Row]) {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "\n| CPU per round, same {} targets | scrape | exporter | nginx | DNS servers (bench process, unbound) | machine | machine busy ({cores} cores) |",
        rows[0].targets
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for r in rows {
        let c = r.cpu;
        println!(
            "| {} | {:.3} s | {:.3} s | {:.3} s | {:.3} s | {:.3} s | {:.0}% |",
            r.name,
            c.wall,
            c.exporter,
            c.nginx,
            c.dns,
            c.machine,
            100.0 * c.machine / (c.wall * cores as f64)
        );
    }
}

/// The body checks scenario (`--body-checks`): `n` targets on an nginx of its own whose every
/// answer is 1 KiB of JSON, read and checked (a header check, two body patterns, a 64 KiB
/// limit), beside the same targets without checks; prints round times and peak RSS.
fn body_checks(dir: &Path, n: usize, rounds: usize) {
    let nginx = program("nginx", "nginx");
    let port = free_port();
    let d = dir.join("body-nginx");
    std::fs::create_dir_all(&d).expect("dir");
    let body = format!("{{\"status\":\"UP\",\"pad\":\"{}\"}}", "x".repeat(1000));
    let dd = d.display();
    let conf = format!(
        "daemon off;\nworker_processes 2;\nworker_rlimit_nofile 200000;\npid {dd}/nginx.pid;\n\
         error_log {dd}/error.log crit;\nevents {{ worker_connections 65536; multi_accept on; }}\n\
         http {{\n    access_log off;\n    client_body_temp_path {dd}/b;\n    proxy_temp_path {dd}/p;\n\
         fastcgi_temp_path {dd}/f;\n    uwsgi_temp_path {dd}/u;\n    scgi_temp_path {dd}/s;\n\
         default_type application/json;\n\
         server {{\n        listen 127.0.0.1:{port} backlog=8192 reuseport;\n\
         location / {{ return 200 '{body}'; }}\n    }}\n}}\n"
    );
    std::fs::write(d.join("nginx.conf"), conf).expect("write");
    let child = Command::new(nginx)
        .arg("-e")
        .arg(d.join("error.log"))
        .arg("-p")
        .arg(&d)
        .arg("-c")
        .arg(d.join("nginx.conf"))
        .stdout(Stdio::null())
        .spawn()
        .expect("nginx starts");
    let _nginx = Proc(child);
    let end = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < end, "nginx did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    let checks = "defaults:\n  body_size_limit: 64KiB\n  \
                  fail_if_body_matches_regexp: ['\"status\":\\s*\"DOWN\"']\n  \
                  fail_if_body_not_matches_regexp: ['\"status\":\"UP\"']\n  \
                  fail_if_header_not_matches: [{header: Content-Type, regexp: '^application/json'}]\n";
    let plain = plain_targets(port, n, 1);
    let checked = format!("{checks}{plain}");
    let rows = [
        scenario(dir, &format!("{n} http, no checks"), &plain, n, rounds),
        scenario(dir, &format!("{n} http, body checks"), &checked, n, rounds),
    ];
    println!("\n| scenario | targets | round (median) | scrape (median) | peak RSS | ok |");
    println!("|---|---:|---:|---:|---:|---:|");
    for r in &rows {
        println!(
            "| {} | {} | {:.3} s | {:.3} s | {:.1} MiB | {} |",
            r.name, r.targets, r.round, r.scrape, r.rss, r.ok
        );
    }
}

fn main() {
    if std::env::args().any(|a| a == "--witness-serve") {
        witness_serve();
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let (_nginx, port, tls_port) = start_nginx(dir.path());
    let quick = std::env::args().any(|a| a == "--quick");
    let mut rows = Vec::new();
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--compare") {
        let old = args.get(i + 1).expect("--compare OLD_BINARY");
        let turns = if quick { 3 } else { 7 };
        if args.iter().any(|a| a == "--names") {
            compare_names(dir.path(), port, Path::new(old), turns);
        } else {
            compare(dir.path(), port, Path::new(old), turns);
        }
        return;
    }
    if let Some(i) = args.iter().position(|a| a == "--body-checks") {
        let n = args
            .get(i + 1)
            .and_then(|n| n.parse().ok())
            .unwrap_or(10_000);
        body_checks(dir.path(), n, if quick { 3 } else { 5 });
        return;
    }
    if let Some(i) = args.iter().position(|a| a == "--size") {
        let n: usize = args
            .get(i + 1)
            .and_then(|n| n.parse().ok())
            .expect("--size N");
        let spread = if n > 20_000 { ADDRESSES } else { 1 };
        let row = scenario(
            dir.path(),
            &format!("{n} http"),
            &plain_targets(port, n, spread),
            n,
            if quick { 3 } else { 5 },
        );
        eprintln!(
            "{n} http: round {:.3} s, scrape {:.3} s, peak RSS {:.1} MiB, {} ok, {} failed",
            row.round, row.scrape, row.rss, row.ok, row.failed
        );
        return;
    }
    if std::env::args().any(|a| a == "--names") {
        let rows = names_scenarios(dir.path(), port, 10_000, if quick { 3 } else { 5 }, true);
        print_names(&rows);
        print_cpu(&rows);
        return;
    }
    if std::env::args().any(|a| a == "--witness") {
        let w = witness(dir.path(), port, 10_000, if quick { 10 } else { 30 });
        print_witness(&w);
        return;
    }
    let sizes: &[(usize, usize)] = if quick {
        &[(1_000, 3), (10_000, 3)]
    } else {
        &[(1_000, 7), (10_000, 5), (100_000, 3)]
    };
    for &(n, rounds) in sizes {
        let spread = if n > 20_000 { ADDRESSES } else { 1 };
        let row = scenario(
            dir.path(),
            &format!("{n} http"),
            &plain_targets(port, n, spread),
            n,
            rounds,
        );
        eprintln!("{n} http: round {:.3} s", row.round);
        rows.push(row);
    }
    let mut https = format!(
        "defaults:\n  tls_config: {{ca_file: {}}}\ntargets:\n",
        dir.path().join("ca.pem").display()
    );
    for i in 0..1_000 {
        https.push_str(&format!("  - https://localhost:{tls_port}/p{i}\n"));
    }
    rows.push(scenario(dir.path(), "1000 https", &https, 1_000, 5));
    let render = render_time();
    // The names and the witness, in the same run as the table above.
    let names = names_scenarios(dir.path(), port, 10_000, if quick { 3 } else { 5 }, true);
    let witnessed = witness(dir.path(), port, 10_000, if quick { 10 } else { 30 });
    let wrk_plain = wrk(&format!("http://127.0.0.1:{port}/"));
    let wrk_tls = wrk(&format!("https://127.0.0.1:{tls_port}/"));

    println!(
        "\n| scenario | targets | round (median) | scrape (median) | probes/s | vs wrk | peak RSS | ok |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for r in &rows {
        let rate = r.targets as f64 / r.round;
        let limit = if r.name.contains("https") {
            wrk_tls
        } else {
            wrk_plain
        };
        println!(
            "| {} | {} | {:.3} s | {:.3} s | {:.0} | {:.0}% | {:.1} MiB | {} |",
            r.name,
            r.targets,
            r.round,
            r.scrape,
            rate,
            100.0 * rate / limit,
            r.rss,
            r.ok
        );
    }
    println!(
        "\nwrk, new connection per request: {wrk_plain:.0} req/s plain, {wrk_tls:.0} req/s TLS (full handshakes)"
    );
    println!(
        "render /metrics for 10,000 targets: {:.2} ms (median of 21)",
        render * 1000.0
    );
    let per_1k = rows.iter().map(|r| r.round / r.targets as f64 * 1000.0);
    println!(
        "round time per 1,000 plain targets: {}",
        per_1k
            .zip(&rows)
            .filter(|(_, r)| !r.name.contains("https"))
            .map(|(t, r)| format!("{:.3} s at {}", t, r.targets))
            .collect::<Vec<_>>()
            .join(", ")
    );
    print_names(&names);
    print_cpu(&names);
    print_witness(&witnessed);
}

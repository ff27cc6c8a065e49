//! What a round keeps of each lookup once its answer is in: the answer, for the round's other
//! probes of the name, and not the task that found it. Measured with an allocator of this test
//! binary that counts the bytes live per thread: the test's own thread runs the round and its
//! lookups, and the DNS server's threads are not counted.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::Ipv4Addr;
use std::sync::Arc;

use common::dns::{DnsServer, Rec, Zone};
use http_status_exporter::dns::{ResolvConf, Resolver, conf};
use http_status_exporter::probe_url::{Host, IpProtocol};

/// The system allocator, counting the bytes live that this thread allocated and freed.
struct Counting;

thread_local! {
    static LIVE: Cell<isize> = const { Cell::new(0) };
}

/// Count `delta` bytes on this thread (nothing while the thread is being torn down).
fn count(delta: isize) {
    let _ = LIVE.try_with(|l| l.set(l.get() + delta));
}

// SAFETY: every call is passed to the system allocator unchanged; the counter is a
// thread-local cell that allocates nothing.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size() as isize);
        // SAFETY: the caller's layout, as GlobalAlloc requires.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        count(-(layout.size() as isize));
        // SAFETY: `ptr` came from `alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(new_size as isize - layout.size() as isize);
        // SAFETY: as for `GlobalAlloc::realloc`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static COUNTING: Counting = Counting;

fn live() -> isize {
    LIVE.with(Cell::get)
}

#[tokio::test(flavor = "current_thread")]
async fn a_finished_lookup_keeps_its_answer_and_not_its_task() {
    let server = DnsServer::start(Zone {
        wildcard: Some((".mem.test".to_owned(), vec![Rec::A(Ipv4Addr::LOCALHOST)])),
        ..Zone::default()
    });
    let resolv = ResolvConf {
        nameservers: vec![server.addr],
        attempts: 1,
        ..ResolvConf::default()
    };
    let resolver = Arc::new(Resolver::builtin(resolv, conf::parse_hosts(""), false, 64));
    let round = resolver.round();
    let lookup = |i: usize| {
        let round = &round;
        async move {
            let host = Host::Name(format!("n{i}.mem.test"));
            let answer = round.resolve(&host, IpProtocol::Auto).await;
            assert!(answer.result.is_ok(), "{:?}", answer.result);
        }
    };
    // The first lookups open the pooled socket and grow the round's map to a size that holds
    // the measured ones too (2,048 names fill 4,096 buckets to half; 3,072 fit before 3,584).
    for i in 0..2048 {
        lookup(i).await;
    }
    let n = 1024;
    let before = live();
    for i in 2048..2048 + n {
        lookup(i).await;
    }
    // The tasks that found the answers have ended (each ends as it sends its answer).
    for _ in 0..16 {
        tokio::task::yield_now().await;
    }
    let per_name = (live() - before) / n as isize;
    eprintln!("{per_name} bytes kept per name looked up");
    // The answer (its addresses and the cell that hands it to the round's probes of the
    // name) and the name itself: under 200 bytes. The task that found it is 1.3 KiB more
    // (its future and tokio's header) if anything holds it until the round ends, and a
    // `watch` channel for the answer some 300 more.
    assert!(
        per_name < 512,
        "{per_name} bytes per finished lookup: its task or a channel is still held"
    );
    drop(round);
}

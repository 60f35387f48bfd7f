//! The revocation list holding one bulk revocation of 1,000,000 sessions
//! with default settings: memory, time to load, and the cost of
//! `denies()` per token against an empty list.
//!
//! `cargo bench -p latchkey-verify --bench revocations`

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Instant;

use latchkey_verify::bench_support::{FeedEntry, RevocationList};
use latchkey_verify::{Claims, RevocationOptions};

/// Counts the bytes currently allocated.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: forwards to the system allocator; only counts.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size as isize - layout.size() as isize, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const T0: i64 = 1_767_225_600;
const SESSIONS: u64 = 1_000_000;
/// Entries per feed page (the feed's snapshot page size).
const PAGE: u64 = 10_000;

fn uuid(n: u64) -> String {
    let h = format!("{:032x}", u128::from(n) * 0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835);
    format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..])
}

fn claims(sid: &str) -> Claims {
    serde_json::from_value(serde_json::json!({
        "iss": "https://id.example", "sub": uuid(u64::MAX), "aud": "latchkey", "exp": T0 + 900,
        "iat": T0, "jti": "j", "client_id": "latchkey", "sid": sid,
    }))
    .unwrap()
}

fn per_call(list: &RevocationList, tokens: &[Claims], seconds: f64) -> f64 {
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed().as_secs_f64() < seconds {
        for c in tokens {
            black_box(list.denies(black_box(c), T0 + 2));
        }
        n += tokens.len() as u64;
    }
    start.elapsed().as_secs_f64() * 1e9 / n as f64
}

fn main() {
    let seconds = std::env::var("LATCHKEY_BENCH_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(3.0);
    let empty = RevocationList::new(RevocationOptions::default(), 10);
    empty.add(Vec::new(), T0);
    // The pages are consumed by `add`: what is left after loading is the list.
    let before = LIVE.load(Ordering::Relaxed);
    let pages: Vec<Vec<FeedEntry>> = (0..SESSIONS / PAGE)
        .map(|p| {
            (0..PAGE)
                .map(|i| FeedEntry {
                    kind: "sid".into(),
                    value: uuid(p * PAGE + i),
                    created_at: T0 + 5,
                    expires_at: T0 + 900,
                })
                .collect()
        })
        .collect();

    let list = RevocationList::new(RevocationOptions::default(), 10);
    let start = Instant::now();
    for page in pages {
        list.add(page, T0 + 1);
    }
    let load = start.elapsed();
    let memory = LIVE.load(Ordering::Relaxed) - before;
    let stats = list.stats();
    assert_eq!((stats.entries, stats.dropped), (SESSIONS as usize, 0));

    // Half revoked sessions, half unrelated ones, in a shuffled order.
    let tokens: Vec<Claims> = (0..1_000u64)
        .map(|i| claims(&uuid(if i % 2 == 0 { (i * 7_919) % SESSIONS } else { SESSIONS + i })))
        .collect();
    for (i, c) in tokens.iter().enumerate() {
        assert_eq!(list.denies(c, T0 + 2), i % 2 == 0);
    }
    let empty_ns = per_call(&empty, &tokens, seconds);
    let full_ns = per_call(&list, &tokens, seconds);

    println!("revocation list, default settings, {SESSIONS} sid entries of one bulk revocation");
    println!(
        "  memory                   {:>8.1} MB ({:.1} bytes per entry)",
        memory as f64 / 1e6,
        memory as f64 / SESSIONS as f64
    );
    println!(
        "  time to load             {:>8.0} ms ({} pages of {PAGE})",
        load.as_secs_f64() * 1e3,
        SESSIONS / PAGE
    );
    println!("  denies(), empty list     {empty_ns:>8.0} ns per token");
    println!("  denies(), 1,000,000 sids {full_ns:>8.0} ns per token");
    println!("  ratio: {:.2} of the empty list's cost", full_ns / empty_ns);
}

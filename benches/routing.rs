//! Routing lookup cost: a table of 10,000 hosts x 10 paths (issue target: < 200 ns, no
//! allocation), and the cost of making a 10,000-host document live, stage by stage (target:
//! under 100 ms). Run with `cargo bench --bench routing`.

use std::alloc::{GlobalAlloc, Layout};
use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};

use aralez::config::{UpstreamsConfig, ValidationContext};
use aralez::health::HealthRegistry;
use aralez::routing::{compile, system_resolver, CompileEnv, Lookup, RoutingTable};
use criterion::{criterion_group, criterion_main, Criterion};

/// Counts allocations so the benchmark can show that a lookup makes none; allocates with
/// mimalloc, the binary's allocator, so that the apply stages cost what they cost in aralez.
struct Counting;
static INNER: aralez::allocator::Mimalloc = aralez::allocator::Mimalloc;
static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded unchanged to mimalloc.
        unsafe { INNER.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged to mimalloc.
        unsafe { INNER.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const HOSTS: usize = 10_000;
const PATHS: [&str; 10] = [
    "/",
    "/api",
    "/api/v1",
    "/api/v2",
    "/static/",
    "/img",
    "/login",
    "/admin",
    "/api/v2/users",
    "/ws",
];

fn big_table() -> RoutingTable {
    let mut doc = String::from("upstreams:\n");
    for h in 0..HOSTS {
        doc.push_str(&format!("  host-{h}.example.com:\n    paths:\n"));
        for (i, p) in PATHS.iter().enumerate() {
            doc.push_str(&format!(
                "      \"{p}\":\n        servers: [\"10.{}.{}.{}:80\"]\n",
                h / 256 % 256,
                h % 256,
                i
            ));
        }
    }
    with_env(|env| compile(&parsed(&doc), "bench", 1, env).unwrap_or_else(|e| panic!("{e}")))
}

fn parsed(doc: &str) -> UpstreamsConfig {
    UpstreamsConfig::parse(doc, "bench", ValidationContext::default())
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Runs `f` with a compile environment of fresh health state and no Consul instances.
fn with_env<T>(f: impl FnOnce(&CompileEnv) -> T) -> T {
    let health = HealthRegistry::default();
    let discovered = Default::default();
    f(&CompileEnv {
        resolve: &system_resolver,
        health: &health,
        sticky_key: b"bench",
        discovered: &discovered,
    })
}

fn lookups(c: &mut Criterion) {
    let table = big_table();
    let requests = [
        ("host-4711.example.com", "/api/v2/users/42"),
        ("HOST-9999.Example.com:8443", "/static/app.css"),
        ("host-17.example.com", "/"),
        ("host-123.example.com", "/apix"),
    ];

    let before = ALLOCATIONS.load(Ordering::Relaxed);
    for _ in 0..10_000 {
        for (host, path) in requests {
            assert!(matches!(table.lookup(host, path), Lookup::Found(_)));
        }
    }
    let allocations = ALLOCATIONS.load(Ordering::Relaxed) - before;
    println!("allocations during 40,000 lookups: {allocations}");
    assert_eq!(allocations, 0, "lookup must not allocate");

    let mut group = c.benchmark_group("routing 10k hosts x 10 paths");
    for (host, path) in requests {
        group.bench_function(format!("{host}{path}"), |b| {
            b.iter(|| {
                matches!(
                    table.lookup(black_box(host), black_box(path)),
                    Lookup::Found(_)
                )
            })
        });
    }
    group.bench_function("unknown host", |b| {
        b.iter(|| {
            matches!(
                table.lookup(black_box("nope.example.com"), black_box("/")),
                Lookup::NoHost
            )
        })
    });
    group.finish();
}

/// Host selection past the exact names: the 10,000 hosts plus two wildcards and a default.
fn wildcards(c: &mut Criterion) {
    let mut doc = String::from("default_host: fallback.example.org\nupstreams:\n");
    for h in 0..HOSTS {
        doc.push_str(&format!(
            "  host-{h}.example.com:\n    paths:\n      \"/\":\n        servers: [\"10.0.0.1:80\"]\n"
        ));
    }
    for name in ["*.example.com", "*.b.example.com", "fallback.example.org"] {
        doc.push_str(&format!(
            "  \"{name}\":\n    paths:\n      \"/\":\n        servers: [\"10.0.0.2:80\"]\n"
        ));
    }
    let table =
        with_env(|env| compile(&parsed(&doc), "bench", 1, env).unwrap_or_else(|e| panic!("{e}")));
    let requests = [
        ("exact", "host-4711.example.com"),
        ("wildcard", "x.example.com"),
        ("longer wildcard", "a.x.b.example.com"),
        ("default host", "nope.example.org"),
    ];
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    for _ in 0..10_000 {
        for (_, host) in requests {
            assert!(matches!(table.lookup(host, "/"), Lookup::Found(_)));
        }
    }
    let allocations = ALLOCATIONS.load(Ordering::Relaxed) - before;
    println!("allocations during 40,000 wildcard and default lookups: {allocations}");
    assert_eq!(allocations, 0, "lookup must not allocate");
    let mut group = c.benchmark_group("routing 10k hosts + wildcards + default");
    for (name, host) in requests {
        group.bench_function(format!("{name} {host}/"), |b| {
            b.iter(|| {
                matches!(
                    table.lookup(black_box(host), black_box("/")),
                    Lookup::Found(_)
                )
            })
        });
    }
    group.finish();
}

/// The document `benches/extras.sh` pushes: 10,000 hosts, one path each, two servers.
fn push_document() -> String {
    let mut doc = String::from("upstreams:\n");
    for i in 0..HOSTS {
        doc.push_str(&format!(
            "  host{i}.bench.local:\n    paths:\n      \"/\":\n        servers: [\"127.0.0.1:9101\", \"127.0.0.1:9102\"]\n"
        ));
    }
    doc
}

/// The same document as JSON, one host per line (generated documents often are JSON).
fn push_document_json() -> String {
    let hosts: Vec<String> = (0..HOSTS)
        .map(|i| {
            format!(
                "  \"host{i}.bench.local\": {{\"paths\": {{\"/\": {{\"servers\": [\"127.0.0.1:9101\", \"127.0.0.1:9102\"]}}}}}}"
            )
        })
        .collect();
    format!("{{\"upstreams\": {{\n{}\n}}}}\n", hosts.join(",\n"))
}

fn apply(c: &mut Criterion) {
    let doc = push_document();
    let json = push_document_json();
    // Both spell the same document.
    assert_eq!(parsed(&json).counts(), parsed(&doc).counts());
    let mut group = c.benchmark_group("apply a 10,000-host document");
    group.sample_size(10);
    group.bench_function("span index (error positions)", |b| {
        b.iter(|| aralez::config::spans::SpanIndex::build(black_box(&doc)))
    });
    group.bench_function("parse and validate", |b| {
        b.iter(|| UpstreamsConfig::parse(black_box(&doc), "bench", ValidationContext::default()))
    });
    group.bench_function("parse and validate (JSON)", |b| {
        b.iter(|| UpstreamsConfig::parse(black_box(&json), "bench", ValidationContext::default()))
    });
    let config = parsed(&doc);
    with_env(|env| {
        group.bench_function("compile", |b| {
            b.iter(|| compile(black_box(&config), "bench", 1, env))
        })
    });
    // The whole apply, alternating two documents so that each one is a real change.
    let other = doc.replace("127.0.0.1:9102", "127.0.0.1:9103");
    let store =
        aralez::routing::RouteStore::new(ValidationContext::default(), Box::new(system_resolver));
    let mut flip = false;
    group.bench_function("RouteStore::apply (no persist)", |b| {
        b.iter(|| {
            flip = !flip;
            store
                .apply(if flip { &doc } else { &other }, "bench")
                .unwrap_or_else(|e| panic!("{e}"))
        })
    });
    group.finish();
}

criterion_group!(benches, lookups, wildcards, apply);
criterion_main!(benches);

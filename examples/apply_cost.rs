//! Applies two routing documents to one store in turn, N times, and prints how long each
//! apply took (parse, validate, compile, swap; no file is written). The whole of what a push
//! costs the proxy besides the upload, for profiling under callgrind or timing here.
//!
//!     apply_cost A B [N]

use aralez::config::ValidationContext;
use aralez::routing::{system_resolver, RouteStore};

// The proxy's allocator, so that the figures include what allocation costs the proxy.
#[global_allocator]
static GLOBAL: aralez::allocator::Mimalloc = aralez::allocator::Mimalloc;

fn main() -> anyhow::Result<()> {
    let usage = || anyhow::anyhow!("usage: apply_cost A B [N]");
    let mut args = std::env::args().skip(1);
    let (a, b) = (
        args.next().ok_or_else(usage)?,
        args.next().ok_or_else(usage)?,
    );
    let times: usize = args.next().map(|n| n.parse()).transpose()?.unwrap_or(1);
    let docs = [std::fs::read_to_string(&a)?, std::fs::read_to_string(&b)?];
    let store = RouteStore::new(ValidationContext::default(), Box::new(system_resolver));
    // The first apply meets every backend for the first time; the ones after are reloads.
    store.apply(&docs[1], &b)?;
    for i in 0..times {
        let started = std::time::Instant::now();
        store.apply(&docs[i % 2], "document")?;
        println!("apply {:.1} ms", started.elapsed().as_secs_f64() * 1000.0);
    }
    Ok(())
}

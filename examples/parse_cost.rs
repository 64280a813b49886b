//! Parses and validates a routing document N times, for `benches/instructions.sh`, which
//! counts the instructions this takes under callgrind: a figure this project's noisy build
//! machine cannot disturb, unlike the time `cargo bench` measures.
//!
//!     parse_cost FILE [N]

use aralez::config::{UpstreamsConfig, ValidationContext};

// The proxy's allocator, so that the count includes what allocation costs the proxy.
#[global_allocator]
static GLOBAL: aralez::allocator::Mimalloc = aralez::allocator::Mimalloc;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let file = args
        .next()
        .ok_or_else(|| anyhow::anyhow!("usage: parse_cost FILE [N]"))?;
    let times: usize = args.next().map(|n| n.parse()).transpose()?.unwrap_or(1);
    let text = std::fs::read_to_string(&file)?;
    for _ in 0..times {
        let config = UpstreamsConfig::parse(&text, &file, ValidationContext::default())?;
        anyhow::ensure!(!config.hosts.is_empty(), "{file} has no hosts");
    }
    Ok(())
}

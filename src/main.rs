//! `aralez`: command-line entry. Parses flags, loads the configuration, runs the server.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use log::info;

use aralez::config::{read_file, ConfigError, MainConfig, ValidationContext};
use aralez::health::HealthRegistry;
use aralez::routing::{store, system_resolver, CompileEnv, RouteStore};
use aralez::server::{Aralez, ProcessFlags};

#[global_allocator]
static GLOBAL: aralez::allocator::Mimalloc = aralez::allocator::Mimalloc;

#[derive(Debug, Parser)]
#[command(
    name = "aralez",
    version,
    about = "Reverse proxy with live-reloadable routing, built on Pingora"
)]
struct Cli {
    /// Path to main.yaml.
    #[arg(short = 'c', long = "config", default_value = "etc/main.yaml")]
    config: PathBuf,
    /// Check main.yaml and the upstreams file it names, print the result and exit.
    #[arg(short = 't', long = "test")]
    test: bool,
    /// Run in the background.
    #[arg(short = 'd', long = "daemon")]
    daemon: bool,
    /// Take over the listeners of a running aralez (zero-downtime upgrade).
    #[arg(short = 'u', long = "upgrade")]
    upgrade: bool,
}

fn validation_context(main: &MainConfig) -> ValidationContext {
    ValidationContext {
        tls_listener: main.proxy_address_tls.is_some(),
    }
}

/// `-t`: every error of both files, or `configuration ok` and a summary.
fn check(config: &Path) -> ExitCode {
    let result = MainConfig::load(config).and_then(|main| {
        let file = main.upstreams_conf.display().to_string();
        let text = read_file(&main.upstreams_conf)?;
        let health = HealthRegistry::default();
        let discovered = Default::default();
        let env = CompileEnv {
            resolve: &system_resolver,
            health: &health,
            sticky_key: &[],
            discovered: &discovered,
        };
        let (table, _) = store::build(&text, &file, validation_context(&main), 1, &env)?;
        Ok((file, table.summary))
    });
    match result {
        Ok((file, s)) => {
            println!("configuration ok");
            println!(
                "{} and {file}: {} hosts, {} routes, {} backends",
                config.display(),
                s.hosts,
                s.routes,
                s.backends
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            eprintln!("configuration test failed ({} errors)", e.issues.len());
            ExitCode::FAILURE
        }
    }
}

fn run(cli: &Cli) -> anyhow::Result<()> {
    let main = MainConfig::load(&cli.config).map_err(as_report)?;
    aralez::logging::init(&main.log_level);

    let sticky_key = aralez::balance::sticky::key_for(main.master_key.as_deref())
        .context("cannot make a key for sticky-session ids")?;
    let store = Arc::new(
        RouteStore::new(validation_context(&main), Box::new(system_resolver))
            .with_sticky_key(&sticky_key),
    );
    let file = main.upstreams_conf.display().to_string();
    if main.cluster.is_some() && !main.upstreams_conf.exists() {
        // Fleet mode without a cached copy yet: the Consul key fills the table.
        log::warn!("{file} does not exist yet: starting empty until the consul key is read");
    } else {
        let text = read_file(&main.upstreams_conf).map_err(as_report)?;
        let outcome = store.apply(&text, &file).map_err(as_report)?;
        aralez::metrics::count_reload("startup", &outcome);
        info!("loaded {file}: {}", outcome.summary());
    }

    let flags = ProcessFlags {
        daemon: cli.daemon,
        upgrade: cli.upgrade,
    };
    let aralez = Aralez::build(&main, flags, store).context("cannot start the proxy")?;
    info!("proxy listening on http://{}", main.proxy_address_http);
    if let Some(tls) = &main.proxy_address_tls {
        info!("proxy listening on https://{tls}");
    }
    aralez.run();
    Ok(())
}

/// Config errors already name file and position; print them as they are.
fn as_report(e: ConfigError) -> anyhow::Error {
    anyhow::anyhow!("{e}")
}

/// SIGHUP's and SIGUSR1's default action ends the process. Ignore them until their handlers
/// are installed (file watcher, access log; which replace this), so that a reload or
/// log-rotation signal sent during start-up, or with the access log off, is harmless.
fn ignore_reload_signals_until_ready() {
    // SAFETY: setting a signal's disposition to SIG_IGN has no memory-safety preconditions and
    // happens before any other thread exists.
    unsafe {
        libc::signal(libc::SIGHUP, libc::SIG_IGN);
        libc::signal(libc::SIGUSR1, libc::SIG_IGN);
    }
}

fn main() -> ExitCode {
    aralez::allocator::tune();
    ignore_reload_signals_until_ready();
    let cli = Cli::parse();
    if cli.test {
        return check(&cli.config);
    }
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("aralez: {e:#}");
            ExitCode::FAILURE
        }
    }
}

//! `aralez`: command-line entry. Parses flags, loads the configuration, runs the server.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use log::info;

use aralez::config::{read_file, ConfigError, MainConfig};
use aralez::routing::{system_resolver, RouteStore};
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

/// `-t`: every error of both files, or `configuration ok` and a summary.
fn check(config: &Path) -> ExitCode {
    match aralez::check::check(config) {
        Ok(c) => {
            let s = c.summary;
            println!("configuration ok");
            println!(
                "{} and {}: {} hosts, {} routes, {} backends",
                config.display(),
                c.upstreams_file,
                s.hosts,
                s.routes,
                s.backends
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            report(&e);
            ExitCode::FAILURE
        }
    }
}

fn report(e: &ConfigError) {
    eprintln!("{e}");
    eprintln!("configuration test failed ({} errors)", e.issues.len());
}

fn run(cli: &Cli) -> anyhow::Result<()> {
    let main = match MainConfig::load(&cli.config) {
        Ok(main) => main,
        Err(e) => {
            // Every error of both files, as `-t` lists them.
            report(&aralez::check::check(&cli.config).err().unwrap_or(e));
            return Err(anyhow::anyhow!("refusing to start"));
        }
    };
    aralez::logging::init(&main.log_level);

    let sticky_key = aralez::balance::sticky::key_for(main.master_key.as_deref())
        .context("cannot make a key for sticky-session ids")?;
    let store = Arc::new(
        RouteStore::new(
            aralez::check::validation_context(&main),
            Box::new(system_resolver),
        )
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
    if !(main.daemon || cli.daemon) {
        // Pingora honours both only when it daemonizes.
        aralez::pidfile::write(&main.pid_file, main.user.as_deref())
            .with_context(|| format!("pid_file {}", main.pid_file.display()))?;
        if let Some(path) = &main.error_log {
            aralez::logging::redirect_stderr(path)
                .with_context(|| format!("error_log {}", path.display()))?;
        }
    }
    info!("proxy listening on http://{}", main.proxy_address_http);
    if let Some(tls) = &main.proxy_address_tls {
        info!("proxy listening on https://{tls}");
    }
    aralez.run();
    aralez::pidfile::remove();
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

//! `aralez -t`: every problem of main.yaml and of the upstreams file it names, in one run,
//! through the functions start-up uses (so `-t` passes what start-up takes).

use std::path::Path;

use crate::config::{
    read_file, ConfigError, Issue, MainConfig, UpstreamsConfig, ValidationContext,
};
use crate::health::HealthRegistry;
use crate::routing::{compile, system_resolver, CompileEnv, Summary};

/// What a passing check found.
#[derive(Debug)]
pub struct Checked {
    pub main: MainConfig,
    /// The upstreams file, as named in messages.
    pub upstreams_file: String,
    pub summary: Summary,
}

/// What validating the routing document needs to know about main.yaml.
pub fn validation_context(main: &MainConfig) -> ValidationContext {
    ValidationContext {
        tls_listener: main.proxy_address_tls.is_some(),
    }
}

/// main.yaml's text as `-t` checks it (relative paths from the current folder), without the
/// upstreams file.
pub fn check_main(text: &str, file: &str) -> Result<MainConfig, ConfigError> {
    let (config, issues) = MainConfig::from_text(text, file, Path::new("."))?;
    if issues.is_empty() {
        Ok(config)
    } else {
        Err(ConfigError { issues })
    }
}

/// Checks main.yaml at `path` and the upstreams file it names; every problem of both.
pub fn check(path: &Path) -> Result<Checked, ConfigError> {
    let (main, mut issues) = MainConfig::load_all(path)?;
    by_place(&mut issues);
    let upstreams_file = main.upstreams_conf.display().to_string();
    let mut summary = Summary::default();
    // A refused `upstreams_conf` names no file to check.
    if !issues.iter().any(|i| i.key_path == "upstreams_conf") {
        match check_upstreams(&main, &upstreams_file) {
            Ok(s) => summary = s,
            Err(mut e) => {
                by_place(&mut e.issues);
                issues.extend(e.issues);
            }
        }
    }
    if issues.is_empty() {
        Ok(Checked {
            main,
            upstreams_file,
            summary,
        })
    } else {
        Err(ConfigError { issues })
    }
}

/// The routing document: its own problems and its unresolvable server names together.
fn check_upstreams(main: &MainConfig, file: &str) -> Result<Summary, ConfigError> {
    if main.cluster.is_some() && !main.upstreams_conf.exists() {
        // Fleet mode starts empty until the Consul key is read.
        return Ok(Summary::default());
    }
    let text = read_file(&main.upstreams_conf)?;
    let (config, mut issues): (UpstreamsConfig, Vec<Issue>) =
        UpstreamsConfig::parse_all(&text, file, validation_context(main))?;
    let health = HealthRegistry::default();
    let discovered = Default::default();
    let env = CompileEnv {
        resolve: &system_resolver,
        health: &health,
        sticky_key: &[],
        discovered: &discovered,
    };
    match compile(&config, file, 1, &env) {
        Ok(table) if issues.is_empty() => return Ok(table.summary),
        Ok(_) => {}
        Err(e) => issues.extend(e.locate(&text).issues),
    }
    Err(ConfigError { issues })
}

/// In file order (issues about a whole file first), as an editor would walk them.
fn by_place(issues: &mut [Issue]) {
    issues.sort_by_key(|i| i.location.map(|l| (l.line, l.column)));
}

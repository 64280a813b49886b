//! The live routing table and the one function that replaces it.
//!
//! Every source (file watcher, Consul, config API) calls [`RouteStore::apply`]: parse,
//! validate, compile, then one `ArcSwap::store`. A request loads the table once and keeps
//! that snapshot to its end, so a reload can never show it a half-built table.

use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;

use crate::config::upstreams::Provider;
use crate::config::{ConfigError, Issue, UpstreamsConfig, ValidationContext};

use super::compile::{compile, Resolver};
use super::table::{RoutingTable, Summary};

/// What `apply` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApplyOutcome {
    /// A new table is live.
    Applied(Summary),
    /// The document was identical to the live one; nothing changed.
    Unchanged(Summary),
}

impl ApplyOutcome {
    pub fn summary(&self) -> Summary {
        match self {
            ApplyOutcome::Applied(s) | ApplyOutcome::Unchanged(s) => *s,
        }
    }
}

struct Writer {
    /// The text of the live document, to skip identical reloads.
    live_text: Option<String>,
    generation: u64,
}

/// The live table, shared by the proxy and every config source.
pub struct RouteStore {
    live: ArcSwap<RoutingTable>,
    writer: Mutex<Writer>,
    ctx: ValidationContext,
    resolve: Box<Resolver>,
}

impl RouteStore {
    /// An empty store (generation 0, no routes).
    pub fn new(ctx: ValidationContext, resolve: Box<Resolver>) -> Self {
        RouteStore {
            live: ArcSwap::from_pointee(RoutingTable::default()),
            writer: Mutex::new(Writer {
                live_text: None,
                generation: 0,
            }),
            ctx,
            resolve,
        }
    }

    /// The live table. Cheap: one atomic load and reference count increment.
    pub fn load(&self) -> Arc<RoutingTable> {
        self.live.load_full()
    }

    /// Parses, validates and compiles `text` and makes it live. `source` names it in errors.
    /// On error the live table is untouched. Blocking (resolves names): call it from a
    /// blocking context.
    pub fn apply(&self, text: &str, source: &str) -> Result<ApplyOutcome, ConfigError> {
        // A poisoned lock only means another apply panicked; its state is still consistent
        // because the table is swapped last.
        let mut writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        if writer.live_text.as_deref() == Some(text) {
            return Ok(ApplyOutcome::Unchanged(self.live.load().summary));
        }
        let table = build(text, source, self.ctx, writer.generation + 1, &self.resolve)?;
        let summary = table.summary;
        self.live.store(Arc::new(table));
        writer.generation = summary.generation;
        writer.live_text = Some(text.to_string());
        Ok(ApplyOutcome::Applied(summary))
    }
}

/// Parse, validate and compile without making anything live (used by `-t` and `apply`).
pub fn build(
    text: &str,
    source: &str,
    ctx: ValidationContext,
    generation: u64,
    resolve: &Resolver,
) -> Result<RoutingTable, ConfigError> {
    let config = UpstreamsConfig::parse(text, source, ctx)?;
    if config.provider == Provider::Consul {
        return Err(ConfigError {
            issues: vec![Issue {
                file: source.to_string(),
                location: None,
                key_path: "provider".into(),
                message: "the consul provider is not available in this version of aralez; use provider: file".into(),
            }],
        });
    }
    compile(&config, source, generation, resolve)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routing::compile::system_resolver;

    const DOC: &str = "a.com:\n  paths:\n    \"/\":\n      servers: [\"127.0.0.1:1\"]\n";

    fn store() -> RouteStore {
        RouteStore::new(ValidationContext::default(), Box::new(system_resolver))
    }

    #[test]
    fn apply_swaps_and_counts_generations() {
        let s = store();
        assert_eq!(s.load().summary.generation, 0);
        let out = s.apply(DOC, "u").unwrap();
        assert!(matches!(
            out,
            ApplyOutcome::Applied(Summary {
                generation: 1,
                hosts: 1,
                ..
            })
        ));
        assert!(matches!(
            s.apply(DOC, "u").unwrap(),
            ApplyOutcome::Unchanged(Summary { generation: 1, .. })
        ));
        let doc2 = DOC.replace("a.com", "b.com");
        assert_eq!(s.apply(&doc2, "u").unwrap().summary().generation, 2);
    }

    #[test]
    fn bad_input_keeps_the_live_table() {
        let s = store();
        s.apply(DOC, "u").unwrap();
        let before = s.load();
        assert!(s
            .apply(
                "a.com:\n  paths:\n    \"/\":\n      servers: [\"x\"]\n",
                "u"
            )
            .is_err());
        assert!(Arc::ptr_eq(&before, &s.load()));
        // The failed text does not count as live: applying the good one again is unchanged.
        assert!(matches!(
            s.apply(DOC, "u").unwrap(),
            ApplyOutcome::Unchanged(_)
        ));
    }
}

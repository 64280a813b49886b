//! Configuration errors: every problem found in a file, each with where it is.

use std::fmt;

/// A position in a YAML file, 1-based like editors show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    pub line: usize,
    pub column: usize,
}

/// One problem in one configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    /// The file as the operator named it (or `<pushed>` for a document without a file).
    pub file: String,
    pub location: Option<Location>,
    /// Dotted key path, e.g. `upstreams.example.com.paths./api.servers[1]`; empty for the root.
    pub key_path: String,
    pub message: String,
}

impl fmt::Display for Issue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(loc) = self.location {
            write!(f, ":{}:{}", loc.line, loc.column)?;
        }
        if !self.key_path.is_empty() {
            write!(f, ": {}", self.key_path)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Every problem found while loading a configuration file. Never empty.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    pub issues: Vec<Issue>,
}

impl ConfigError {
    /// Fills in the positions of issues found after parsing (compile: name resolution),
    /// from their key paths in `text`.
    pub fn locate(mut self, text: &str) -> Self {
        if self.issues.iter().any(|i| i.location.is_none()) {
            let spans = super::spans::SpanIndex::build(text);
            for issue in self.issues.iter_mut().filter(|i| i.location.is_none()) {
                issue.location = spans.value_at(&issue.key_path);
            }
        }
        self
    }

    /// An error about a whole file (unreadable, empty, ...), without a position.
    pub fn whole_file(file: &str, message: impl Into<String>) -> Self {
        ConfigError {
            issues: vec![Issue {
                file: file.to_string(),
                location: None,
                key_path: String::new(),
                message: message.into(),
            }],
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, issue) in self.issues.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{issue}")?;
        }
        Ok(())
    }
}

/// `did you mean` text for an unknown key, or an empty string when nothing is close.
pub fn suggestion(unknown: &str, known: &[&str]) -> String {
    known
        .iter()
        .map(|k| (strsim::jaro_winkler(unknown, k), *k))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, k)| format!("; did you mean `{k}`?"))
        .unwrap_or_default()
}

/// Collects issues for one file, placing each at the position of its key path.
pub struct IssueSink<'a> {
    file: &'a str,
    spans: &'a super::spans::LazySpans<'a>,
    issues: Vec<Issue>,
}

impl<'a> IssueSink<'a> {
    pub fn new(file: &'a str, spans: &'a super::spans::LazySpans<'a>) -> Self {
        IssueSink {
            file,
            spans,
            issues: Vec::new(),
        }
    }

    pub fn push(&mut self, key_path: impl std::fmt::Display, message: impl Into<String>) {
        let key_path = key_path.to_string();
        self.issues.push(Issue {
            file: self.file.to_string(),
            location: self.spans.get().value_at(&key_path),
            key_path,
            message: message.into(),
        });
    }

    /// Reports a problem with the key that ends `key_path` itself (not its value).
    pub fn push_key(&mut self, key_path: impl std::fmt::Display, message: impl Into<String>) {
        let key_path = key_path.to_string();
        self.issues.push(Issue {
            file: self.file.to_string(),
            location: self.spans.get().key_at(&key_path),
            key_path,
            message: message.into(),
        });
    }

    /// Reports a key that is not in `known`, placed at the key itself.
    pub fn unknown_key(&mut self, parent_path: impl std::fmt::Display, key: &str, known: &[&str]) {
        let key_path = super::spans::join_key(&parent_path.to_string(), key);
        self.issues.push(Issue {
            file: self.file.to_string(),
            location: self.spans.get().key_at(&key_path),
            key_path,
            message: format!("unknown key `{key}`{}", suggestion(key, known)),
        });
    }

    pub fn is_empty(&self) -> bool {
        self.issues.is_empty()
    }

    /// The issues collected, to merge with others.
    pub fn into_issues(self) -> Vec<Issue> {
        self.issues
    }

    pub fn finish(self) -> Result<(), ConfigError> {
        if self.issues.is_empty() {
            Ok(())
        } else {
            Err(ConfigError {
                issues: self.issues,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_keys_only() {
        let known = ["threads", "pid_file", "proxy_address_http"];
        assert_eq!(suggestion("thread", &known), "; did you mean `threads`?");
        assert_eq!(
            suggestion("proxy_adress_http", &known),
            "; did you mean `proxy_address_http`?"
        );
        assert_eq!(suggestion("zzz", &known), "");
    }

    #[test]
    fn issue_display_has_file_position_and_path() {
        let issue = Issue {
            file: "upstreams.yaml".into(),
            location: Some(Location {
                line: 14,
                column: 11,
            }),
            key_path: "upstreams.a.paths./api.servers[1]".into(),
            message: "\"10.0.0.1\" has no port".into(),
        };
        assert_eq!(
            issue.to_string(),
            "upstreams.yaml:14:11: upstreams.a.paths./api.servers[1]: \"10.0.0.1\" has no port"
        );
    }
}

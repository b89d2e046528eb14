//! The two pattern kinds rules use: hosts (`api.example.com`, `*.example.com`,
//! `localhost:8080`) and paths (`~/.ssh/**`, `**/.env*`, `*.pem`).

use std::path::Path;

use globset::{Glob, GlobBuilder, GlobMatcher};

/// A host pattern: an exact name, or `*.` and a suffix (any subdomain, not the domain
/// itself), or `*` (any host); optionally `:port`.
#[derive(Debug, Clone)]
pub(crate) struct HostPattern {
    text: String,
    /// `None` for `*`; the suffix after `*` (with its leading dot) for `*.x`.
    suffix: Option<String>,
    exact: Option<String>,
    port: Option<u16>,
}

impl HostPattern {
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        let lower = text.trim().to_ascii_lowercase();
        let (host, port) = split_port(&lower)?;
        let bad = |why: &str| {
            Err(format!(
                "'{text}' is not a host pattern ({why}); write a name such as api.example.com, *.example.com or localhost:8080"
            ))
        };
        if host.is_empty() {
            return bad("it is empty");
        }
        if host.contains('/') {
            return bad("a host has no path; use `url` for URL prefixes");
        }
        let (suffix, exact) = if host == "*" {
            (None, None)
        } else if let Some(rest) = host.strip_prefix("*.") {
            (Some(format!(".{rest}")), None)
        } else {
            (None, Some(host.to_string()))
        };
        let name = suffix.as_deref().or(exact.as_deref()).unwrap_or("x");
        let ok = name
            .trim_start_matches('.')
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':' | '[' | ']'));
        if !ok || name.contains('*') {
            return bad("only letters, digits, '.', '-' and a leading '*.' are allowed");
        }
        Ok(Self {
            text: text.trim().to_string(),
            suffix,
            exact: exact.map(|h| h.trim_matches(['[', ']']).to_string()),
            port,
        })
    }

    pub(crate) fn matches(&self, host: &str, port: Option<u16>) -> bool {
        if let Some(want) = self.port
            && port != Some(want)
        {
            return false;
        }
        let host = host.trim_matches(['[', ']']).to_ascii_lowercase();
        match (&self.exact, &self.suffix) {
            (Some(exact), _) => host == *exact,
            (None, Some(suffix)) => host.ends_with(suffix.as_str()),
            (None, None) => true,
        }
    }

    pub(crate) fn text(&self) -> &str {
        &self.text
    }
}

/// `host:port`, with IPv6 literals in brackets (`[::1]:8080`).
fn split_port(s: &str) -> Result<(&str, Option<u16>), String> {
    let port_at = if s.starts_with('[') {
        s.find("]:").map(|i| i + 1)
    } else if s.matches(':').count() == 1 {
        s.find(':')
    } else {
        None
    };
    match port_at {
        Some(i) => {
            let port = s[i + 1..]
                .parse()
                .map_err(|_| format!("'{}' is not a port number", &s[i + 1..]))?;
            Ok((&s[..i], Some(port)))
        }
        None => Ok((s, None)),
    }
}

/// A path pattern: `*` stays within one directory, `**` crosses them; `~/` is the home
/// directory; a pattern that is not anchored (`*.pem`, `.env*`) matches at any depth.
#[derive(Debug, Clone)]
pub(crate) struct PathPattern {
    text: String,
    matcher: GlobMatcher,
}

impl PathPattern {
    pub(crate) fn parse(text: &str, home: Option<&Path>) -> Result<Self, String> {
        let trimmed = text.trim();
        let full = if let Some(rest) = trimmed.strip_prefix("~/") {
            let home = home.ok_or_else(|| {
                format!("'{text}' starts with ~ but there is no home directory to expand it to")
            })?;
            format!(
                "{}/{rest}",
                home.display().to_string().trim_end_matches('/')
            )
        } else if trimmed.starts_with('/') || trimmed.starts_with("**") {
            trimmed.to_string()
        } else if trimmed.is_empty() {
            return Err("a path pattern is empty".into());
        } else {
            format!("**/{trimmed}")
        };
        // A directory pattern covers what is inside it.
        let full = match full.strip_suffix('/') {
            Some(dir) => format!("{dir}/**"),
            None => full,
        };
        let glob: Glob = GlobBuilder::new(&full)
            .literal_separator(true)
            .backslash_escape(true)
            .build()
            .map_err(|e| format!("'{text}' is not a path pattern: {}", e.kind()))?;
        Ok(Self {
            text: trimmed.to_string(),
            matcher: glob.compile_matcher(),
        })
    }

    pub(crate) fn matches(&self, path: &Path) -> bool {
        self.matcher.is_match(path)
    }

    pub(crate) fn text(&self) -> &str {
        &self.text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_patterns() {
        let p = HostPattern::parse("*.Example.com").unwrap();
        assert!(p.matches("a.example.com", None));
        assert!(p.matches("a.b.EXAMPLE.com", Some(443)));
        assert!(!p.matches("example.com", None));
        assert!(!p.matches("badexample.com", None));
        let p = HostPattern::parse("localhost:8080").unwrap();
        assert!(p.matches("localhost", Some(8080)));
        assert!(!p.matches("localhost", Some(8081)));
        assert!(!p.matches("localhost", None));
        let p = HostPattern::parse("[::1]:8080").unwrap();
        assert!(p.matches("[::1]", Some(8080)));
        assert!(p.matches("::1", Some(8080)));
        assert!(HostPattern::parse("*").unwrap().matches("anything", None));
        for bad in ["", "a/b", "ex*ample.com", "a.com:http", "a b"] {
            assert!(HostPattern::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn path_patterns() {
        let home = Path::new("/home/u");
        let p = PathPattern::parse("~/.ssh/**", Some(home)).unwrap();
        assert!(p.matches(Path::new("/home/u/.ssh/id_rsa")));
        assert!(!p.matches(Path::new("/home/v/.ssh/id_rsa")));
        let p = PathPattern::parse(".env*", None).unwrap();
        assert!(p.matches(Path::new("/w/app/.env")));
        assert!(p.matches(Path::new("/w/.env.local")));
        assert!(!p.matches(Path::new("/w/env")));
        let p = PathPattern::parse("*.pem", None).unwrap();
        assert!(p.matches(Path::new("/a/b/c.pem")));
        let p = PathPattern::parse("/srv/data/", None).unwrap();
        assert!(p.matches(Path::new("/srv/data/x/y")));
        let p = PathPattern::parse("/srv/*", None).unwrap();
        assert!(!p.matches(Path::new("/srv/data/x")));
        assert!(PathPattern::parse("~/x", None).is_err());
        assert!(PathPattern::parse("a[", None).is_err());
    }
}

//! Credentials inside endpoint URLs. They are never stored in a session or printed:
//! every place that shows or records an endpoint passes it through [`redact_endpoint`].

use std::borrow::Cow;

/// Query parameters whose values are credentials often enough to never be kept
/// (`?key=` for Gemini, `sig=` for Azure SAS, `access_token=`, …).
const SECRET_PARAM_HINTS: [&str; 7] = [
    "key",
    "token",
    "secret",
    "sig",
    "pass",
    "auth",
    "credential",
];

const REDACTED: &str = "[REDACTED]";

/// `endpoint` with any credentials removed: the `user:password@` part of the authority
/// and the values of query parameters whose names look like keys. Borrowed back
/// unchanged when there were none.
pub fn redact_endpoint(endpoint: &str) -> Cow<'_, str> {
    let (before_fragment, fragment) = match endpoint.find('#') {
        Some(i) => endpoint.split_at(i),
        None => (endpoint, ""),
    };
    let (base, query) = match before_fragment.find('?') {
        Some(i) => (&before_fragment[..i], Some(&before_fragment[i + 1..])),
        None => (before_fragment, None),
    };

    let mut changed = false;
    let base = match strip_userinfo(base) {
        Some(b) => {
            changed = true;
            Cow::Owned(b)
        }
        None => Cow::Borrowed(base),
    };
    let query = query.map(|q| {
        q.split('&')
            .map(|pair| {
                let name = pair.split_once('=').map_or(pair, |(n, _)| n);
                let lower = name.to_ascii_lowercase();
                if pair.contains('=') && SECRET_PARAM_HINTS.iter().any(|h| lower.contains(h)) {
                    changed = true;
                    format!("{name}={REDACTED}")
                } else {
                    pair.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join("&")
    });

    if !changed {
        return Cow::Borrowed(endpoint);
    }
    let mut out = base.into_owned();
    if let Some(q) = query {
        out.push('?');
        out.push_str(&q);
    }
    out.push_str(fragment);
    Cow::Owned(out)
}

/// Whether `endpoint` carries a credential [`redact_endpoint`] would remove.
pub fn has_credentials(endpoint: &str) -> bool {
    matches!(redact_endpoint(endpoint), Cow::Owned(_))
}

/// `Some(url without userinfo)` when the authority carries `user[:password]@`.
fn strip_userinfo(base: &str) -> Option<String> {
    let authority_start = base.find("://")? + 3;
    let rest = &base[authority_start..];
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let at = rest[..authority_end].rfind('@')?;
    Some(format!(
        "{}{REDACTED}@{}",
        &base[..authority_start],
        &rest[at + 1..]
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;

    #[test]
    fn ordinary_endpoints_are_kept_as_they_are() {
        for url in [
            "",
            "local",
            "http://127.0.0.1:11434/v1",
            "https://api.openai.com/v1/chat/completions",
            "https://x.openai.azure.com/openai?api-version=2024-06-01",
            "https://example.com/path@thing",
        ] {
            assert!(
                matches!(redact_endpoint(url), Cow::Borrowed(u) if u == url),
                "{url}"
            );
            assert!(!has_credentials(url), "{url}");
        }
    }

    #[test]
    fn credentials_are_removed() {
        let cases = [
            (
                "https://bob:hunter2@example.com/v1",
                "https://[REDACTED]@example.com/v1",
            ),
            (
                "https://g.example.com/v1beta/models?key=AIzaSECRET&alt=sse",
                "https://g.example.com/v1beta/models?key=[REDACTED]&alt=sse",
            ),
            (
                "https://u:p@h/x?api-version=1&API_KEY=s&access_token=t#frag",
                "https://[REDACTED]@h/x?api-version=1&API_KEY=[REDACTED]&access_token=[REDACTED]#frag",
            ),
        ];
        for (input, want) in cases {
            assert_eq!(redact_endpoint(input), want);
            assert!(has_credentials(input), "{input}");
        }
    }
}

use std::net::IpAddr;

use pai_types::Locality;

/// Where an endpoint runs, judged from its URL's host: loopback, private and link-local
/// addresses, `localhost` and `.local` names are this machine or its LAN; all else is remote.
/// An unparsable URL counts as remote, the safe side for a user who cares where data goes.
pub fn infer_locality(url: &str) -> Locality {
    let Ok(parsed) = reqwest::Url::parse(url) else {
        return Locality::Remote;
    };
    let Some(host) = parsed.host_str() else {
        return Locality::Remote;
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.eq_ignore_ascii_case("localhost") || host.to_ascii_lowercase().ends_with(".local") {
        return Locality::Local;
    }
    match host.parse::<IpAddr>() {
        Ok(IpAddr::V4(ip)) if ip.is_loopback() || ip.is_private() || ip.is_link_local() => {
            Locality::Local
        }
        Ok(IpAddr::V6(ip))
            if ip.is_loopback() || ip.is_unique_local() || ip.is_unicast_link_local() =>
        {
            Locality::Local
        }
        _ => Locality::Remote,
    }
}

/// The proxy requests to `url` go through, given the configured `proxy`: it, unless the
/// URL's host is this machine's loopback (`localhost`, 127.0.0.0/8, `::1`), which is
/// always reached directly; `None` for a URL that is not http(s) (a model file).
pub fn proxy_for<'a>(url: &str, proxy: Option<&'a str>) -> Option<&'a str> {
    let proxy = proxy?;
    let parsed = reqwest::Url::parse(url).ok()?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return None;
    }
    let host = parsed.host_str()?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
    (!loopback).then_some(proxy)
}

/// Where `url`'s data goes when `proxy` is configured: through a proxy it is remote (the
/// proxy sees it all), else as [`infer_locality`] judges the host.
pub fn locality_via(url: &str, proxy: Option<&str>) -> Locality {
    match proxy_for(url, proxy) {
        Some(_) => Locality::Remote,
        None => infer_locality(url),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_proxy_is_used_for_all_but_loopback_and_makes_the_endpoint_remote() {
        let proxy = Some("http://proxy.example:3128");
        for url in [
            "http://127.0.0.1:8080/v1",
            "http://127.1.2.3/v1",
            "http://LOCALHOST:1234/v1",
            "http://[::1]:11434",
            "/home/u/model.gguf",
        ] {
            assert_eq!(proxy_for(url, proxy), None, "{url}");
            assert_eq!(locality_via(url, proxy), infer_locality(url), "{url}");
        }
        for url in [
            "https://api.openai.com/v1",
            "http://192.168.1.5/v1",
            "http://gpu-box.local:8000/v1",
            "http://localhost.evil.com/v1",
        ] {
            assert_eq!(proxy_for(url, proxy), proxy, "{url}");
            assert_eq!(locality_via(url, proxy), Locality::Remote, "{url}");
        }
        assert_eq!(proxy_for("https://api.openai.com/v1", None), None);
        assert_eq!(locality_via("http://192.168.1.5/v1", None), Locality::Local);
    }

    #[test]
    fn loopback_private_and_dot_local_are_local() {
        for url in [
            "http://127.0.0.1:8080/v1",
            "http://localhost:1234/v1",
            "http://[::1]:11434",
            "http://192.168.1.5/v1",
            "http://10.0.0.2/v1",
            "http://172.16.3.4/v1",
            "http://gpu-box.local:8000/v1",
        ] {
            assert_eq!(infer_locality(url), Locality::Local, "{url}");
        }
    }

    #[test]
    fn public_hosts_and_garbage_are_remote() {
        for url in [
            "https://api.openai.com/v1",
            "http://8.8.8.8/v1",
            "not a url",
            "https://localhost.evil.com/v1",
        ] {
            assert_eq!(infer_locality(url), Locality::Remote, "{url}");
        }
    }
}

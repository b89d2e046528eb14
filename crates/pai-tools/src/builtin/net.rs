//! Where a network tool's hop goes: the host resolved here (not by the HTTP client), every
//! address classified, one chosen, so the gate checks the address that is then connected to.

use std::error::Error as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use reqwest::Url;
use url::Host;

use crate::tool::{Hop, ToolError};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why `ip` is not a public internet address, or `None` when it is one.
///
/// Labels: `loopback`, `private`, `link-local`, `cgnat`, `multicast`, `unspecified` (also
/// 0.0.0.0/8, "this network"), `broadcast`, `metadata` (cloud instance metadata services),
/// `documentation`, `benchmarking`, `reserved`. IPv6 forms that carry an IPv4 address
/// (IPv4-mapped, IPv4-compatible, NAT64 64:ff9b::/96, 6to4 2002::/16) take the label of
/// the address they carry; an IPv4-mapped or -compatible one carrying a public address is
/// still `ipv4-mapped`/`ipv4-compatible`, since no public host is reached that way, while
/// NAT64 and 6to4 of a public address are public (DNS64 networks hand out the former).
pub fn classify_addr(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

/// `(network, prefix length, label)`, most specific first: the first match wins.
const V4_RANGES: &[([u8; 4], u32, &str)] = &[
    ([0, 0, 0, 0], 8, "unspecified"),
    ([10, 0, 0, 0], 8, "private"),
    // Alibaba Cloud's metadata service sits inside the CGNAT range.
    ([100, 100, 100, 200], 32, "metadata"),
    ([100, 64, 0, 0], 10, "cgnat"),
    ([127, 0, 0, 0], 8, "loopback"),
    // AWS, GCP, Azure, OCI and others; and AWS ECS's task metadata endpoint.
    ([169, 254, 169, 254], 32, "metadata"),
    ([169, 254, 170, 2], 32, "metadata"),
    ([169, 254, 0, 0], 16, "link-local"),
    ([172, 16, 0, 0], 12, "private"),
    ([192, 0, 0, 0], 24, "reserved"),
    ([192, 0, 2, 0], 24, "documentation"),
    ([192, 88, 99, 0], 24, "reserved"),
    ([192, 168, 0, 0], 16, "private"),
    ([198, 18, 0, 0], 15, "benchmarking"),
    ([198, 51, 100, 0], 24, "documentation"),
    ([203, 0, 113, 0], 24, "documentation"),
    ([224, 0, 0, 0], 4, "multicast"),
    ([255, 255, 255, 255], 32, "broadcast"),
    ([240, 0, 0, 0], 4, "reserved"),
];

fn classify_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let bits = u32::from(ip);
    V4_RANGES
        .iter()
        .find(|(net, len, _)| {
            let mask = u32::MAX.checked_shl(32 - len).unwrap_or(0);
            bits & mask == u32::from_be_bytes(*net) & mask
        })
        .map(|(_, _, label)| *label)
}

/// Like [`V4_RANGES`], for the IPv6 ranges that carry no IPv4 address.
const V6_RANGES: &[(u128, u32, &str)] = &[
    (0x0064_ff9b_0001_0000_0000_0000_0000_0000, 48, "private"), // local-use NAT64
    (0x0100_0000_0000_0000_0000_0000_0000_0000, 64, "reserved"), // discard-only
    (
        0x2001_0db8_0000_0000_0000_0000_0000_0000,
        32,
        "documentation",
    ),
    (
        0x2001_0002_0000_0000_0000_0000_0000_0000,
        48,
        "benchmarking",
    ),
    // IETF protocol assignments, Teredo among them (its IPv4 parts are obfuscated).
    (0x2001_0000_0000_0000_0000_0000_0000_0000, 23, "reserved"),
    (
        0x3fff_0000_0000_0000_0000_0000_0000_0000,
        20,
        "documentation",
    ),
    // AWS's metadata service over IPv6.
    (0xfd00_0ec2_0000_0000_0000_0000_0000_0254, 128, "metadata"),
    (0xfc00_0000_0000_0000_0000_0000_0000_0000, 7, "private"),
    (0xfe80_0000_0000_0000_0000_0000_0000_0000, 10, "link-local"),
    (0xfec0_0000_0000_0000_0000_0000_0000_0000, 10, "private"), // site-local, deprecated
    (0xff00_0000_0000_0000_0000_0000_0000_0000, 8, "multicast"),
];

fn classify_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let bits = u128::from(ip);
    let in_net = |net: u128, len: u32| {
        let mask = u128::MAX.checked_shl(128 - len).unwrap_or(0);
        bits & mask == net & mask
    };
    // The low 32 bits, for the forms that carry an IPv4 address there.
    let low_v4 = Ipv4Addr::from(bits as u32);
    if bits == 0 {
        return Some("unspecified");
    }
    if bits == 1 {
        return Some("loopback");
    }
    if in_net(0xffff_0000_0000, 96) {
        return Some(classify_v4(low_v4).unwrap_or("ipv4-mapped"));
    }
    if in_net(0, 96) {
        return Some(classify_v4(low_v4).unwrap_or("ipv4-compatible"));
    }
    if in_net(0x0064_ff9b_0000_0000_0000_0000_0000_0000, 96) {
        return classify_v4(low_v4);
    }
    if in_net(0x2002_0000_0000_0000_0000_0000_0000_0000, 16) {
        return classify_v4(Ipv4Addr::from((bits >> 80) as u32));
    }
    if let Some((_, _, label)) = V6_RANGES.iter().find(|(net, len, _)| in_net(*net, *len)) {
        return Some(label);
    }
    // Only 2000::/3 is allocated for global unicast; the rest (::/8 included) is not public.
    if !in_net(0x2000_0000_0000_0000_0000_0000_0000_0000, 3) {
        return Some("reserved");
    }
    None
}

/// The host and port of an http(s) URL as a hop would name them: parsed the WHATWG way
/// (`127.1` and `0x7f000001` become `127.0.0.1`, IPv6 without brackets, names lowercase),
/// the scheme's port when none is given. For the policy's rules, which must see the same
/// host a hop will; `None` when it is not such a URL.
pub fn url_host(url: &str) -> Option<(String, u16)> {
    let url = Url::parse(url.trim()).ok()?;
    let port = url.port_or_known_default()?;
    let host = match url.host()? {
        Host::Ipv4(ip) => ip.to_string(),
        Host::Ipv6(ip) => ip.to_string(),
        Host::Domain(domain) => domain.to_string(),
    };
    Some((host, port))
}

/// The hop to `url`: its host resolved (an IP literal as is), every address classified and
/// the first public one chosen, else the first one, for the gate to allow by rule or refuse.
pub(super) async fn plan_hop(
    tool: &str,
    method: &str,
    url: &Url,
    redirect_from: Option<&Url>,
    time_left: Duration,
) -> Result<Hop, ToolError> {
    let port = url.port_or_known_default().ok_or_else(|| {
        ToolError::InvalidArguments(format!("{url} names no port and its scheme has none"))
    })?;
    let (host, addrs) = match url.host() {
        Some(Host::Ipv4(ip)) => (ip.to_string(), vec![IpAddr::V4(ip)]),
        Some(Host::Ipv6(ip)) => (ip.to_string(), vec![IpAddr::V6(ip)]),
        Some(Host::Domain(domain)) => (domain.to_string(), resolve(domain, port, time_left).await?),
        None => {
            return Err(ToolError::InvalidArguments(format!(
                "{url} names no host; give a full URL such as https://example.org/page"
            )));
        }
    };
    let classified: Vec<_> = addrs.iter().map(|&a| (a, classify_addr(a))).collect();
    let (addr, special) = classified
        .iter()
        .find(|(_, special)| special.is_none())
        .or_else(|| classified.first())
        .copied()
        .ok_or_else(|| ToolError::Failed(format!("{host} resolves to no address")))?;
    Ok(Hop {
        tool: tool.into(),
        method: method.into(),
        url: url.to_string(),
        host,
        port,
        addr,
        special,
        redirect_from: redirect_from.map(Url::to_string),
    })
}

async fn resolve(domain: &str, port: u16, time_left: Duration) -> Result<Vec<IpAddr>, ToolError> {
    let lookup = tokio::net::lookup_host((domain, port));
    match tokio::time::timeout(time_left, lookup).await {
        Ok(Ok(addrs)) => Ok(addrs.map(|a| a.ip()).collect()),
        Ok(Err(e)) => Err(ToolError::Failed(format!(
            "cannot resolve {domain} ({e}); check the host name"
        ))),
        Err(_) => Err(ToolError::Failed(format!(
            "resolving {domain} did not finish in time; try again later"
        ))),
    }
}

/// A client that connects only to the hop's checked address: its host is pinned to it, any
/// other name fails to resolve, no proxy, no redirects of its own.
// Reviewed egress path (docs/architecture.md, "The egress lint"): the tool's own client,
// whose every hop the policy gate decides and audits.
#[allow(clippy::disallowed_types, clippy::disallowed_methods)]
pub(super) fn pinned_client(hop: &Hop, timeout: Duration) -> Result<reqwest::Client, ToolError> {
    // reqwest is built without a TLS crypto provider (its own would be aws-lc, a long C
    // build) and panics building a client when the process has none: ring becomes the
    // default, unless the embedding program installed another (then this is an error, ignored).
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT.min(timeout))
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .dns_resolver(NoLookups)
        .resolve(&hop.host, SocketAddr::new(hop.addr, hop.port))
        .user_agent(concat!("pai/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| ToolError::Failed(format!("cannot start an HTTP client: {}", chain(&e))))
}

/// The resolver of a pinned client: the checked host is answered by its override, so any
/// other lookup is a bug and must not reach the system resolver.
#[derive(Debug, Clone, Copy)]
struct NoLookups;

impl reqwest::dns::Resolve for NoLookups {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let message = format!(
            "PAI's network tools resolve hosts themselves; no lookup of {}",
            name.as_str()
        );
        Box::pin(async move { Err(message.into()) })
    }
}

/// A request that got no answer, as one line for the model: a timeout says so, anything
/// else carries reqwest's causes.
pub(super) fn request_failed(
    method: &str,
    url: &Url,
    e: &reqwest::Error,
    timeout: Duration,
) -> ToolError {
    if e.is_timeout() {
        return ToolError::Failed(format!(
            "{method} {url} did not answer within {timeout:?}; try again later"
        ));
    }
    ToolError::Failed(format!("{method} {url} failed: {}", chain(e)))
}

/// reqwest's own message is terse ("error sending request"); the causes say what went wrong.
pub(super) fn chain(e: &reqwest::Error) -> String {
    let mut message = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::net::IpAddr;

    use pretty_assertions::assert_eq;
    use reqwest::Url;

    use super::{classify_addr, pinned_client, plan_hop, url_host};
    use crate::tool::Hop;

    /// reqwest has no TLS crypto provider of its own here (`rustls-no-provider`) and panics
    /// building a client while the process has none: building one must install it.
    #[test]
    fn an_https_client_builds() {
        let hop = Hop {
            tool: "http_get".into(),
            method: "GET".into(),
            url: "https://example.org/".into(),
            host: "example.org".into(),
            port: 443,
            addr: IpAddr::V4(std::net::Ipv4Addr::new(93, 184, 215, 14)),
            special: None,
            redirect_from: None,
        };
        pinned_client(&hop, std::time::Duration::from_secs(10)).unwrap();
    }

    #[test]
    fn url_host_names_the_host_a_hop_would() {
        assert_eq!(
            url_host("http://127.1:8080/x"),
            Some(("127.0.0.1".into(), 8080))
        );
        assert_eq!(
            url_host("https://u:p@Example.ORG/"),
            Some(("example.org".into(), 443))
        );
        assert_eq!(url_host("http://[::1]/"), Some(("::1".into(), 80)));
        assert_eq!(url_host("in-process"), None);
    }

    fn label(ip: &str) -> Option<&'static str> {
        classify_addr(ip.parse::<IpAddr>().unwrap())
    }

    #[test]
    fn every_ipv4_range_has_its_label() {
        let cases = [
            ("0.0.0.0", Some("unspecified")),
            ("0.1.2.3", Some("unspecified")),
            ("10.0.0.1", Some("private")),
            ("10.255.255.255", Some("private")),
            ("100.64.0.1", Some("cgnat")),
            ("100.127.255.255", Some("cgnat")),
            ("100.100.100.200", Some("metadata")),
            ("100.128.0.0", None),
            ("127.0.0.1", Some("loopback")),
            ("127.255.255.254", Some("loopback")),
            ("169.254.169.254", Some("metadata")),
            ("169.254.170.2", Some("metadata")),
            ("169.254.1.1", Some("link-local")),
            ("172.16.0.1", Some("private")),
            ("172.31.255.255", Some("private")),
            ("172.32.0.0", None),
            ("172.15.255.255", None),
            ("192.0.0.8", Some("reserved")),
            ("192.0.2.1", Some("documentation")),
            ("192.88.99.1", Some("reserved")),
            ("192.168.1.1", Some("private")),
            ("198.18.0.1", Some("benchmarking")),
            ("198.19.255.255", Some("benchmarking")),
            ("198.20.0.0", None),
            ("198.51.100.7", Some("documentation")),
            ("203.0.113.9", Some("documentation")),
            ("224.0.0.1", Some("multicast")),
            ("239.255.255.250", Some("multicast")),
            ("240.0.0.1", Some("reserved")),
            ("255.255.255.254", Some("reserved")),
            ("255.255.255.255", Some("broadcast")),
            ("1.1.1.1", None),
            ("8.8.8.8", None),
            ("93.184.215.14", None),
            ("11.0.0.1", None),
            ("126.255.255.255", None),
            ("128.0.0.0", None),
            ("223.255.255.255", None),
        ];
        let got: Vec<_> = cases.iter().map(|(ip, _)| (*ip, label(ip))).collect();
        assert_eq!(got, cases.to_vec());
    }

    #[test]
    fn every_ipv6_range_has_its_label() {
        let cases = [
            ("::", Some("unspecified")),
            ("::1", Some("loopback")),
            // IPv4-mapped and -compatible: the IPv4 address inside decides the label.
            ("::ffff:127.0.0.1", Some("loopback")),
            ("::ffff:10.1.2.3", Some("private")),
            ("::ffff:169.254.169.254", Some("metadata")),
            ("::ffff:0.0.0.0", Some("unspecified")),
            ("::ffff:8.8.8.8", Some("ipv4-mapped")),
            ("::127.0.0.1", Some("loopback")),
            ("::192.168.0.1", Some("private")),
            ("::8.8.8.8", Some("ipv4-compatible")),
            // NAT64 and 6to4 likewise, but a public IPv4 inside is public.
            ("64:ff9b::127.0.0.1", Some("loopback")),
            ("64:ff9b::a9fe:a9fe", Some("metadata")),
            ("64:ff9b::8.8.8.8", None),
            ("64:ff9b:1::1", Some("private")),
            ("2002:7f00:1::", Some("loopback")),
            ("2002:c0a8:101::1", Some("private")),
            ("2002:808:808::1", None),
            ("100::1", Some("reserved")),
            ("2001:db8::1", Some("documentation")),
            ("3fff::1", Some("documentation")),
            ("2001:2::1", Some("benchmarking")),
            ("2001::1", Some("reserved")),
            ("fd00:ec2::254", Some("metadata")),
            ("fd00:ec2::253", Some("private")),
            ("fc00::1", Some("private")),
            ("fdff:ffff::1", Some("private")),
            ("fe80::1", Some("link-local")),
            ("febf::1", Some("link-local")),
            ("fec0::1", Some("private")),
            ("ff02::1", Some("multicast")),
            ("ff05::2", Some("multicast")),
            ("::2", Some("unspecified")), // 0.0.0.2, "this network"
            ("1::1", Some("reserved")),
            ("4000::1", Some("reserved")),
            ("2606:4700:4700::1111", None),
            ("2001:4860:4860::8888", None),
            ("2a00:1450:4001::1", None),
        ];
        let got: Vec<_> = cases.iter().map(|(ip, _)| (*ip, label(ip))).collect();
        assert_eq!(got, cases.to_vec());
    }

    /// Every spelling goes through the URL parser first, as the tool's input does; what it
    /// makes of the host is what gets classified.
    #[tokio::test]
    async fn every_spelling_of_a_special_host_is_classified_after_parsing() {
        let cases = [
            ("http://127.0.0.1/", "127.0.0.1", Some("loopback")),
            ("http://127.1/", "127.0.0.1", Some("loopback")),
            ("http://127.0.1/", "127.0.0.1", Some("loopback")),
            ("http://0x7f000001/", "127.0.0.1", Some("loopback")),
            ("http://0x7f.0.0.1/", "127.0.0.1", Some("loopback")),
            ("http://2130706433/", "127.0.0.1", Some("loopback")),
            ("http://0177.0.0.1/", "127.0.0.1", Some("loopback")),
            ("http://017700000001/", "127.0.0.1", Some("loopback")),
            ("http://127.0.0.1./", "127.0.0.1", Some("loopback")),
            ("http://%31%32%37.0.0.1/", "127.0.0.1", Some("loopback")),
            ("http://１２７.０.０.１/", "127.0.0.1", Some("loopback")),
            ("http://0/", "0.0.0.0", Some("unspecified")),
            ("http://0.0.0.0/", "0.0.0.0", Some("unspecified")),
            ("http://[::]/", "::", Some("unspecified")),
            ("http://[::1]/", "::1", Some("loopback")),
            ("http://[0:0:0:0:0:0:0:1]/", "::1", Some("loopback")),
            (
                "http://[::ffff:127.0.0.1]/",
                "::ffff:127.0.0.1",
                Some("loopback"),
            ),
            (
                "http://[::ffff:7f00:1]/",
                "::ffff:127.0.0.1",
                Some("loopback"),
            ),
            ("http://[::127.0.0.1]/", "::7f00:1", Some("loopback")),
            (
                "http://[::ffff:a9fe:a9fe]/",
                "::ffff:169.254.169.254",
                Some("metadata"),
            ),
            (
                "http://169.254.169.254/latest/",
                "169.254.169.254",
                Some("metadata"),
            ),
            ("http://0xa9fea9fe/", "169.254.169.254", Some("metadata")),
            ("http://2852039166/", "169.254.169.254", Some("metadata")),
            ("http://[fd00:ec2::254]/", "fd00:ec2::254", Some("metadata")),
            ("http://10.1/", "10.0.0.1", Some("private")),
            ("http://0xc0a80001/", "192.168.0.1", Some("private")),
            ("http://[fe80::1]/", "fe80::1", Some("link-local")),
            ("http://100.64.1.1/", "100.64.1.1", Some("cgnat")),
            (
                "http://255.255.255.255/",
                "255.255.255.255",
                Some("broadcast"),
            ),
            ("https://8.8.8.8/", "8.8.8.8", None),
            ("https://134744072/", "8.8.8.8", None),
        ];
        let mut got = Vec::new();
        for (url, _, _) in cases {
            let parsed = Url::parse(url).unwrap();
            let hop = plan_hop(
                "http_get",
                "GET",
                &parsed,
                None,
                std::time::Duration::from_secs(5),
            )
            .await
            .unwrap();
            got.push((url, hop.addr.to_string(), hop.special));
        }
        let want: Vec<_> = cases
            .iter()
            .map(|(url, addr, special)| (*url, addr.to_string(), *special))
            .collect();
        assert_eq!(got, want);
    }

    /// `localhost` is resolved by the system, and what it resolves to is classified.
    #[tokio::test]
    async fn localhost_resolves_to_a_loopback_address() {
        let url = Url::parse("http://LocalHost:8080/x").unwrap();
        let hop = plan_hop(
            "http_get",
            "GET",
            &url,
            None,
            std::time::Duration::from_secs(5),
        )
        .await
        .unwrap();
        assert_eq!(hop.host, "localhost");
        assert_eq!(hop.port, 8080);
        assert!(hop.addr.is_loopback(), "{}", hop.addr);
        assert_eq!(hop.special, Some("loopback"));
    }
}

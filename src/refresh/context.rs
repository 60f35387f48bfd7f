//! Is a refresh coming from where the family was last used?
//!
//! A stolen refresh token is usually replayed from another machine: another
//! network, another browser. Each family remembers the address and user agent
//! of its last refresh (of its login until then), and each refresh compares
//! its own with them:
//!
//! - **network**: both addresses in the same IPv4 `/v4_prefix` (default /16)
//!   or IPv6 `/v6_prefix` (default /48) — roughly "the same provider's
//!   block". An IPv4 and an IPv6 address are never the same network.
//! - **user agent**: the same *family* — browser (or HTTP library) and
//!   operating system, as in `Chrome/Windows` — so an automatic browser
//!   update is not a change, while a token moving from Firefox on Linux to
//!   `curl` is.
//!
//! What is not known on either side (no address, no or an empty user agent)
//! is never a change: the check only speaks when it has two facts to compare.
//! Nothing here touches the database; [`super::refresh`] reads the row it
//! already reads and writes the new context in the rotation's `UPDATE`.

use std::fmt;
use std::net::IpAddr;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use super::Origin;

/// What to do when a refresh comes from another context.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ContextPolicy {
    /// Record a `refresh_context_changed` audit event; the refresh succeeds.
    #[default]
    Audit,
    /// Also end the family (and deny its access tokens): sign in again.
    EndSession,
}

impl ContextPolicy {
    pub const fn as_str(self) -> &'static str {
        match self {
            ContextPolicy::Audit => "audit",
            ContextPolicy::EndSession => "end_session",
        }
    }
}

impl std::str::FromStr for ContextPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "audit" => Ok(ContextPolicy::Audit),
            "end_session" => Ok(ContextPolicy::EndSession),
            other => Err(format!("expected audit or end_session, got {other:?}")),
        }
    }
}

/// How refreshes are compared with the last one, and what a change does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ContextRules {
    /// IPv4 addresses sharing this many leading bits are one network.
    pub v4_prefix: u8,
    /// IPv6 addresses sharing this many leading bits are one network.
    pub v6_prefix: u8,
    pub policy: ContextPolicy,
}

impl Default for ContextRules {
    fn default() -> Self {
        ContextRules { v4_prefix: 16, v6_prefix: 48, policy: ContextPolicy::Audit }
    }
}

/// Whether `a` and `b` are in one IPv4 `/v4_prefix` or one IPv6
/// `/v6_prefix`. IPv4-mapped IPv6 addresses count as IPv4. A prefix longer
/// than the address is taken as the whole address.
pub fn same_network(a: IpAddr, b: IpAddr, v4_prefix: u8, v6_prefix: u8) -> bool {
    match (a.to_canonical(), b.to_canonical()) {
        (IpAddr::V4(a), IpAddr::V4(b)) => {
            let net = Ipv4Net::new(a, v4_prefix.min(32)).map(|n| n.trunc());
            net.is_ok_and(|n| n.contains(&b))
        }
        (IpAddr::V6(a), IpAddr::V6(b)) => {
            let net = Ipv6Net::new(a, v6_prefix.min(128)).map(|n| n.trunc());
            net.is_ok_and(|n| n.contains(&b))
        }
        _ => false,
    }
}

/// The network block `ip` belongs to under the rules, for display
/// (`203.0.113.0/16` is shown as `203.0.0.0/16`).
pub fn network_of(ip: IpAddr, rules: &ContextRules) -> String {
    let ip = ip.to_canonical();
    let prefix = match ip {
        IpAddr::V4(_) => rules.v4_prefix.min(32),
        IpAddr::V6(_) => rules.v6_prefix.min(128),
    };
    IpNet::new(ip, prefix).map(|n| n.trunc().to_string()).unwrap_or_else(|_| ip.to_string())
}

/// Browsers by the product token that names them. Order matters: most
/// browsers also claim to be the ones they descend from (Edge says
/// `Chrome/… Safari/…`, Chrome says `Safari/…`), so the most specific
/// token is tried first.
const BROWSERS: &[(&str, &str)] = &[
    ("Edg/", "Edge"),
    ("EdgA/", "Edge"),
    ("EdgiOS/", "Edge"),
    ("Edge/", "Edge"),
    ("OPR/", "Opera"),
    ("OPiOS/", "Opera"),
    ("Opera", "Opera"),
    ("SamsungBrowser/", "Samsung Internet"),
    ("YaBrowser/", "Yandex"),
    ("Vivaldi/", "Vivaldi"),
    ("Firefox/", "Firefox"),
    ("FxiOS/", "Firefox"),
    ("CriOS/", "Chrome"),
    ("Chromium/", "Chrome"),
    ("Chrome/", "Chrome"),
    ("Safari/", "Safari"),
];

/// Operating systems by a marker in the user agent's comment. Android
/// before Linux (Android says `Linux`), iOS before macOS (an iPhone says
/// `like Mac OS X`), Chrome OS before Linux (`X11; CrOS`).
const SYSTEMS: &[(&str, &str)] = &[
    ("Windows", "Windows"),
    ("Android", "Android"),
    ("iPhone", "iOS"),
    ("iPad", "iOS"),
    ("iPod", "iOS"),
    ("CrOS", "ChromeOS"),
    ("Macintosh", "macOS"),
    ("Mac OS X", "macOS"),
    ("Linux", "Linux"),
    ("X11", "Linux"),
    ("FreeBSD", "BSD"),
    ("OpenBSD", "BSD"),
];

/// The family of a user agent: `Browser/OS` for browsers (`Chrome/Windows`,
/// `Safari/iOS`), otherwise the first product name without its version
/// (`curl`, `okhttp`, `MyApp`), with the OS when one is named. `None` when
/// there is nothing to go by. Versions never matter, so an update of the same
/// browser keeps its family.
pub fn ua_family(ua: &str) -> Option<String> {
    let ua = ua.trim();
    let os = SYSTEMS.iter().find(|(marker, _)| ua.contains(marker)).map(|(_, os)| *os);
    let browser = ua
        .starts_with("Mozilla/")
        .then(|| BROWSERS.iter().find(|(token, _)| ua.contains(token)).map(|(_, name)| *name))
        .flatten();
    let product = match browser {
        Some(name) => name.to_owned(),
        None => first_product(ua)?,
    };
    Some(match os {
        Some(os) => format!("{product}/{os}"),
        None => product,
    })
}

/// The name of the first product token (RFC 9110 §10.1.5:
/// `product = token ["/" product-version]`), at most 32 characters.
fn first_product(ua: &str) -> Option<String> {
    let name: String = ua
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '!' | '+' | '~'))
        .take(32)
        .collect();
    (!name.is_empty()).then_some(name)
}

/// How a refresh's context differs from the family's last one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContextChange {
    pub previous_ip: Option<IpAddr>,
    pub ip: Option<IpAddr>,
    pub previous_agent: Option<String>,
    pub agent: Option<String>,
    /// The address left the configured block.
    pub network_changed: bool,
    /// The user-agent family differs.
    pub agent_changed: bool,
}

impl ContextChange {
    /// What changed, as stored in the audit event (`network`, `user_agent`).
    pub fn what(&self) -> Vec<&'static str> {
        let mut what = Vec::new();
        if self.network_changed {
            what.push("network");
        }
        if self.agent_changed {
            what.push("user_agent");
        }
        what
    }
}

impl fmt::Display for ContextChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.what().join(" and "))
    }
}

/// Compare a refresh's context with the family's last one; `None` when
/// nothing comparable changed.
pub fn compare(previous: &Origin, current: &Origin, rules: &ContextRules) -> Option<ContextChange> {
    let network_changed = match (previous.ip, current.ip) {
        (Some(a), Some(b)) => !same_network(a, b, rules.v4_prefix, rules.v6_prefix),
        _ => false,
    };
    let previous_agent = previous.user_agent.as_deref().and_then(ua_family);
    let agent = current.user_agent.as_deref().and_then(ua_family);
    let agent_changed = matches!((&previous_agent, &agent), (Some(a), Some(b)) if a != b);
    (network_changed || agent_changed).then_some(ContextChange {
        previous_ip: previous.ip,
        ip: current.ip,
        previous_agent,
        agent,
        network_changed,
        agent_changed,
    })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    const CHROME_WIN_119: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/119.0.0.0 Safari/537.36";
    const CHROME_WIN_120: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.6099.71 Safari/537.36";
    const EDGE_WIN: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36 Edg/120.0.2210.61";
    const FIREFOX_LINUX: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0";
    const FIREFOX_LINUX_OLD: &str =
        "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:115.0) Gecko/20100101 Firefox/115.0";
    const SAFARI_IPHONE: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1";
    const SAFARI_MAC: &str = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Safari/605.1.15";
    const CHROME_ANDROID: &str = "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Mobile Safari/537.36";
    const CHROME_IOS: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) CriOS/120.0.6099.119 Mobile/15E148 Safari/604.1";
    const CHROME_OS: &str = "Mozilla/5.0 (X11; CrOS x86_64 14541.0.0) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36";

    #[test]
    fn browsers_are_named_by_product_and_system() {
        assert_eq!(ua_family(CHROME_WIN_120).as_deref(), Some("Chrome/Windows"));
        assert_eq!(ua_family(EDGE_WIN).as_deref(), Some("Edge/Windows"));
        assert_eq!(ua_family(FIREFOX_LINUX).as_deref(), Some("Firefox/Linux"));
        assert_eq!(ua_family(SAFARI_IPHONE).as_deref(), Some("Safari/iOS"));
        assert_eq!(ua_family(SAFARI_MAC).as_deref(), Some("Safari/macOS"));
        assert_eq!(ua_family(CHROME_ANDROID).as_deref(), Some("Chrome/Android"));
        assert_eq!(ua_family(CHROME_IOS).as_deref(), Some("Chrome/iOS"));
        assert_eq!(ua_family(CHROME_OS).as_deref(), Some("Chrome/ChromeOS"));
    }

    #[test]
    fn libraries_and_apps_are_named_by_their_first_product() {
        assert_eq!(ua_family("curl/8.4.0").as_deref(), Some("curl"));
        assert_eq!(ua_family("curl/7.68.0").as_deref(), Some("curl"));
        assert_eq!(ua_family("python-requests/2.31.0").as_deref(), Some("python-requests"));
        assert_eq!(ua_family("okhttp/4.12.0").as_deref(), Some("okhttp"));
        assert_eq!(ua_family("MyApp/3.2 (iPhone; iOS 17.1) CFNetwork/1474").as_deref(), Some("MyApp/iOS"));
        assert_eq!(ua_family("Dalvik/2.1.0 (Linux; U; Android 13)").as_deref(), Some("Dalvik/Android"));
        // A crawler pretending to be Mozilla with no browser token.
        assert_eq!(
            ua_family("Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)").as_deref(),
            Some("Mozilla")
        );
        assert_eq!(ua_family(""), None);
        assert_eq!(ua_family("   "), None);
        assert_eq!(ua_family("(no product)"), None);
    }

    #[test]
    fn a_browser_update_keeps_the_family() {
        assert_eq!(ua_family(CHROME_WIN_119), ua_family(CHROME_WIN_120));
        assert_eq!(ua_family(FIREFOX_LINUX_OLD), ua_family(FIREFOX_LINUX));
        assert_eq!(ua_family("curl/7.68.0"), ua_family("curl/8.4.0"));
    }

    #[test]
    fn ipv4_compares_the_configured_prefix() {
        assert!(same_network(ip("203.0.113.5"), ip("203.0.200.9"), 16, 48));
        assert!(!same_network(ip("203.0.113.5"), ip("203.1.113.5"), 16, 48));
        assert!(!same_network(ip("203.0.113.5"), ip("203.0.200.9"), 24, 48));
        assert!(same_network(ip("203.0.113.5"), ip("198.51.100.7"), 0, 48), "/0: any IPv4");
        assert!(same_network(ip("203.0.113.5"), ip("203.0.113.5"), 32, 48));
        assert!(!same_network(ip("203.0.113.5"), ip("203.0.113.6"), 99, 48), "clamped to /32");
        // IPv4-mapped IPv6 is IPv4.
        assert!(same_network(ip("::ffff:203.0.113.5"), ip("203.0.1.1"), 16, 48));
    }

    #[test]
    fn ipv6_compares_the_configured_prefix() {
        assert!(same_network(ip("2001:db8:1:a::1"), ip("2001:db8:1:ffff::2"), 16, 48));
        assert!(!same_network(ip("2001:db8:1::1"), ip("2001:db8:2::1"), 16, 48));
        assert!(!same_network(ip("2001:db8:1:a::1"), ip("2001:db8:1:b::1"), 16, 64));
    }

    #[test]
    fn ipv4_and_ipv6_are_different_networks() {
        assert!(!same_network(ip("203.0.113.5"), ip("2001:db8::1"), 0, 0));
    }

    #[test]
    fn blocks_are_shown_truncated() {
        let rules = ContextRules::default();
        assert_eq!(network_of(ip("203.0.113.5"), &rules), "203.0.0.0/16");
        assert_eq!(network_of(ip("2001:db8:1:a::1"), &rules), "2001:db8:1::/48");
    }

    fn ctx(ip_text: Option<&str>, ua: Option<&str>) -> Origin {
        Origin { ip: ip_text.map(ip), user_agent: ua.map(str::to_owned) }
    }

    #[test]
    fn unknowns_are_never_a_change() {
        let rules = ContextRules::default();
        let full = ctx(Some("203.0.113.5"), Some(FIREFOX_LINUX));
        assert_eq!(compare(&ctx(None, None), &full, &rules), None);
        assert_eq!(compare(&full, &ctx(None, None), &rules), None);
        assert_eq!(compare(&full, &ctx(Some("203.0.1.1"), Some("")), &rules), None);
        assert_eq!(compare(&ctx(None, Some(FIREFOX_LINUX)), &ctx(Some("1.2.3.4"), None), &rules), None);
    }

    #[test]
    fn a_change_names_what_changed() {
        let rules = ContextRules::default();
        let before = ctx(Some("203.0.113.5"), Some(CHROME_WIN_119));
        assert_eq!(compare(&before, &ctx(Some("203.0.7.7"), Some(CHROME_WIN_120)), &rules), None);

        let moved = compare(&before, &ctx(Some("198.51.100.7"), Some(CHROME_WIN_120)), &rules).unwrap();
        assert_eq!(moved.what(), ["network"]);
        assert_eq!(moved.previous_ip, Some(ip("203.0.113.5")));
        assert_eq!(moved.ip, Some(ip("198.51.100.7")));

        let other_agent = compare(&before, &ctx(Some("203.0.113.5"), Some("curl/8.4.0")), &rules).unwrap();
        assert_eq!(other_agent.what(), ["user_agent"]);
        assert_eq!(other_agent.previous_agent.as_deref(), Some("Chrome/Windows"));
        assert_eq!(other_agent.agent.as_deref(), Some("curl"));

        let both = compare(&before, &ctx(Some("198.51.100.7"), Some(FIREFOX_LINUX)), &rules).unwrap();
        assert_eq!(both.to_string(), "network and user_agent");
    }

    #[test]
    fn policies_parse_by_name() {
        assert_eq!("audit".parse::<ContextPolicy>(), Ok(ContextPolicy::Audit));
        assert_eq!("end_session".parse::<ContextPolicy>(), Ok(ContextPolicy::EndSession));
        assert!("END_SESSION".parse::<ContextPolicy>().is_err());
        assert_eq!(ContextPolicy::default(), ContextPolicy::Audit);
    }

    proptest! {
        #[test]
        fn ua_family_never_panics_and_ignores_versions(ua in ".{0,300}", v1 in 1u32..500, v2 in 1u32..500) {
            let _ = ua_family(&ua);
            let a = format!("Mozilla/5.0 (Windows NT 10.0) Firefox/{v1}.0");
            let b = format!("Mozilla/5.0 (Windows NT 10.0) Firefox/{v2}.0");
            prop_assert_eq!(ua_family(&a), ua_family(&b));
        }

        #[test]
        fn same_network_is_symmetric_and_reflexive(a: [u8; 4], b: [u8; 4], p in 0u8..=32) {
            let (a, b) = (IpAddr::from(a), IpAddr::from(b));
            prop_assert!(same_network(a, a, p, 48));
            prop_assert_eq!(same_network(a, b, p, 48), same_network(b, a, p, 48));
        }
    }
}

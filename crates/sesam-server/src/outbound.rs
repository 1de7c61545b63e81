//! Outbound HTTP that a portal user can point somewhere (an SP's metadata URL): only to
//! public addresses, unless the operator allows private ones (`allow_private_fetch`).
//!
//! Every name is resolved by Sesam's own resolver, which drops loopback, link-local (the
//! cloud metadata address 169.254.169.254), private, unique-local and other non-public
//! addresses; an address written into the URL, and every redirect, is checked the same way.
//! So the portal cannot be used to reach the machine's own services or its network.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// The fetch went to an address that is not public.
#[derive(Debug, thiserror::Error)]
#[error("{0} is not a public address; Sesam fetches only from public addresses")]
pub struct NotPublic(pub String);

/// Whether `ip` is reachable on the public internet (not loopback, private, link-local,
/// unique-local, shared, multicast, documentation or otherwise reserved).
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public_v4(v4);
            }
            let s = v6.segments();
            // NAT64 (64:ff9b::/96) carries an IPv4 address in its last 32 bits.
            if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0, 0, 0, 0] {
                let [a, b] = s[6].to_be_bytes();
                let [c, d] = s[7].to_be_bytes();
                return is_public_v4(Ipv4Addr::new(a, b, c, d));
            }
            !(v6.is_unspecified()
                || v6.is_loopback()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00 // unique local fc00::/7
                || (s[0] & 0xffc0) == 0xfe80 // link local fe80::/10
                || (s[0] & 0xffc0) == 0xfec0 // site local (deprecated) fec0::/10
                || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
                || s[..6] == [0, 0, 0, 0, 0, 0]) // IPv4-compatible, deprecated
        }
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0
        || (a == 100 && (64..128).contains(&b)) // shared address space (CGNAT)
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 198 && (18..20).contains(&b)) // benchmarking
        || a >= 240) // reserved
}

/// The resolver of a guarded client: names that resolve only to non-public addresses fail.
struct PublicOnly;

impl Resolve for PublicOnly {
    fn resolve(&self, name: Name) -> Resolving {
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let public: Vec<SocketAddr> = found.into_iter().filter(|a| is_public(a.ip())).collect();
            if public.is_empty() {
                return Err(Box::new(NotPublic(host)) as Box<dyn std::error::Error + Send + Sync>);
            }
            let addrs: Addrs = Box::new(public.into_iter());
            Ok(addrs)
        })
    }
}

/// `Err` when the URL names a non-public address literally (the resolver never sees those).
pub fn check_literal(url: &reqwest::Url) -> Result<(), NotPublic> {
    // The URL parser has already normalised 2130706433, 0x7f.1 and the like to dotted form.
    let host = url.host_str().unwrap_or("");
    let Ok(ip) = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
    else {
        return Ok(());
    };
    if is_public(ip) {
        Ok(())
    } else {
        Err(NotPublic(ip.to_string()))
    }
}

/// A client builder that resolves names to public addresses only (no redirect policy of its
/// own: the caller sets one). Literal addresses never reach the resolver: check those with
/// [`check_literal`].
pub fn public_only(builder: reqwest::ClientBuilder) -> reqwest::ClientBuilder {
    builder.dns_resolver(Arc::new(PublicOnly))
}

/// A client for fetches a portal user chose. With `allow_private`, an ordinary client.
pub fn client(
    allow_private: bool,
    builder: reqwest::ClientBuilder,
) -> reqwest::Result<reqwest::Client> {
    if allow_private {
        return builder
            .redirect(reqwest::redirect::Policy::limited(3))
            .build();
    }
    builder
        .dns_resolver(Arc::new(PublicOnly))
        .redirect(reqwest::redirect::Policy::custom(|attempt| {
            if attempt.previous().len() >= 3 {
                return attempt.error("too many redirects");
            }
            match check_literal(attempt.url()) {
                Ok(()) => attempt.follow(),
                Err(e) => attempt.error(e),
            }
        }))
        .build()
}

/// True when `error` (from a guarded client) was a refusal of a non-public address.
pub fn was_not_public(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(e) = current {
        if e.is::<NotPublic>() {
            return true;
        }
        current = e.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn public(s: &str) -> bool {
        is_public(s.parse().unwrap())
    }

    #[test]
    fn only_public_addresses_are_public() {
        for private in [
            "127.0.0.1",
            "127.8.9.10",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "0.1.2.3",
            "255.255.255.255",
            "224.0.0.1",
            "192.0.2.1",
            "198.18.0.1",
            "240.0.0.1",
            "::1",
            "::",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "ff02::1",
            "2001:db8::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a9fe:a9fe",
            "::127.0.0.1",
        ] {
            assert!(!public(private), "{private} must not count as public");
        }
        for ok in [
            "8.8.8.8",
            "80.62.117.1",
            "172.32.0.1",
            "2a00:1450:4001::1",
            "::ffff:8.8.8.8",
        ] {
            assert!(public(ok), "{ok} is public");
        }
    }

    #[test]
    fn literal_addresses_in_urls_are_checked() {
        let url = |s: &str| reqwest::Url::parse(s).unwrap();
        assert!(check_literal(&url("http://169.254.169.254/latest/meta-data/")).is_err());
        assert!(check_literal(&url("http://[::1]:8080/")).is_err());
        assert!(
            check_literal(&url("http://2130706433/")).is_err(),
            "decimal 127.0.0.1"
        );
        assert!(
            check_literal(&url("http://0x7f.1/")).is_err(),
            "hex 127.0.0.1"
        );
        assert!(check_literal(&url("https://sp.example.dk/metadata")).is_ok());
        assert!(check_literal(&url("https://8.8.8.8/")).is_ok());
    }

    #[tokio::test]
    async fn the_guarded_client_refuses_loopback_by_name_and_by_address() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = tokio::spawn(async move { listener.accept().await.is_ok() });
        let guarded = client(false, reqwest::Client::builder()).unwrap();
        for target in [
            format!("http://localhost:{port}/"),
            format!("http://127.0.0.1:{port}/"),
        ] {
            let url = reqwest::Url::parse(&target).unwrap();
            let refused = match check_literal(&url) {
                Err(_) => true,
                Ok(()) => {
                    let e = guarded.get(url).send().await.unwrap_err();
                    was_not_public(&e)
                }
            };
            assert!(refused, "{target} must be refused as not public");
        }
        assert!(
            !accepted.is_finished(),
            "no connection reached the listener"
        );
        accepted.abort();
    }
}

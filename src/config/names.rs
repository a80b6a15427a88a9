//! The rules for every name that reaches a remote command line or Docker: host, stack,
//! network, service, label, user and variable names, image references, addresses and
//! subnets. Each check returns the message shown to the user; none of them allows a shell
//! metacharacter, whitespace or a newline.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Docker and swarmkit refuse longer object names (one DNS label).
const MAX_DNS_LABEL: usize = 63;

fn is_alnum(c: char) -> bool {
    c.is_ascii_alphanumeric()
}

fn starts_alnum(s: &str) -> bool {
    s.chars().next().is_some_and(is_alnum)
}

fn only(s: &str, allowed: impl Fn(char) -> bool) -> bool {
    s.chars().all(allowed)
}

/// An inventory host name: shown in output and used as the ssh config alias.
pub fn host_name(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("must not be empty".into());
    }
    if s.len() > 253 || !starts_alnum(s) || !only(s, |c| is_alnum(c) || "-_.".contains(c)) {
        return Err(format!(
            "invalid host name {s:?}: use letters, digits, '-', '_' and '.', starting with a letter or digit"
        ));
    }
    Ok(())
}

/// A stack name, the prefix of every service and network of the stack.
pub fn stack_name(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("must not be empty".into());
    }
    let ok = s
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && only(s, |c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_'
        });
    if !ok {
        return Err(format!(
            "invalid stack name {s:?}: use lowercase letters, digits, '-' and '_', starting with a letter or digit"
        ));
    }
    if s.len() > MAX_DNS_LABEL {
        return Err(format!(
            "stack name {s:?} is longer than {MAX_DNS_LABEL} characters"
        ));
    }
    Ok(())
}

/// Swarmkit's rule for service and network names: a DNS label where `-` and `_` may only
/// sit between letters or digits.
fn swarm_object_name(s: &str) -> bool {
    !s.is_empty()
        && starts_alnum(s)
        && s.chars().last().is_some_and(is_alnum)
        && only(s, |c| is_alnum(c) || c == '-' || c == '_')
}

/// A swarm-scoped network name (`docker network create --driver overlay`).
pub fn network_name(s: &str) -> Result<(), String> {
    if !swarm_object_name(s) {
        return Err(format!(
            "invalid network name {s:?}: use letters, digits, '-' and '_', starting and ending with a letter or digit"
        ));
    }
    if s.len() > MAX_DNS_LABEL {
        return Err(format!(
            "network name {s:?} is longer than {MAX_DNS_LABEL} characters"
        ));
    }
    Ok(())
}

/// One of the networks every Docker daemon has of its own from the start (`docker network
/// ls` on a fresh one): never created, compared or removed by rpiprov. A stack file uses
/// them as external networks (`external: true, name: host`, the usual way to run Pi-hole
/// or Home Assistant on a Pi); the playbook cannot declare them. This is the one place
/// that knows them: the playbook, the stack files' check and, through the playbook, every
/// command that handles networks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Predefined {
    Host,
    Bridge,
    None,
}

impl Predefined {
    /// The predefined network of this name (Docker's names are lowercase and exact).
    pub fn of(name: &str) -> Option<Predefined> {
        match name {
            "host" => Some(Predefined::Host),
            "bridge" => Some(Predefined::Bridge),
            "none" => Some(Predefined::None),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Predefined::Host => "host",
            Predefined::Bridge => "bridge",
            Predefined::None => "none",
        }
    }

    /// Whether a swarm service may be attached to it: swarm keeps a `host` and a `bridge`
    /// network of its own that stand for the nodes' ones, and none for `none` (the daemon
    /// refuses the service: "could not find the corresponding predefined swarm network").
    pub fn serves_services(self) -> bool {
        !matches!(self, Predefined::None)
    }
}

/// Network drivers whose networks live on one node (`docker network ls` says `local`):
/// a stack network made with one cannot carry a swarm service ("Only networks scoped to
/// the swarm can be used, such as those created with the overlay driver"), and `host` has
/// one instance per node already. A driver not listed (overlay, a plugin) is left to
/// Docker.
pub fn local_network_driver(driver: &str) -> bool {
    matches!(driver, "bridge" | "host" | "macvlan" | "ipvlan" | "null")
}

/// A compose service name; the swarm service is `STACK_SERVICE`, which must fit in one
/// DNS label too.
pub fn service_name(s: &str, stack: &str) -> Result<(), String> {
    if !swarm_object_name(s) {
        return Err(format!(
            "invalid service name {s:?}: use letters, digits, '-' and '_', starting and ending with a letter or digit"
        ));
    }
    let full = stack.len() + 1 + s.len();
    if full > MAX_DNS_LABEL {
        return Err(format!(
            "service name \"{stack}_{s}\" is {full} characters long, more than Docker's {MAX_DNS_LABEL}"
        ));
    }
    Ok(())
}

/// A swarm node label key (`node.labels.KEY` in placement constraints).
pub fn label_key(s: &str) -> Result<(), String> {
    if s.is_empty() || !starts_alnum(s) || !only(s, |c| is_alnum(c) || "-_./".contains(c)) {
        return Err(format!(
            "invalid label key {s:?}: use letters, digits, '-', '_', '.' and '/', starting with a letter or digit"
        ));
    }
    Ok(())
}

/// A swarm node label value.
pub fn label_value(s: &str) -> Result<(), String> {
    if !only(s, |c| is_alnum(c) || "-_./:@+,=".contains(c)) {
        return Err(format!(
            "invalid label value {s:?}: use letters, digits and - _ . / : @ + , = (no spaces, quotes or shell characters)"
        ));
    }
    Ok(())
}

/// A login name on the Pi.
pub fn user_name(s: &str) -> Result<(), String> {
    let ok = s.len() <= 32
        && s.chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && only(s, |c| is_alnum(c) || "-_.".contains(c));
    if !ok {
        return Err(format!(
            "invalid user name {s:?}: use letters, digits, '-', '_' and '.', starting with a letter or '_'"
        ));
    }
    Ok(())
}

/// A host name or IP address to connect to.
pub fn address(s: &str) -> Result<(), String> {
    if s.parse::<IpAddr>().is_ok() {
        return Ok(());
    }
    let ok = !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= MAX_DNS_LABEL
                && starts_alnum(label)
                && only(label, |c| is_alnum(c) || c == '-' || c == '_')
        });
    if !ok {
        return Err(format!(
            "invalid address {s:?}: expected an IP address or a host name"
        ));
    }
    Ok(())
}

/// A Linux network interface name (at most 15 characters).
pub fn interface_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 15
        && starts_alnum(s)
        && only(s, |c| is_alnum(c) || "-_.".contains(c))
}

/// An environment variable name passed to `docker stack deploy`.
pub fn variable_name(s: &str) -> Result<(), String> {
    let ok = s
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && only(s, |c| is_alnum(c) || c == '_');
    if !ok {
        return Err(format!(
            "invalid variable name {s:?}: use letters, digits and '_', not starting with a digit"
        ));
    }
    Ok(())
}

/// Variables the deploy on the manager reads for itself (its shell and the `docker`
/// CLI): a value from this machine would change what runs there (`PATH`, `HOME`,
/// `DOCKER_HOST`, `LD_PRELOAD`...), so an `environment:` entry of such a name is never
/// filled from here.
pub fn deploy_own_variable(s: &str) -> bool {
    matches!(
        s,
        "PATH" | "HOME" | "IFS" | "ENV" | "CDPATH" | "PWD" | "OLDPWD" | "SHELL" | "USER"
    ) || s.starts_with("LD_")
        || s.starts_with("DOCKER_")
}

/// An image reference, after Docker's grammar (`[DOMAIN[:PORT]/]PATH[:TAG][@DIGEST]`),
/// a little stricter: no IPv6 registry addresses.
pub fn image_reference(s: &str) -> Result<(), String> {
    let bad = |why: &str| Err(format!("invalid image reference {s:?}: {why}"));
    if s.is_empty() {
        return bad("empty");
    }
    let (rest, digest) = match s.split_once('@') {
        Some((r, d)) => (r, Some(d)),
        None => (s, None),
    };
    if let Some(d) = digest {
        let Some((algo, hex)) = d.split_once(':') else {
            return bad("a digest is ALGORITHM:HEX");
        };
        let algo_ok = algo.split(['+', '.', '-', '_']).all(|p| {
            p.chars().next().is_some_and(|c| c.is_ascii_alphabetic()) && only(p, is_alnum)
        });
        if !algo_ok || hex.len() < 32 || !only(hex, |c| c.is_ascii_hexdigit()) {
            return bad("malformed digest");
        }
    }
    // A tag is after the last ':' that follows the last '/', so `host:5000/x` has none.
    let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match rest[last_slash..].rfind(':') {
        Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
        None => (rest, None),
    };
    if let Some(tag) = tag {
        let ok = tag.len() <= 128
            && tag.chars().next().is_some_and(|c| is_alnum(c) || c == '_')
            && only(tag, |c| is_alnum(c) || "_.-".contains(c));
        if !ok {
            return bad("a tag is at most 128 letters, digits, '_', '.' and '-'");
        }
    }
    if name.len() > 255 {
        return bad("the name is longer than 255 characters");
    }
    let mut parts: Vec<&str> = name.split('/').collect();
    let first = parts[0];
    let has_domain = parts.len() > 1 && (first.contains(['.', ':']) || first == "localhost");
    if has_domain {
        let (host, port) = match first.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (first, None),
        };
        let host_ok = !host.is_empty()
            && host.split('.').all(|c| {
                starts_alnum(c)
                    && c.chars().last().is_some_and(is_alnum)
                    && only(c, |ch| is_alnum(ch) || ch == '-')
            });
        if !host_ok {
            return bad("malformed registry host");
        }
        if let Some(port) = port
            && (port.is_empty()
                || !only(port, |c| c.is_ascii_digit())
                || port.parse::<u16>().is_err())
        {
            return bad("malformed registry port");
        }
        parts.remove(0);
    }
    for component in parts {
        if !path_component(component) {
            return bad(
                "the repository path uses lowercase letters, digits and single '.', '_', '__' or '-' separators",
            );
        }
    }
    Ok(())
}

/// `[a-z0-9]+` joined by `.`, `_`, `__` or runs of `-`.
fn path_component(s: &str) -> bool {
    let lower_alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    if !s.chars().next().is_some_and(lower_alnum) || !s.chars().last().is_some_and(lower_alnum) {
        return false;
    }
    let mut separator = String::new();
    for c in s.chars() {
        if lower_alnum(c) {
            let ok = separator.is_empty()
                || separator == "."
                || separator == "_"
                || separator == "__"
                || separator.chars().all(|c| c == '-');
            if !ok {
                return false;
            }
            separator.clear();
        } else if "._-".contains(c) {
            separator.push(c);
        } else {
            return false;
        }
    }
    true
}

/// An IPv4 or IPv6 subnet in CIDR notation, with no host bits set.
pub fn cidr(s: &str) -> Result<(), String> {
    let Some((addr, len)) = s.split_once('/') else {
        return Err(format!(
            "invalid subnet {s:?}: expected ADDRESS/PREFIX, e.g. 10.10.0.0/24"
        ));
    };
    let Ok(prefix) = len.parse::<u8>() else {
        return Err(format!(
            "invalid subnet {s:?}: the prefix length is not a number"
        ));
    };
    match addr.parse::<IpAddr>() {
        Ok(IpAddr::V4(ip)) => {
            if prefix > 32 {
                return Err(format!(
                    "invalid subnet {s:?}: an IPv4 prefix length is at most 32"
                ));
            }
            let mask = if prefix == 0 {
                0
            } else {
                u32::MAX << (32 - prefix)
            };
            let net = u32::from(ip) & mask;
            if net != u32::from(ip) {
                return Err(format!(
                    "invalid subnet {s:?}: host bits are set, did you mean {}/{prefix}?",
                    Ipv4Addr::from(net)
                ));
            }
            Ok(())
        }
        Ok(IpAddr::V6(ip)) => {
            if prefix > 128 {
                return Err(format!(
                    "invalid subnet {s:?}: an IPv6 prefix length is at most 128"
                ));
            }
            let mask = if prefix == 0 {
                0
            } else {
                u128::MAX << (128 - prefix)
            };
            let net = u128::from(ip) & mask;
            if net != u128::from(ip) {
                return Err(format!(
                    "invalid subnet {s:?}: host bits are set, did you mean {}/{prefix}?",
                    Ipv6Addr::from(net)
                ));
            }
            Ok(())
        }
        Err(_) => Err(format!(
            "invalid subnet {s:?}: {addr:?} is not an IP address"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names() {
        assert!(host_name("piensg017").is_ok());
        assert!(host_name("pi-01.lab_a").is_ok());
        assert_eq!(
            host_name("pi;reboot").unwrap_err(),
            "invalid host name \"pi;reboot\": use letters, digits, '-', '_' and '.', starting with a letter or digit"
        );
        assert!(host_name("-pi").is_err());
        assert!(host_name("pi 1").is_err());
        assert_eq!(host_name("").unwrap_err(), "must not be empty");
    }

    #[test]
    fn stack_names() {
        assert!(stack_name("rok4").is_ok());
        assert!(stack_name("my_stack-2").is_ok());
        assert_eq!(
            stack_name("Web").unwrap_err(),
            "invalid stack name \"Web\": use lowercase letters, digits, '-' and '_', starting with a letter or digit"
        );
        assert!(stack_name("_web").is_err());
        assert!(stack_name("web$(id)").is_err());
    }

    #[test]
    fn network_and_service_names() {
        assert!(network_name("DATA").is_ok());
        assert!(network_name("inter_co-1").is_ok());
        assert!(network_name("data-").is_err());
        assert!(network_name("my.net").is_err());
        assert!(service_name("web", "httpd").is_ok());
        assert_eq!(
            service_name("web.1", "httpd").unwrap_err(),
            "invalid service name \"web.1\": use letters, digits, '-' and '_', starting and ending with a letter or digit"
        );
        let long = "s".repeat(60);
        assert_eq!(
            service_name(&long, "abc").unwrap_err(),
            format!("service name \"abc_{long}\" is 64 characters long, more than Docker's 63")
        );
    }

    #[test]
    fn labels() {
        assert!(label_key("rack").is_ok());
        assert!(label_key("com.example/zone").is_ok());
        assert!(label_key("a b").is_err());
        assert!(label_value("").is_ok());
        assert!(label_value("shelf-2").is_ok());
        assert_eq!(
            label_value("a;b").unwrap_err(),
            "invalid label value \"a;b\": use letters, digits and - _ . / : @ + , = (no spaces, quotes or shell characters)"
        );
        assert!(label_value("a\nb").is_err());
        assert!(label_value("$(x)").is_err());
    }

    #[test]
    fn addresses_and_users() {
        assert!(address("192.168.1.17").is_ok());
        assert!(address("fe80::1").is_ok());
        assert!(address("pi17.local").is_ok());
        assert!(address("pi17;ls").is_err());
        assert!(user_name("pi").is_ok());
        assert!(user_name("9pi").is_err());
        assert!(interface_name("eth0"));
        assert!(interface_name("wlan0"));
        assert!(!interface_name("averyveryverylongname"));
    }

    #[test]
    fn image_references() {
        for ok in [
            "registry:2",
            "httpd:2.4",
            "traefik:v3.1",
            "rok4/server:latest",
            "localhost:5000/rok4/server",
            "192.168.1.17:5000/lab/httpd:1",
            "ghcr.io/org/app@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "a__b/c-d--e",
        ] {
            assert!(image_reference(ok).is_ok(), "{ok}");
        }
        assert_eq!(
            image_reference("Rok4/server").unwrap_err(),
            "invalid image reference \"Rok4/server\": the repository path uses lowercase letters, digits and single '.', '_', '__' or '-' separators"
        );
        for bad in [
            "",
            "httpd:",
            "httpd:-x",
            "a//b",
            "a..b",
            "x;y",
            "reg:99999/x",
            "x@sha256:12",
        ] {
            assert!(image_reference(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn subnets() {
        assert!(cidr("10.10.0.0/24").is_ok());
        assert!(cidr("fd00::/64").is_ok());
        assert_eq!(
            cidr("10.10.0.1/24").unwrap_err(),
            "invalid subnet \"10.10.0.1/24\": host bits are set, did you mean 10.10.0.0/24?"
        );
        assert_eq!(
            cidr("10.10.0.0/33").unwrap_err(),
            "invalid subnet \"10.10.0.0/33\": an IPv4 prefix length is at most 32"
        );
        assert_eq!(
            cidr("10.10.0.0").unwrap_err(),
            "invalid subnet \"10.10.0.0\": expected ADDRESS/PREFIX, e.g. 10.10.0.0/24"
        );
        assert!(cidr("10.300.0.0/16").is_err());
    }
}

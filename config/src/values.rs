//! Value types shared by every input (file, environment, flags): Go-style booleans,
//! durations, bind addresses and the closed enumerations, with their text forms.
//!
//! Text parsing here is what environment variables and flags go through; the file path
//! (`settings`) adds strict typing on top (a YAML `true` is a boolean, `"true"` is not).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Parses a boolean the way the incumbent's flag library (Go `strconv.ParseBool`) does:
/// `1, t, T, TRUE, true, True, 0, f, F, FALSE, false, False`.
///
/// # Errors
/// Any other text, with a message listing the accepted forms.
pub fn parse_bool(text: &str) -> Result<bool, String> {
    match text {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        other => Err(format!("{other:?} is not a boolean (use true or false)")),
    }
}

/// Parses a duration: a bare integer is seconds (the incumbent's
/// `--conntrack-cache-cleanup-period=300`), otherwise one or more `<integer><unit>` parts
/// with units `ms`, `s`, `m`, `h` (`500ms`, `30s`, `1m30s`).
///
/// # Errors
/// Empty text, a missing or unknown unit, or an overflow.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("empty duration (write e.g. 30s, 500ms, 5m)".to_string());
    }
    if let Ok(secs) = text.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    let bad = || format!("{text:?} is not a duration (write e.g. 30s, 500ms, 5m, 1h)");
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
        if digits == 0 {
            return Err(bad());
        }
        let number: u64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let part = match &rest[..unit_len] {
            "ms" => Duration::from_millis(number),
            "s" => Duration::from_secs(number),
            "m" => Duration::from_secs(number.checked_mul(60).ok_or_else(bad)?),
            "h" => Duration::from_secs(number.checked_mul(3600).ok_or_else(bad)?),
            _ => return Err(bad()),
        };
        total = total.checked_add(part).ok_or_else(bad)?;
        rest = &rest[unit_len..];
    }
    Ok(total)
}

/// Formats a duration in the shortest exact form `parse_duration` reads back
/// (`300s`, `500ms`, `1500ms`).
#[must_use]
pub fn format_duration(duration: Duration) -> String {
    if duration.subsec_millis() == 0 && duration.subsec_nanos() == 0 {
        format!("{}s", duration.as_secs())
    } else {
        format!("{}ms", duration.as_millis())
    }
}

/// Serde adapter for `Duration` fields: written as `"30s"`, read from that or from an
/// integer number of seconds.
pub(crate) mod duration_serde {
    use super::{Duration, format_duration, parse_duration};
    use serde::{Deserialize, Deserializer, Serializer};

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Secs(u64),
        Text(String),
    }

    pub(crate) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_duration(*d))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        match Raw::deserialize(d)? {
            Raw::Secs(secs) => Ok(Duration::from_secs(secs)),
            Raw::Text(text) => parse_duration(&text).map_err(serde::de::Error::custom),
        }
    }
}

/// A listen address in the incumbent's Go form: `:8162` (all interfaces), `127.0.0.1:8162`,
/// `[::1]:8162`, `localhost:8162`, or a bare port `8162` (the add-on's form).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BindAddr {
    /// The address to bind; `None` means every interface.
    pub host: Option<IpAddr>,
    /// The TCP port, 1-65535.
    pub port: u16,
}

impl BindAddr {
    /// Every interface on `port`.
    #[must_use]
    pub const fn any(port: u16) -> Self {
        Self { host: None, port }
    }

    /// The socket address to bind; every interface is `0.0.0.0`.
    #[must_use]
    pub fn socket_addr(&self) -> SocketAddr {
        SocketAddr::new(
            self.host.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
            self.port,
        )
    }
}

impl FromStr for BindAddr {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let port_of = |p: &str| -> Result<u16, String> {
            match p.parse::<u16>() {
                Ok(0) | Err(_) => Err(format!(
                    "invalid address {text:?}: port {p:?} is not a number from 1 to 65535"
                )),
                Ok(port) => Ok(port),
            }
        };
        if text.is_empty() {
            return Err("empty address (write e.g. :8162)".to_string());
        }
        if text.bytes().all(|b| b.is_ascii_digit()) {
            return Ok(Self::any(port_of(text)?));
        }
        let (host, port) = if let Some(rest) = text.strip_prefix('[') {
            let (host, port) = rest.split_once("]:").ok_or_else(|| {
                format!("invalid address {text:?}: write an IPv6 host as [::1]:8162")
            })?;
            (host, port)
        } else {
            let (host, port) = text.rsplit_once(':').ok_or_else(|| {
                format!("invalid address {text:?}: expected HOST:PORT or :PORT (e.g. :8162)")
            })?;
            if host.contains(':') {
                return Err(format!(
                    "invalid address {text:?}: write an IPv6 host in brackets, as [::1]:8162"
                ));
            }
            (host, port)
        };
        let port = port_of(port)?;
        let host = match host {
            "" => None,
            "localhost" => Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
            h => Some(h.parse::<IpAddr>().map_err(|_| {
                format!("invalid address {text:?}: host {h:?} is not an IP address or localhost")
            })?),
        };
        Ok(Self { host, port })
    }
}

impl fmt::Display for BindAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.host {
            None => write!(f, ":{}", self.port),
            Some(IpAddr::V4(ip)) => write!(f, "{ip}:{}", self.port),
            Some(IpAddr::V6(ip)) => write!(f, "[{ip}]:{}", self.port),
        }
    }
}

impl Serialize for BindAddr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for BindAddr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Declares a closed enumeration with its kebab-case text forms, `FromStr` (case-insensitive),
/// `Display` and serde as those strings.
macro_rules! text_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vmeta])* $variant),+
        }

        impl $name {
            /// Every accepted text form, in declaration order.
            pub const NAMES: &'static [&'static str] = &[$($text),+];

            /// The canonical text form.
            #[must_use]
            pub const fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $text),+ }
            }
        }

        impl FromStr for $name {
            type Err = String;

            fn from_str(text: &str) -> Result<Self, String> {
                $(if text.eq_ignore_ascii_case($text) { return Ok(Self::$variant); })+
                Err(format!("{text:?} is not one of {}", Self::NAMES.join(", ")))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = String::deserialize(d)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

text_enum! {
    /// Verbosity of the agent's operational log (never of the flow log).
    LogLevel {
        /// Everything, including per-object reconcile traces.
        Trace => "trace",
        /// The incumbent's default.
        Debug => "debug",
        /// Start-up, changes and warnings.
        Info => "info",
        /// Problems that do not stop the agent.
        Warn => "warn",
        /// Failures only.
        Error => "error",
    }
}

text_enum! {
    /// How operational log lines are written (never the flow log).
    LogFormat {
        /// Human-readable lines; coloured only on a terminal.
        Text => "text",
        /// One JSON object per line (what the incumbent writes).
        Json => "json",
    }
}

text_enum! {
    /// Which verdicts become flow-log lines.
    FlowLogScope {
        /// ACCEPT and DENY.
        All => "all",
        /// DENY only (what many users asked the incumbent for).
        Deny => "deny",
        /// No flow-log lines (enforcement still runs).
        None => "none",
    }
}

text_enum! {
    /// The flow-log line format.
    LineFormat {
        /// Our JSON line: one object per flow with pod, namespace and policy names.
        Json => "json",
        /// The incumbent v1.3 printf-style line, for parsers written against it.
        CompatV13 => "compat-v1.3",
    }
}

text_enum! {
    /// `NETWORK_POLICY_ENFORCING_MODE`: what a new pod gets before its policies are in place.
    EnforcingMode {
        /// Default allow until the pod's policies are programmed (the incumbent's default).
        Standard => "standard",
        /// Default deny from the first packet; policies then open what they allow.
        Strict => "strict",
    }
}

text_enum! {
    /// Which Kubernetes API objects carry the policies (`--policy-source`).
    PolicyObjects {
        /// NetworkPolicies, resolved by the agent (any cluster).
        NetworkPolicy => "networkpolicy",
        /// The PolicyEndpoints the EKS network policy controller derives from them
        /// (`policyendpoints.networking.k8s.aws`), and the ClusterPolicyEndpoints it
        /// derives from ClusterNetworkPolicies (`clusterpolicyendpoints`), as the
        /// incumbent agent reads them.
        PolicyEndpoint => "policyendpoint",
    }
}

text_enum! {
    /// How the classifiers are attached to pod interfaces.
    AttachMode {
        /// TCX where the kernel has it (6.6+), netlink TC otherwise.
        Auto => "auto",
        /// TCX only; fail if the kernel lacks it.
        Tcx => "tcx",
        /// Legacy netlink TC (clsact) only.
        Netlink => "netlink",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_bool_forms_parse_and_others_fail() {
        for t in ["1", "t", "T", "TRUE", "true", "True"] {
            assert_eq!(parse_bool(t), Ok(true), "{t}");
        }
        for f in ["0", "f", "F", "FALSE", "false", "False"] {
            assert_eq!(parse_bool(f), Ok(false), "{f}");
        }
        assert!(parse_bool("yes").is_err());
        assert!(parse_bool("").is_err());
    }

    #[test]
    fn durations_accept_bare_seconds_units_and_compounds() {
        assert_eq!(parse_duration("300"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        for bad in ["", "s", "10x", "1.5s", "-1s", "10 s"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should fail");
        }
    }

    #[test]
    fn durations_format_round_trip() {
        for d in [
            Duration::from_secs(300),
            Duration::from_millis(500),
            Duration::from_millis(1500),
            Duration::ZERO,
        ] {
            assert_eq!(parse_duration(&format_duration(d)), Ok(d));
        }
        assert_eq!(format_duration(Duration::from_secs(60)), "60s");
    }

    #[test]
    fn bind_addresses_in_go_form_parse_and_print_back() {
        let cases = [
            (":8162", None, 8162, ":8162"),
            ("8163", None, 8163, ":8163"),
            ("127.0.0.1:9000", Some("127.0.0.1"), 9000, "127.0.0.1:9000"),
            ("[::1]:8162", Some("::1"), 8162, "[::1]:8162"),
            ("localhost:8162", Some("127.0.0.1"), 8162, "127.0.0.1:8162"),
        ];
        for (text, host, port, shown) in cases {
            let addr: BindAddr = text.parse().expect(text);
            assert_eq!(addr.host, host.map(|h| h.parse().expect("ip")), "{text}");
            assert_eq!(addr.port, port, "{text}");
            assert_eq!(addr.to_string(), shown, "{text}");
        }
    }

    #[test]
    fn bad_bind_addresses_say_what_is_wrong() {
        let cases = [
            (":0", "port"),
            (":70000", "port"),
            ("8162:", "port"),
            ("example.com:80", "not an IP address"),
            ("::1:8162", "IPv6"),
            ("[::1]8162", "IPv6"),
            ("", "empty"),
        ];
        for (text, needle) in cases {
            let err = text.parse::<BindAddr>().expect_err(text);
            assert!(err.contains(needle), "{text}: {err}");
        }
    }

    #[test]
    fn enums_parse_case_insensitively_and_reject_others_listing_choices() {
        assert_eq!("STRICT".parse::<EnforcingMode>(), Ok(EnforcingMode::Strict));
        assert_eq!(
            "compat-v1.3".parse::<LineFormat>(),
            Ok(LineFormat::CompatV13)
        );
        let err = "loose".parse::<EnforcingMode>().expect_err("loose");
        assert!(err.contains("standard, strict"), "{err}");
    }
}

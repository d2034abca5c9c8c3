//! Where a REST source (or a streaming source's peer: a queue) may reach. Without
//! configured prefixes, any http(s) URL whose every address is public: loopback,
//! link-local (169.254.0.0/16, the cloud metadata address), private, shared, unique-local
//! and reserved ranges are refused, checked on the resolved address of every connection
//! (so redirects and DNS rebinding are checked too, and no proxy resolves on our behalf).
//! With prefixes, only URLs under them, which the operator vouches for, may be reached,
//! on any address; their redirects must stay under them. Other sources' URLs
//! (`redis://...`) follow the same rule through [`Outbound::resolve`].

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use polaroid_proto::excerpt;
use reqwest::Url;
use tokio_rustls::rustls::pki_types::CertificateDer;
use tokio_rustls::rustls::pki_types::pem::PemObject;

use crate::error::{EngineError, EngineResult};

/// Why an address may not be reached.
fn forbidden(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(ip) => forbidden_v4(ip),
        IpAddr::V6(ip) => match ip.to_ipv4_mapped() {
            Some(v4) => forbidden_v4(v4),
            None => forbidden_v6(ip),
        },
    }
}

fn forbidden_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, ..] = ip.octets();
    if ip.is_loopback() {
        Some("loopback")
    } else if ip.is_link_local() {
        Some("link-local (the cloud metadata address is one)")
    } else if ip.is_private() {
        Some("private")
    } else if a == 100 && (64..128).contains(&b) {
        Some("shared (carrier-grade NAT)")
    } else if ip.is_unspecified() || a == 0 || ip.is_broadcast() || ip.is_multicast() || a >= 240 {
        Some("reserved")
    } else {
        None
    }
}

fn forbidden_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let first = ip.segments()[0];
    if ip.is_loopback() {
        Some("loopback")
    } else if first & 0xffc0 == 0xfe80 {
        Some("link-local")
    } else if first & 0xfe00 == 0xfc00 {
        Some("unique-local")
    } else if ip.is_unspecified() || ip.is_multicast() {
        Some("reserved")
    } else {
        None
    }
}

/// A refused destination; found in a failed request's error chain.
#[derive(Debug, thiserror::Error)]
#[error(
    "{host} is {why} ({address}); sources may reach public addresses only, unless the operator allows a URL prefix (rest_allowed_url_prefixes)"
)]
struct Refused {
    host: String,
    address: IpAddr,
    why: &'static str,
}

/// A redirect out of the allowed prefixes.
#[derive(Debug, thiserror::Error)]
#[error("a redirect to `{0}` leaves the allowed URL prefixes (rest_allowed_url_prefixes)")]
struct RedirectRefused(String);

/// Resolves names, refusing any that has an address outside the public ones.
struct PublicOnly;

impl reqwest::dns::Resolve for PublicOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addresses: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            // All or nothing: a name with one private address among public ones is how a
            // rebinding attack picks its moment.
            if let Some((address, why)) = addresses
                .iter()
                .find_map(|a| forbidden(a.ip()).map(|why| (a.ip(), why)))
            {
                return Err(Box::new(Refused { host, address, why })
                    as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(addresses.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// A URL prefix the operator allows: its scheme, host and port, and a path that the
/// URL's path equals or continues with a `/`.
#[derive(Debug, Clone)]
struct Prefix(Url);

impl Prefix {
    fn covers(&self, url: &Url) -> bool {
        let path = self.0.path().trim_end_matches('/');
        self.0.scheme() == url.scheme()
            && self.0.host() == url.host()
            && self.0.port_or_known_default() == url.port_or_known_default()
            && (url.path() == path
                || url
                    .path()
                    .strip_prefix(path)
                    .is_some_and(|rest| rest.starts_with('/')))
    }
}

/// The rule for one worker, with its HTTP clients.
pub struct Outbound {
    prefixes: Arc<Vec<Prefix>>,
    /// For URLs under a prefix, or everything when private networks are allowed.
    trusted: reqwest::Client,
    /// For everything else: public addresses only, on every connection.
    public: reqwest::Client,
    allow_private: bool,
    /// CA certificates trusted besides the system's (`outbound_ca_files`).
    extra_roots: Arc<Vec<CertificateDer<'static>>>,
}

/// Why the outbound settings were refused.
#[derive(Debug, thiserror::Error)]
pub enum OutboundError {
    #[error(
        "rest_allowed_url_prefixes: `{0}` is not an http(s), ws(s), redis, nats, amqp or kafka://host:port URL"
    )]
    BadPrefix(String),
    #[error("building the HTTP client: {0}")]
    Client(#[from] reqwest::Error),
    #[error("outbound_ca_files: `{file}`: {reason}")]
    CaFile { file: String, reason: String },
}

/// The CA certificates of `files` (PEM); a file that does not read, or holds none, is an
/// error: a setting that trusts nothing would only show when a peer is refused.
fn load_ca_files(
    files: &[std::path::PathBuf],
) -> Result<Vec<CertificateDer<'static>>, OutboundError> {
    let mut roots = Vec::new();
    for file in files {
        let failed = |reason: String| OutboundError::CaFile {
            file: file.display().to_string(),
            reason,
        };
        let pem = std::fs::read(file).map_err(|e| failed(e.to_string()))?;
        let certificates: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<_, _>>()
            .map_err(|e| failed(e.to_string()))?;
        if certificates.is_empty() {
            return Err(failed("holds no PEM certificate".into()));
        }
        roots.extend(certificates);
    }
    Ok(roots)
}

/// The HTTP clients of a rule: for trusted URLs, and for public addresses only.
fn http_clients(
    prefixes: &Arc<Vec<Prefix>>,
    allow_private: bool,
    extra_roots: &[CertificateDer<'static>],
) -> Result<(reqwest::Client, reqwest::Client), OutboundError> {
    let mut trusted = reqwest::Client::builder().redirect(redirects(prefixes.clone(), true));
    let mut public = reqwest::Client::builder()
        .dns_resolver(Arc::new(PublicOnly))
        // A proxy would resolve names itself, past the check.
        .no_proxy()
        .redirect(redirects(prefixes.clone(), allow_private));
    for root in extra_roots {
        trusted = trusted.add_root_certificate(reqwest::Certificate::from_der(root.as_ref())?);
        public = public.add_root_certificate(reqwest::Certificate::from_der(root.as_ref())?);
    }
    Ok((trusted.build()?, public.build()?))
}

impl Outbound {
    pub fn new(prefixes: &[String], allow_private: bool) -> Result<Self, OutboundError> {
        let prefixes: Vec<Prefix> = prefixes
            .iter()
            .map(|text| {
                Url::parse(text)
                    .ok()
                    .filter(|url| {
                        matches!(
                            url.scheme(),
                            "http" | "https" | "redis" | "ws" | "wss" | "nats" | "amqp" | "kafka"
                        ) && url.has_host()
                            // Kafka has no default port a URL knows of: the peers the
                            // gate checks always name theirs, so a prefix must too.
                            && (url.scheme() != "kafka" || url.port().is_some())
                    })
                    .map(Prefix)
                    .ok_or_else(|| OutboundError::BadPrefix(text.clone()))
            })
            .collect::<Result<_, _>>()?;
        let prefixes = Arc::new(prefixes);
        let (trusted, public) = http_clients(&prefixes, allow_private, &[])?;
        Ok(Self {
            prefixes,
            trusted,
            public,
            allow_private,
            extra_roots: Arc::default(),
        })
    }

    /// The same rule, whose TLS also trusts the CA certificates in `files` (PEM).
    pub fn with_ca_files(self, files: &[std::path::PathBuf]) -> Result<Self, OutboundError> {
        if files.is_empty() {
            return Ok(self);
        }
        let extra_roots = Arc::new(load_ca_files(files)?);
        let (trusted, public) = http_clients(&self.prefixes, self.allow_private, &extra_roots)?;
        Ok(Self {
            trusted,
            public,
            extra_roots,
            ..self
        })
    }

    /// The same rule with HTTP clients of its own: a stream's, whose connections close
    /// when it ends (the shared clients keep idle connections pooled).
    pub fn fresh(&self) -> Result<Self, OutboundError> {
        let (trusted, public) =
            http_clients(&self.prefixes, self.allow_private, &self.extra_roots)?;
        Ok(Self {
            prefixes: self.prefixes.clone(),
            trusted,
            public,
            allow_private: self.allow_private,
            extra_roots: self.extra_roots.clone(),
        })
    }

    /// What a source that wraps TLS itself (a `wss://` WebSocket) trusts: the system's
    /// trust store and `outbound_ca_files`.
    pub fn tls_roots(&self) -> tokio_rustls::rustls::RootCertStore {
        let mut roots = tokio_rustls::rustls::RootCertStore::empty();
        let (_, _) =
            roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
        let (_, _) = roots.add_parsable_certificates(self.extra_roots.iter().cloned());
        roots
    }

    /// The client that may fetch `url`, or why it may not be fetched.
    pub fn client_for(&self, url: &Url) -> EngineResult<&reqwest::Client> {
        if !self.prefixes.is_empty() {
            return if self.prefixes.iter().any(|p| p.covers(url)) {
                Ok(&self.trusted)
            } else {
                Err(EngineError::OutboundRefused(format!(
                    "`{}` is not under an allowed URL prefix (rest_allowed_url_prefixes)",
                    excerpt(url.as_str())
                )))
            };
        }
        if self.allow_private {
            return Ok(&self.trusted);
        }
        // An address written in the URL is never resolved: check it here.
        if let Some(refused) = literal_refusal(url) {
            return Err(EngineError::OutboundRefused(refused.to_string()));
        }
        Ok(&self.public)
    }

    /// The addresses a source that is not HTTP (a queue) may connect to for `url`
    /// (`default_port` when it names none), resolved here once: the caller connects to
    /// these, so what was checked is what is reached. Refused as `client_for` refuses.
    pub async fn resolve(&self, url: &Url, default_port: u16) -> EngineResult<Vec<SocketAddr>> {
        if !self.prefixes.is_empty() && !self.prefixes.iter().any(|p| p.covers(url)) {
            return Err(EngineError::OutboundRefused(format!(
                "`{}` is not under an allowed URL prefix (rest_allowed_url_prefixes)",
                excerpt(&redacted(url))
            )));
        }
        let port = url.port().unwrap_or(default_port);
        let addresses: Vec<SocketAddr> = match url.host() {
            Some(url::Host::Ipv4(ip)) => vec![SocketAddr::new(IpAddr::V4(ip), port)],
            Some(url::Host::Ipv6(ip)) => vec![SocketAddr::new(IpAddr::V6(ip), port)],
            Some(url::Host::Domain(name)) => tokio::net::lookup_host((name, port))
                .await
                .map_err(|e| {
                    EngineError::Remote(format!("cannot resolve `{}`: {e}", excerpt(name)))
                })?
                .collect(),
            None => {
                return Err(EngineError::invalid(format!(
                    "`{}` names no host",
                    excerpt(&redacted(url))
                )));
            }
        };
        if addresses.is_empty() {
            return Err(EngineError::Remote(format!(
                "`{}` resolves to no address",
                excerpt(url.host_str().unwrap_or_default())
            )));
        }
        if self.prefixes.is_empty() && !self.allow_private {
            // All or nothing, as for HTTP: a name with one private address is refused.
            if let Some((address, why)) = addresses
                .iter()
                .find_map(|a| forbidden(a.ip()).map(|why| (a.ip(), why)))
            {
                let refused = Refused {
                    host: url.host_str().unwrap_or_default().to_owned(),
                    address,
                    why,
                };
                return Err(EngineError::OutboundRefused(refused.to_string()));
            }
        }
        Ok(addresses)
    }

    /// The refusal inside a failed request's error, if that is why it failed.
    pub fn refusal(error: &reqwest::Error) -> Option<String> {
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
        while let Some(error) = source {
            if let Some(refused) = error.downcast_ref::<Refused>() {
                return Some(refused.to_string());
            }
            if let Some(refused) = error.downcast_ref::<RedirectRefused>() {
                return Some(refused.to_string());
            }
            source = error.source();
        }
        None
    }
}

/// `url` without its password, for messages.
pub fn redacted(url: &Url) -> String {
    let mut shown = url.clone();
    if shown.password().is_some() {
        let _ = shown.set_password(Some("***"));
    }
    shown.to_string()
}

/// The refusal of a URL whose host is a forbidden address literal.
fn literal_refusal(url: &Url) -> Option<Refused> {
    let address = match url.host()? {
        url::Host::Ipv4(ip) => IpAddr::V4(ip),
        url::Host::Ipv6(ip) => IpAddr::V6(ip),
        url::Host::Domain(_) => return None,
    };
    forbidden(address).map(|why| Refused {
        host: url.host_str().unwrap_or_default().to_owned(),
        address,
        why,
    })
}

/// Redirects (at most 10) stay under the prefixes when there are some; otherwise an
/// address literal is checked here, and a name by the resolver.
fn redirects(prefixes: Arc<Vec<Prefix>>, allow_private: bool) -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(move |attempt| {
        if attempt.previous().len() >= 10 {
            return attempt.error("more than 10 redirects");
        }
        let url = attempt.url();
        if !prefixes.is_empty() {
            if prefixes.iter().any(|p| p.covers(url)) {
                return attempt.follow();
            }
            let refused = RedirectRefused(excerpt(url.as_str()).to_string());
            return attempt.error(refused);
        }
        if !allow_private && let Some(refused) = literal_refusal(url) {
            return attempt.error(refused);
        }
        attempt.follow()
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn ca_files_that_trust_nothing_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let missing = dir.path().join("missing.pem");
        for (file, says) in [
            (empty, "holds no PEM certificate"),
            (missing, "missing.pem"),
        ] {
            let error = Outbound::new(&[], false)
                .unwrap()
                .with_ca_files(&[file])
                .err()
                .unwrap();
            assert!(error.to_string().contains(says), "{error}");
            assert!(
                error.to_string().starts_with("outbound_ca_files"),
                "{error}"
            );
        }
    }

    #[test]
    fn private_and_reserved_addresses_are_refused_public_ones_are_not() {
        for refused in [
            "127.0.0.1",
            "127.8.9.10",
            "169.254.169.254",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "::1",
            "::",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
        ] {
            let ip: IpAddr = refused.parse().unwrap();
            assert!(forbidden(ip).is_some(), "{refused}");
        }
        for allowed in ["8.8.8.8", "172.32.0.1", "100.128.0.1", "2606:4700::1111"] {
            let ip: IpAddr = allowed.parse().unwrap();
            assert_eq!(forbidden(ip), None, "{allowed}");
        }
    }

    #[test]
    fn a_prefix_covers_its_own_paths_only() {
        let prefix = Prefix(Url::parse("http://api.example.com:8080/v1").unwrap());
        let covers = |url: &str| prefix.covers(&Url::parse(url).unwrap());
        assert!(covers("http://api.example.com:8080/v1"));
        assert!(covers("http://api.example.com:8080/v1/items?page=2"));
        assert!(covers("http://API.example.com:8080/v1/items"));
        assert!(!covers("http://api.example.com:8080/v10"));
        assert!(!covers("http://api.example.com:8081/v1/items"));
        assert!(!covers("https://api.example.com:8080/v1/items"));
        assert!(!covers("http://api.example.com.evil.org:8080/v1/items"));
        assert!(!covers("http://user@evil.org/v1/items"));
    }

    #[test]
    fn kafka_prefixes_name_their_port() {
        // A kafka:// URL knows no default port, and the gate's peers always name one.
        assert!(matches!(
            Outbound::new(&["kafka://broker.internal".into()], false),
            Err(OutboundError::BadPrefix(_))
        ));
        let outbound = Outbound::new(&["kafka://broker.internal:9092".into()], false).unwrap();
        let prefix = &outbound.prefixes[0];
        assert!(prefix.covers(&Url::parse("kafka://broker.internal:9092").unwrap()));
        assert!(!prefix.covers(&Url::parse("kafka://broker.internal:9093").unwrap()));
    }

    #[test]
    fn literal_addresses_are_refused_before_any_request() {
        let outbound = Outbound::new(&[], false).unwrap();
        for url in [
            "http://127.0.0.1:9/x",
            "http://169.254.169.254/latest/meta-data/",
            "http://[::1]/",
            "http://10.0.0.1/",
        ] {
            let refused = outbound.client_for(&Url::parse(url).unwrap());
            assert!(
                matches!(refused, Err(EngineError::OutboundRefused(_))),
                "{url}"
            );
        }
        assert!(
            outbound
                .client_for(&Url::parse("http://example.com/").unwrap())
                .is_ok()
        );
        let prefixed = Outbound::new(&["http://127.0.0.1:9/api/".into()], false).unwrap();
        assert!(
            prefixed
                .client_for(&Url::parse("http://127.0.0.1:9/api/x").unwrap())
                .is_ok()
        );
        assert!(
            prefixed
                .client_for(&Url::parse("http://example.com/").unwrap())
                .is_err()
        );
        assert!(Outbound::new(&["not a url".into()], false).is_err());
        assert!(Outbound::new(&["file:///etc".into()], false).is_err());
    }
}

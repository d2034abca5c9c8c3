//! TLS on every port and mutual TLS between components (`[tls]`): the settings, the
//! certificates they name (read once, at start), and what servers and dialing components
//! build from them. A client certificate signed by the cluster CA (`client_ca_file`) is a
//! cluster credential, like the shared secret (see [`crate::Auth`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio_rustls::rustls;
use tokio_rustls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use tokio_rustls::rustls::crypto::CryptoProvider;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use tokio_rustls::rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};

pub use tokio_rustls::TlsAcceptor;
pub use tokio_rustls::client::TlsStream;

/// A handshake that takes longer is dropped: a peer that opens a connection and says
/// nothing must not hold a task (or a connection slot) for ever.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// TLS settings, the same for coordinators, workers and `polaroid standalone` (`[tls]` in
/// the settings file, `POLAROID_TLS_*` in the environment). All empty: plaintext.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// This process's certificate chain (PEM, its own certificate first). With
    /// `key_file`, the gRPC port serves TLS only.
    pub cert_file: PathBuf,
    /// The private key of `cert_file` (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
    /// The cluster CA (PEM): a client certificate it signed is a cluster credential, as
    /// the cluster secret is. The gRPC port then asks clients for a certificate; one
    /// without is checked by its token as before, one signed by another CA fails the
    /// handshake.
    pub client_ca_file: PathBuf,
    /// The CA certificates (PEM) of the servers this process dials. Set: a coordinator
    /// dials its workers over TLS, and a worker checks an `https://` coordinator with it.
    /// Empty: workers are dialed in plaintext, and `https://` URLs are checked against the
    /// system's trust store.
    pub ca_file: PathBuf,
    /// The certificate presented when dialing other components over TLS. Empty:
    /// `cert_file` (which then needs the clientAuth usage too, or no usage extension).
    pub client_cert_file: PathBuf,
    /// The private key of `client_cert_file`.
    pub client_key_file: PathBuf,
    /// The name checked in the certificates of the components this process dials, when
    /// they are dialed by address (a pod IP) and their certificates name a service.
    /// Empty: the host dialed, which the certificate must then name (an IP address SAN
    /// for an address).
    pub server_name: String,
    /// Serve `/healthz`, `/readyz` and `/metrics` over TLS too (with `cert_file`); false:
    /// plaintext HTTP, for probes and scrapers that cannot verify a certificate.
    pub admin_tls: bool,
    /// Not a setting: `polaroid standalone` sets it for its workers, which reach their
    /// coordinator's TLS port on loopback and trust exactly its certificate, whatever
    /// names it carries.
    #[serde(skip)]
    pub pinned_server_cert_file: PathBuf,
}

impl Default for TlsConfig {
    fn default() -> Self {
        Self {
            cert_file: PathBuf::new(),
            key_file: PathBuf::new(),
            client_ca_file: PathBuf::new(),
            ca_file: PathBuf::new(),
            client_cert_file: PathBuf::new(),
            client_key_file: PathBuf::new(),
            server_name: String::new(),
            admin_tls: true,
            pinned_server_cert_file: PathBuf::new(),
        }
    }
}

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("reading tls.{setting} {path}: {source}")]
    Read {
        setting: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("tls.{setting} {path}: {reason}")]
    Pem {
        setting: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error("{0}")]
    Settings(String),
    #[error("{what}: {source}")]
    Rustls {
        what: &'static str,
        source: rustls::Error,
    },
}

/// The TLS of one process, loaded: what its gRPC and HTTP ports serve, and how it dials
/// other components. `Tls::default()` is plaintext everywhere.
#[derive(Clone, Default)]
pub struct Tls {
    server: Option<Arc<ServerSide>>,
    /// Dialing components by address (`ca_file` set, or pinned by standalone).
    dialing: Option<ClientTls>,
    /// The certificate presented when dialing, for `https://` URLs without `ca_file`.
    identity: Option<Identity>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("serves", &self.server.is_some())
            .field("cluster_ca", &self.accepts_cluster_certificates())
            .field("dials", &self.dialing.is_some())
            .finish()
    }
}

struct ServerSide {
    identity: Identity,
    client_ca: Option<Vec<u8>>,
    admin: Option<TlsAcceptor>,
}

/// A certificate chain and its key, as PEM (what tonic takes) and parsed (what rustls
/// takes).
#[derive(Clone)]
struct Identity {
    cert_pem: Vec<u8>,
    key_pem: Vec<u8>,
    chain: Vec<CertificateDer<'static>>,
    key: Arc<PrivateKeyDer<'static>>,
}

impl Identity {
    fn load(
        (cert_setting, cert): (&'static str, &Path),
        (key_setting, key): (&'static str, &Path),
    ) -> Result<Self, TlsError> {
        let cert_pem = read(cert_setting, cert)?;
        let chain = certificates(cert_setting, cert, &cert_pem)?;
        let key_pem = read(key_setting, key)?;
        let parsed = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| TlsError::Pem {
            setting: key_setting,
            path: key.to_owned(),
            reason: format!("no private key: {e}"),
        })?;
        Ok(Self {
            cert_pem,
            key_pem,
            chain,
            key: Arc::new(parsed),
        })
    }

    fn tonic(&self) -> tonic::transport::Identity {
        tonic::transport::Identity::from_pem(&self.cert_pem, &self.key_pem)
    }
}

impl Tls {
    /// Reads the files `config` names and checks that they make sense together.
    pub fn load(config: &TlsConfig) -> Result<Self, TlsError> {
        let set = |path: &Path| !path.as_os_str().is_empty();
        let server_identity = match (set(&config.cert_file), set(&config.key_file)) {
            (false, false) => None,
            (true, true) => Some(Identity::load(
                ("cert_file", &config.cert_file),
                ("key_file", &config.key_file),
            )?),
            _ => {
                return Err(TlsError::Settings(
                    "set tls.cert_file and tls.key_file together".into(),
                ));
            }
        };
        let client_identity = match (set(&config.client_cert_file), set(&config.client_key_file)) {
            (false, false) => server_identity.clone(),
            (true, true) => Some(Identity::load(
                ("client_cert_file", &config.client_cert_file),
                ("client_key_file", &config.client_key_file),
            )?),
            _ => {
                return Err(TlsError::Settings(
                    "set tls.client_cert_file and tls.client_key_file together".into(),
                ));
            }
        };
        let client_ca = if set(&config.client_ca_file) {
            let pem = read("client_ca_file", &config.client_ca_file)?;
            certificates("client_ca_file", &config.client_ca_file, &pem)?;
            Some(pem)
        } else {
            None
        };
        let server = match server_identity {
            Some(identity) => Some(Arc::new(server_side(
                identity,
                client_ca,
                config.admin_tls,
            )?)),
            None if client_ca.is_some() => {
                return Err(TlsError::Settings(
                    "tls.client_ca_file needs tls.cert_file and tls.key_file: only a TLS port can ask for client certificates".into(),
                ));
            }
            None => None,
        };
        let server_name = Some(config.server_name.clone()).filter(|name| !name.is_empty());
        let dialing = if set(&config.pinned_server_cert_file) {
            let pem = read("cert_file", &config.pinned_server_cert_file)?;
            let chain = certificates("cert_file", &config.pinned_server_cert_file, &pem)?;
            let verifier = Arc::new(Pinned {
                certificate: chain.into_iter().next().ok_or_else(|| {
                    TlsError::Settings("the pinned certificate file is empty".into())
                })?,
                provider: provider(),
            });
            Some(ClientTls::new(
                verifier,
                client_identity.clone(),
                server_name,
            )?)
        } else if set(&config.ca_file) {
            let pem = read("ca_file", &config.ca_file)?;
            let roots = certificates("ca_file", &config.ca_file, &pem)?;
            Some(ClientTls::with_roots(
                roots,
                client_identity.clone(),
                server_name,
            )?)
        } else {
            None
        };
        Ok(Self {
            server,
            dialing,
            identity: client_identity,
        })
    }

    /// Whether the gRPC port serves TLS.
    pub fn serves_tls(&self) -> bool {
        self.server.is_some()
    }

    /// The gRPC server's TLS: its certificate, and the cluster CA whose client
    /// certificates it asks for (optional for clients). `None`: plaintext.
    pub fn grpc_server(&self) -> Option<tonic::transport::ServerTlsConfig> {
        let server = self.server.as_ref()?;
        let mut config = tonic::transport::ServerTlsConfig::new()
            .identity(server.identity.tonic())
            .timeout(HANDSHAKE_TIMEOUT);
        if let Some(ca) = &server.client_ca {
            config = config
                .client_ca_root(tonic::transport::Certificate::from_pem(ca))
                // Clients (users, SDKs) have no certificate: they present tokens.
                .client_auth_optional(true);
        }
        Some(config)
    }

    /// `server` serving TLS when this process does.
    pub fn server<L>(
        &self,
        server: tonic::transport::Server<L>,
    ) -> Result<tonic::transport::Server<L>, tonic::transport::Error> {
        match self.grpc_server() {
            Some(config) => server.tls_config(config),
            None => Ok(server),
        }
    }

    /// The HTTP admin port's TLS; `None`: plaintext.
    pub fn admin(&self) -> Option<TlsAcceptor> {
        self.server.as_ref()?.admin.clone()
    }

    /// Whether a client certificate signed by the cluster CA is a cluster credential here.
    pub fn accepts_cluster_certificates(&self) -> bool {
        self.server
            .as_ref()
            .is_some_and(|server| server.client_ca.is_some())
    }

    /// How components are dialed by address (a coordinator's workers): over TLS with
    /// this, or in plaintext when `None`.
    pub fn dialing(&self) -> Option<&ClientTls> {
        self.dialing.as_ref()
    }

    /// How to dial `url`: `None` for `http://`; for `https://`, with `ca_file` (or the
    /// system's trust store without one), presenting this process's certificate.
    pub fn for_url(&self, url: &str) -> Result<Option<ClientTls>, TlsError> {
        if !is_https(url) {
            return Ok(None);
        }
        match &self.dialing {
            Some(dialing) => Ok(Some(dialing.clone())),
            None => ClientTls::system(self.identity.clone()).map(Some),
        }
    }
}

/// Whether `url` names a TLS endpoint (`https://`, as tonic's clients spell it).
pub fn is_https(url: &str) -> bool {
    url.get(..8)
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case("https://"))
}

fn server_side(
    identity: Identity,
    client_ca: Option<Vec<u8>>,
    admin_tls: bool,
) -> Result<ServerSide, TlsError> {
    // Built whether or not the admin port uses it: this is also where rustls checks that
    // the key and the certificate belong together, at start rather than at the first
    // handshake.
    let mut admin = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|source| TlsError::Rustls {
            what: "server protocol versions",
            source,
        })?
        .with_no_client_auth()
        .with_single_cert(identity.chain.clone(), identity.key.clone_key())
        .map_err(|source| TlsError::Rustls {
            what: "tls.cert_file and tls.key_file",
            source,
        })?;
    admin.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    if let Some(ca) = &client_ca {
        // tonic builds the verifier from the PEM; a file none of whose certificates can
        // be a trust anchor is refused here instead.
        let mut roots = RootCertStore::empty();
        let (added, _) =
            roots.add_parsable_certificates(CertificateDer::pem_slice_iter(ca).flatten());
        if added == 0 {
            return Err(TlsError::Settings(
                "tls.client_ca_file: no usable CA certificate".into(),
            ));
        }
    }
    Ok(ServerSide {
        identity,
        client_ca,
        admin: admin_tls.then(|| TlsAcceptor::from(Arc::new(admin))),
    })
}

/// How this process dials another component over TLS: whom it trusts, the certificate
/// it presents, and the name it expects.
#[derive(Clone)]
pub struct ClientTls(Arc<ClientSide>);

struct ClientSide {
    verifier: Arc<dyn ServerCertVerifier>,
    identity: Option<Identity>,
    server_name: Option<String>,
    /// For connections made without tonic (the coordinator's link to each worker).
    config: Arc<rustls::ClientConfig>,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTls")
            .field("presents_certificate", &self.presents_certificate())
            .field("server_name", &self.0.server_name)
            .finish()
    }
}

impl ClientTls {
    /// Trusting the CA certificates in `ca_file` (a client's `--ca-file`), or the
    /// system's trust store without one; presenting no certificate.
    pub fn from_ca_file(ca_file: Option<&Path>) -> Result<Self, TlsError> {
        match ca_file {
            Some(path) => {
                let pem = read("ca_file", path)?;
                Self::with_roots(certificates("ca_file", path, &pem)?, None, None)
            }
            None => Self::system(None),
        }
    }

    fn system(identity: Option<Identity>) -> Result<Self, TlsError> {
        let found = rustls_native_certs::load_native_certs();
        if found.certs.is_empty() {
            return Err(TlsError::Settings(format!(
                "no CA certificates in the system's trust store ({} errors): give a CA file",
                found.errors.len()
            )));
        }
        Self::with_roots(found.certs, identity, None)
    }

    fn with_roots(
        roots: Vec<CertificateDer<'static>>,
        identity: Option<Identity>,
        server_name: Option<String>,
    ) -> Result<Self, TlsError> {
        let mut store = RootCertStore::empty();
        let (_, ignored) = store.add_parsable_certificates(roots);
        if store.is_empty() {
            return Err(TlsError::Settings(format!(
                "no usable CA certificate ({ignored} could not be parsed)"
            )));
        }
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(store),
            provider(),
        )
        .build()
        .map_err(|e| TlsError::Settings(format!("CA certificates: {e}")))?;
        Self::new(verifier, identity, server_name)
    }

    fn new(
        verifier: Arc<dyn ServerCertVerifier>,
        identity: Option<Identity>,
        server_name: Option<String>,
    ) -> Result<Self, TlsError> {
        let builder = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|source| TlsError::Rustls {
                what: "client protocol versions",
                source,
            })?
            .dangerous()
            .with_custom_certificate_verifier(verifier.clone());
        let mut config = match &identity {
            Some(identity) => builder
                .with_client_auth_cert(identity.chain.clone(), identity.key.clone_key())
                .map_err(|source| TlsError::Rustls {
                    what: "the client certificate and key",
                    source,
                })?,
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Self(Arc::new(ClientSide {
            verifier,
            identity,
            server_name,
            config: Arc::new(config),
        })))
    }

    /// Whether connections made with this present a certificate (a cluster credential
    /// where the server's `client_ca_file` signed it).
    pub fn presents_certificate(&self) -> bool {
        self.0.identity.is_some()
    }

    /// `endpoint` (whose URL is `https://`) dialing with this TLS.
    pub fn endpoint(
        &self,
        endpoint: tonic::transport::Endpoint,
    ) -> Result<tonic::transport::Endpoint, tonic::transport::Error> {
        let mut config = tonic::transport::ClientTlsConfig::new().timeout(HANDSHAKE_TIMEOUT);
        if let Some(identity) = &self.0.identity {
            config = config.identity(identity.tonic());
        }
        if let Some(name) = &self.0.server_name {
            config = config.domain_name(name.clone());
        }
        endpoint.tls_config_with_verifier(config, self.0.verifier.clone())
    }

    /// Opens TLS over `io`, a connection to `address` (`host:port`), checking the
    /// server's certificate for `server_name`, or for the host.
    pub async fn connect<IO>(&self, io: IO, address: &str) -> std::io::Result<TlsStream<IO>>
    where
        IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        let host = match &self.0.server_name {
            Some(name) => name.as_str(),
            None => host_of(address),
        };
        let name = ServerName::try_from(host.to_owned()).map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("{host:?} is not a name TLS can check: {e}"),
            )
        })?;
        let connector = tokio_rustls::TlsConnector::from(self.0.config.clone());
        tokio::time::timeout(HANDSHAKE_TIMEOUT, connector.connect(name, io))
            .await
            .map_err(|_| {
                std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("no TLS handshake within {HANDSHAKE_TIMEOUT:?}"),
                )
            })?
    }
}

/// The host of `host:port` (an IPv6 address without its brackets).
fn host_of(address: &str) -> &str {
    let host = address
        .rsplit_once(':')
        .map_or(address, |(host, _port)| host);
    host.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
}

/// The ring provider (no aws-lc, no cmake), which is also made the process's default on
/// first use: tonic builds its own TLS configurations from the default.
fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: std::sync::OnceLock<Arc<CryptoProvider>> = std::sync::OnceLock::new();
    PROVIDER
        .get_or_init(|| {
            let _ = CryptoProvider::install_default(rustls::crypto::ring::default_provider());
            Arc::new(rustls::crypto::ring::default_provider())
        })
        .clone()
}

fn read(setting: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        setting,
        path: path.to_owned(),
        source,
    })
}

/// The PEM certificates of a file; at least one.
fn certificates(
    setting: &'static str,
    path: &Path,
    pem: &[u8],
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let failed = |reason: String| TlsError::Pem {
        setting,
        path: path.to_owned(),
        reason,
    };
    let certificates = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| failed(e.to_string()))?;
    if certificates.is_empty() {
        return Err(failed("no PEM certificate in it".into()));
    }
    Ok(certificates)
}

/// Trusts exactly one certificate, whatever names it carries: the process that made the
/// connection knows the certificate its peer serves (standalone's own coordinator). The
/// handshake's signatures are still checked, so only the key's holder passes.
#[derive(Debug)]
struct Pinned {
    certificate: CertificateDer<'static>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if end_entity.as_ref() == self.certificate.as_ref() {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::UnknownIssuer,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

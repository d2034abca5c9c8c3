//! Who is calling: bearer tokens that map to a tenant and a role, the cluster credential
//! that only Polaroid's own components carry (a shared secret, or a client certificate
//! from the cluster CA: [`tls`]), and the tower layer that checks both on every gRPC call
//! of a coordinator or a worker.
//!
//! A call is one of four kinds, by its method path ([`CallKind`]): open (health checks,
//! reflection), internal (workers reporting to coordinators, job validation), admin, or a
//! client call. A client call needs a caller: a known token, or the anonymous tenant when
//! the operator allows one. Calls from a coordinator to a worker carry the cluster
//! credential and the caller they act for (`x-polaroid-tenant`, `x-polaroid-role`); the
//! same headers from anyone else are refused.

mod layer;
mod reload;
pub mod tls;
pub mod tokens;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use http::HeaderMap;
use polaroid_proto::ErrorCode;
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;
use tonic::Status;

pub use layer::{AuthLayer, Authenticated};
pub use reload::Tokens;
pub use tls::{Tls, TlsConfig, TlsError};
pub use tokens::{TokenTable, new_token, token_line};

/// The caller's tenant, set by coordinators on the calls they forward.
pub const TENANT_METADATA: &str = "x-polaroid-tenant";
/// The caller's role, beside [`TENANT_METADATA`].
pub const ROLE_METADATA: &str = "x-polaroid-role";
/// The cluster credential: the shared secret of internal calls.
pub const CLUSTER_CREDENTIAL_METADATA: &str = "x-polaroid-cluster-credential";

pub use polaroid_proto::tenant::{DEFAULT_TENANT, valid_tenant_name};

/// What a caller may do beyond its own tenant's data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Works with its own tenant's handles and jobs.
    User,
    /// Also sees the cluster: its workers, and every tenant's jobs.
    Admin,
}

impl Role {
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "user" => Some(Self::User),
            "admin" => Some(Self::Admin),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::Admin => "admin",
        }
    }
}

/// Who a call acts for; in the request's extensions of every call that has one.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Caller {
    pub tenant: String,
    pub role: Role,
}

impl Caller {
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }

    /// The caller of a request that passed [`AuthLayer`]; UNAUTHENTICATED when there is
    /// none (a service reached without the layer).
    pub fn of<T>(request: &tonic::Request<T>) -> Result<&Caller, Status> {
        Self::in_extensions(request.extensions())
    }

    /// [`Caller::of`] for services that read the HTTP request themselves.
    pub fn in_extensions(extensions: &http::Extensions) -> Result<&Caller, Status> {
        extensions
            .get::<Caller>()
            .ok_or_else(|| Status::unauthenticated("this call has no authenticated caller"))
    }
}

/// Authentication settings, the same for coordinators and workers (`[auth]` in the
/// settings file, `POLAROID_AUTH_*` in the environment).
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Bearer tokens, one per line (`polaroid token create`), read again when the file
    /// changes or on SIGHUP. Empty: no tokens.
    pub tokens_file: PathBuf,
    /// Callers without a token act as this tenant, with the user role. Empty: they are
    /// refused wherever tokens are configured (without tokens, they are `default`).
    pub anonymous_tenant: String,
    /// Lets a process without tokens listen beyond loopback, every caller acting as the
    /// anonymous tenant. Off: such a process refuses to start.
    pub allow_unauthenticated: bool,
    /// A file holding the cluster credential (the whole file, trimmed), which internal
    /// calls carry. Required with tokens.
    pub cluster_secret_file: PathBuf,
    /// The cluster credential itself, when not in a file (for example from a Secret in
    /// the environment: `POLAROID_AUTH_CLUSTER_SECRET`).
    pub cluster_secret: String,
    /// Seconds between checks of the token file for changes.
    pub tokens_reload_secs: f64,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            tokens_file: PathBuf::new(),
            anonymous_tenant: String::new(),
            allow_unauthenticated: false,
            cluster_secret_file: PathBuf::new(),
            cluster_secret: String::new(),
            tokens_reload_secs: 2.0,
        }
    }
}

impl AuthConfig {
    /// These settings with a random cluster secret if none is set: for components that
    /// run in one process (`polaroid standalone`), where nobody else needs to know it.
    pub fn with_own_cluster_secret(mut self) -> Self {
        if self.cluster_secret.is_empty() && self.cluster_secret_file.as_os_str().is_empty() {
            self.cluster_secret = hex::encode(rand::random::<[u8; 32]>());
        }
        self
    }
}

impl std::fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthConfig")
            .field("tokens_file", &self.tokens_file)
            .field("anonymous_tenant", &self.anonymous_tenant)
            .field("allow_unauthenticated", &self.allow_unauthenticated)
            .field("cluster_secret_file", &self.cluster_secret_file)
            .field(
                "cluster_secret",
                &if self.cluster_secret.is_empty() {
                    ""
                } else {
                    "<redacted>"
                },
            )
            .field("tokens_reload_secs", &self.tokens_reload_secs)
            .finish()
    }
}

/// Why authentication could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("reading the token file {path}: {source}")]
    TokensFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the token file {path}, {source}")]
    TokensParse {
        path: PathBuf,
        source: tokens::ParseError,
    },
    #[error("reading the cluster secret file {path}: {source}")]
    ClusterSecretFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Unsafe(String),
    #[error("tls: {0}")]
    Tls(#[from] TlsError),
}

/// The shared secret of internal calls. Never printed.
#[derive(Clone)]
pub struct ClusterSecret(Arc<str>);

impl std::fmt::Debug for ClusterSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClusterSecret(<redacted>)")
    }
}

/// Shorter secrets are refused: the credential must not be guessable.
const MIN_SECRET_BYTES: usize = 16;

impl ClusterSecret {
    pub fn new(secret: &str) -> Result<Self, AuthError> {
        let secret = secret.trim();
        let visible = secret.bytes().all(|b| b.is_ascii_graphic());
        if secret.len() < MIN_SECRET_BYTES || !visible {
            return Err(AuthError::Unsafe(format!(
                "the cluster secret must be at least {MIN_SECRET_BYTES} printable ASCII characters without spaces (for example `openssl rand -hex 32`)"
            )));
        }
        Ok(Self(secret.into()))
    }

    fn from_file(path: &Path) -> Result<Self, AuthError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| AuthError::ClusterSecretFile {
                path: path.to_owned(),
                source,
            })?;
        Self::new(&text)
    }

    /// Compared in constant time (for equal lengths; the length is not secret).
    pub fn matches(&self, presented: &[u8]) -> bool {
        bool::from(self.0.as_bytes().ct_eq(presented))
    }

    /// The header an internal call carries.
    pub fn header(&self) -> (http::HeaderName, http::HeaderValue) {
        let mut value = http::HeaderValue::from_str(&self.0)
            .unwrap_or_else(|_| http::HeaderValue::from_static("invalid"));
        // Not kept in HPACK's tables, nor printed by anything that honours the flag.
        value.set_sensitive(true);
        (
            http::HeaderName::from_static(CLUSTER_CREDENTIAL_METADATA),
            value,
        )
    }
}

/// What this process's own internal calls carry: the cluster secret (a header), a client
/// certificate from the cluster CA (presented on the TLS connection), or both. Empty in a
/// cluster without either, on loopback.
#[derive(Clone, Debug, Default)]
pub struct ClusterCredential {
    secret: Option<ClusterSecret>,
    certificate: bool,
}

impl ClusterCredential {
    /// Whether internal calls carry anything at all.
    pub fn is_some(&self) -> bool {
        self.secret.is_some() || self.certificate
    }

    /// Adds the credential, and the caller acted for, to a call about to be forwarded:
    /// the client's own token and caller headers never go on. Without a credential the
    /// headers are left alone (the receiver takes every call as its anonymous tenant).
    pub fn authorize(&self, headers: &mut HeaderMap, caller: Option<&Caller>) {
        if !self.is_some() {
            return;
        }
        if let Some(secret) = &self.secret {
            let (name, value) = secret.header();
            headers.insert(name, value);
        }
        headers.remove(http::header::AUTHORIZATION);
        headers.remove(TENANT_METADATA);
        headers.remove(ROLE_METADATA);
        if let Some(caller) = caller
            && let Ok(tenant) = http::HeaderValue::from_str(&caller.tenant)
        {
            headers.insert(TENANT_METADATA, tenant);
            headers.insert(
                ROLE_METADATA,
                http::HeaderValue::from_static(caller.role.as_str()),
            );
        }
    }

    /// [`ClusterCredential::authorize`] for a request made with a tonic client.
    pub fn authorize_request<T>(&self, request: &mut tonic::Request<T>, caller: Option<&Caller>) {
        let metadata = std::mem::take(request.metadata_mut());
        let mut headers = metadata.into_headers();
        self.authorize(&mut headers, caller);
        *request.metadata_mut() = tonic::metadata::MetadataMap::from_headers(headers);
    }
}

/// Adds the cluster credential to every request of a tonic client: a worker's load
/// reports, a coordinator's calls to workers that act for nobody.
#[derive(Clone, Debug, Default)]
pub struct WithClusterCredential(pub ClusterCredential);

impl tonic::service::Interceptor for WithClusterCredential {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, Status> {
        self.0.authorize_request(&mut request, None);
        Ok(request)
    }
}

/// Adds `authorization: Bearer <token>` to every request of a tonic client: the CLI,
/// benchmarks, tests.
#[derive(Clone, Default)]
pub struct WithBearerToken(Option<tonic::metadata::AsciiMetadataValue>);

impl std::fmt::Debug for WithBearerToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WithBearerToken(<redacted>)")
    }
}

impl WithBearerToken {
    /// `None`: requests go without a token. A token that cannot be a header is an error.
    pub fn new(token: Option<&str>) -> Result<Self, AuthError> {
        token
            .map(|token| {
                let mut value: tonic::metadata::AsciiMetadataValue =
                    format!("Bearer {}", token.trim()).parse().map_err(|_| {
                        AuthError::Unsafe("the token has characters a header cannot carry".into())
                    })?;
                value.set_sensitive(true);
                Ok(value)
            })
            .transpose()
            .map(Self)
    }
}

impl tonic::service::Interceptor for WithBearerToken {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

/// What a method path is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallKind {
    /// Health checks and reflection: nothing a caller could learn or change.
    Open,
    /// Between Polaroid's components only: membership and job validation.
    Internal,
    /// The cluster's own view: its workers, and its load as KEDA's external scaler reads it.
    Admin,
    /// Everything else: a tenant's data and jobs.
    Client,
}

impl CallKind {
    pub fn of(path: &str) -> Self {
        if path.starts_with("/grpc.health.v1.Health/") || path.starts_with("/grpc.reflection.") {
            Self::Open
        } else if path == "/polaroid.v1.ClusterService/ListWorkers"
            || path.starts_with("/externalscaler.ExternalScaler/")
        {
            Self::Admin
        } else if path.starts_with("/polaroid.v1.ClusterService/")
            || path.starts_with("/polaroid.v1.JobValidationService/")
        {
            Self::Internal
        } else {
            Self::Client
        }
    }
}

/// In the extensions of a call that carries the cluster credential: one component calling
/// another, for itself or for the caller it forwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ComponentCall;

/// What a checked call carries on: its caller (if any) and whether it is internal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Access {
    pub caller: Option<Caller>,
    pub internal: bool,
}

/// The rules of one process: its tokens, its anonymous tenant, its cluster credentials
/// (the secret, and the cluster CA of its TLS settings).
#[derive(Debug, Clone)]
pub struct Auth {
    tokens: Option<Arc<Tokens>>,
    anonymous: Option<Caller>,
    cluster_secret: Option<ClusterSecret>,
    tls: Tls,
}

impl Auth {
    /// [`Auth::from_settings`] of a process without TLS.
    pub fn from_config(config: &AuthConfig, bind: SocketAddr) -> Result<Self, AuthError> {
        Self::from_settings(config, &TlsConfig::default(), bind)
    }

    /// Checks `config` and loads `tls` for a process whose clients connect to `bind`. A
    /// process without tokens listens on loopback only, unless the operator allows it
    /// explicitly; beyond loopback it needs a cluster credential (the secret, or a
    /// cluster CA whose client certificates components present).
    pub fn from_settings(
        config: &AuthConfig,
        tls: &TlsConfig,
        bind: SocketAddr,
    ) -> Result<Self, AuthError> {
        let tls = Tls::load(tls)?;
        let cluster_secret = match (
            config.cluster_secret.is_empty(),
            config.cluster_secret_file.as_os_str().is_empty(),
        ) {
            (true, true) => None,
            (false, true) => Some(ClusterSecret::new(&config.cluster_secret)?),
            (true, false) => Some(ClusterSecret::from_file(&config.cluster_secret_file)?),
            (false, false) => {
                return Err(AuthError::Unsafe(
                    "set either cluster_secret or cluster_secret_file, not both".into(),
                ));
            }
        };
        if !config.anonymous_tenant.is_empty() && !valid_tenant_name(&config.anonymous_tenant) {
            return Err(AuthError::Unsafe(format!(
                "anonymous_tenant {:?}: expected 1 to 64 of [A-Za-z0-9._-], starting with a letter or digit",
                config.anonymous_tenant
            )));
        }
        check_exposure(config, bind)?;
        let cluster_credential = cluster_secret.is_some() || tls.accepts_cluster_certificates();
        // Without a credential, anyone who reaches the port could register a worker address
        // of their choosing and receive other clients' calls: beyond loopback, one is
        // needed with or without tokens.
        if !cluster_credential && !bind.ip().is_loopback() {
            return Err(AuthError::Unsafe(format!(
                "refusing to serve {bind} without a cluster credential (a cluster secret, or client certificates from a cluster CA): \
                 anyone who reaches it could register a worker or remove one. \
                 Set auth.cluster_secret_file (or POLAROID_AUTH_CLUSTER_SECRET), the same on every coordinator and worker \
                 (for example `openssl rand -hex 32`), or give components client certificates from a cluster CA (tls.client_ca_file)"
            )));
        }
        if config.tokens_file.as_os_str().is_empty() {
            let tenant = match config.anonymous_tenant.as_str() {
                "" => DEFAULT_TENANT.to_owned(),
                name => name.to_owned(),
            };
            return Ok(Self {
                tokens: None,
                // Whoever reaches a process without tokens owns it: on a laptop, the
                // user; with `allow_unauthenticated`, whom the network lets in.
                anonymous: Some(Caller {
                    tenant,
                    role: Role::Admin,
                }),
                cluster_secret,
                tls,
            });
        }
        if !cluster_credential {
            return Err(AuthError::Unsafe(
                "with tokens, internal calls need a cluster credential that no token carries: \
                 set auth.cluster_secret_file (or POLAROID_AUTH_CLUSTER_SECRET), the same on every coordinator and worker, \
                 or give components client certificates from a cluster CA (tls.client_ca_file)"
                    .into(),
            ));
        }
        let tokens = Tokens::load(&config.tokens_file)?;
        let reload = Duration::try_from_secs_f64(config.tokens_reload_secs)
            .unwrap_or(Duration::from_secs(2))
            .clamp(Duration::from_millis(100), Duration::from_secs(3600));
        tokens.watch(reload);
        Ok(Self {
            tokens: Some(tokens),
            anonymous: Some(&config.anonymous_tenant)
                .filter(|tenant| !tenant.is_empty())
                .map(|tenant| Caller {
                    tenant: tenant.clone(),
                    role: Role::User,
                }),
            cluster_secret,
            tls,
        })
    }

    /// This process's TLS: what it serves, and how it dials other components.
    pub fn tls(&self) -> &Tls {
        &self.tls
    }

    /// Whether internal calls here need a cluster credential (the secret, or a client
    /// certificate from the cluster CA).
    fn needs_cluster_credential(&self) -> bool {
        self.cluster_secret.is_some() || self.tls.accepts_cluster_certificates()
    }

    /// What this process's internal calls carry, on connections made with `dialing`
    /// (`None`: plaintext, where no certificate is presented). A process that needs a
    /// cluster credential itself is refused one that would carry nothing: its calls to
    /// components secured alike would all be refused.
    pub fn cluster_credential(
        &self,
        dialing: Option<&tls::ClientTls>,
    ) -> Result<ClusterCredential, AuthError> {
        let credential = ClusterCredential {
            secret: self.cluster_secret.clone(),
            certificate: dialing.is_some_and(tls::ClientTls::presents_certificate),
        };
        if self.needs_cluster_credential() && !credential.is_some() {
            return Err(AuthError::Unsafe(
                "this process accepts only certificates from the cluster CA as the cluster credential, \
                 but its own internal calls would present none: dial components over TLS (tls.ca_file, \
                 and an https:// coordinator_url) with a certificate from that CA, or set a cluster secret"
                    .into(),
            ));
        }
        Ok(credential)
    }

    /// The layer that checks every call with these rules.
    pub fn layer(self) -> AuthLayer {
        AuthLayer::new(Arc::new(self))
    }

    /// Decides whether a call to `path` with `headers` may go on, and as whom, on a
    /// connection without a client certificate.
    pub fn check(&self, path: &str, headers: &HeaderMap) -> Result<Access, Refusal> {
        self.check_peer(path, headers, Peer::Anyone)
    }

    /// [`Auth::check`] for a call on a connection from `peer`.
    pub fn check_peer(
        &self,
        path: &str,
        headers: &HeaderMap,
        peer: Peer,
    ) -> Result<Access, Refusal> {
        let kind = CallKind::of(path);
        if kind == CallKind::Open {
            return Ok(Access {
                caller: None,
                internal: false,
            });
        }
        // Either credential suffices: a component with the cluster CA's certificate is
        // one whatever secret it sends (during a secret's rotation, say).
        let internal = match (
            peer,
            headers.get(CLUSTER_CREDENTIAL_METADATA),
            &self.cluster_secret,
        ) {
            (Peer::ClusterComponent, _, _) if self.tls.accepts_cluster_certificates() => true,
            (_, None, _) => false,
            (_, Some(presented), Some(secret)) if secret.matches(presented.as_bytes()) => true,
            (_, Some(_), _) => return Err(Refusal::WrongClusterCredential),
        };
        let caller = if internal {
            forwarded_caller(headers)?
        } else {
            if headers.contains_key(TENANT_METADATA) || headers.contains_key(ROLE_METADATA) {
                return Err(Refusal::ForwardedCallerFromClient);
            }
            match (bearer(headers), &self.tokens) {
                (Some(Err(())), Some(_)) => return Err(Refusal::MalformedAuthorization),
                (Some(Ok(token)), Some(tokens)) => Some(
                    tokens
                        .current()
                        .authenticate(token)
                        .ok_or(Refusal::UnknownToken)?,
                ),
                // Without tokens a token means nothing: the SDK sends one if it has one.
                (_, None) | (None, Some(_)) => self.anonymous.clone(),
            }
        };
        match kind {
            CallKind::Open => {}
            CallKind::Internal => {
                if !internal && self.needs_cluster_credential() {
                    return Err(Refusal::InternalCall);
                }
            }
            CallKind::Admin => match &caller {
                _ if internal => {}
                Some(caller) if caller.is_admin() => {}
                Some(_) => return Err(Refusal::AdminOnly),
                None => return Err(Refusal::NoToken),
            },
            CallKind::Client => {
                if caller.is_none() {
                    return Err(Refusal::NoToken);
                }
            }
        }
        Ok(Access { caller, internal })
    }
}

/// Who is at the other end of a call's connection, as its TLS handshake showed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    /// No client certificate (plaintext, or TLS without one).
    Anyone,
    /// A client certificate that the cluster CA (`tls.client_ca_file`) signed: the
    /// handshake verified it against that CA alone, so it is one of the cluster's own.
    ClusterComponent,
}

/// Refuses settings that would let anyone who reaches `bind` act as a tenant: no tokens
/// on an address beyond loopback, unless the operator allows it explicitly.
pub fn check_exposure(config: &AuthConfig, bind: SocketAddr) -> Result<(), AuthError> {
    if config.tokens_file.as_os_str().is_empty()
        && !bind.ip().is_loopback()
        && !config.allow_unauthenticated
    {
        return Err(AuthError::Unsafe(format!(
            "refusing to serve {bind} without authentication: anyone who reaches it could read and change every handle. \
             Create tokens with `polaroid token create --tenant <name>` and set auth.tokens_file (POLAROID_AUTH_TOKENS_FILE) \
             and auth.cluster_secret_file, or set auth.allow_unauthenticated = true (POLAROID_AUTH_ALLOW_UNAUTHENTICATED) \
             to let every caller act as one tenant"
        )));
    }
    Ok(())
}

/// The caller a coordinator forwarded, from a call that carries the cluster credential.
fn forwarded_caller(headers: &HeaderMap) -> Result<Option<Caller>, Refusal> {
    let Some(tenant) = headers.get(TENANT_METADATA) else {
        return Ok(None);
    };
    let tenant = tenant
        .to_str()
        .ok()
        .filter(|t| valid_tenant_name(t))
        .ok_or(Refusal::MalformedForwardedCaller)?;
    let role = match headers.get(ROLE_METADATA) {
        None => Role::User,
        Some(role) => role
            .to_str()
            .ok()
            .and_then(Role::parse)
            .ok_or(Refusal::MalformedForwardedCaller)?,
    };
    Ok(Some(Caller {
        tenant: tenant.to_owned(),
        role,
    }))
}

/// The token of an `authorization: Bearer <token>` header; `Err` for another form.
fn bearer(headers: &HeaderMap) -> Option<Result<&str, ()>> {
    let value = headers.get(http::header::AUTHORIZATION)?;
    let parsed = value.to_str().ok().and_then(|text| {
        let (scheme, token) = text.trim().split_once(' ')?;
        let token = token.trim();
        (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
    });
    Some(parsed.ok_or(()))
}

/// Why a call was refused. Messages say what to do, never echo what was presented.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error(
        "this server requires a token: send `authorization: Bearer <token>` (ask the operator for one; `polaroid token create` makes them)"
    )]
    NoToken,
    #[error("the token is unknown or was revoked")]
    UnknownToken,
    #[error("the authorization header must be `Bearer <token>`")]
    MalformedAuthorization,
    #[error("the cluster credential is wrong")]
    WrongClusterCredential,
    #[error(
        "x-polaroid-tenant and x-polaroid-role are set by Polaroid's own components only; the tenant comes from the token"
    )]
    ForwardedCallerFromClient,
    #[error("a forwarded caller's x-polaroid-tenant or x-polaroid-role is malformed")]
    MalformedForwardedCaller,
    #[error(
        "this is an internal call between Polaroid's components; it needs the cluster credential (the cluster secret, or a client certificate from the cluster CA)"
    )]
    InternalCall,
    #[error("this call needs the admin role")]
    AdminOnly,
}

impl Refusal {
    /// The metrics label of the refusal.
    pub fn reason(self) -> &'static str {
        match self {
            Self::NoToken => "no_token",
            Self::UnknownToken => "unknown_token",
            Self::MalformedAuthorization => "malformed_authorization",
            Self::WrongClusterCredential => "wrong_cluster_credential",
            Self::ForwardedCallerFromClient => "forwarded_caller_from_client",
            Self::MalformedForwardedCaller => "malformed_forwarded_caller",
            Self::InternalCall => "internal_call",
            Self::AdminOnly => "admin_only",
        }
    }

    /// Its code in the shared error-code table.
    pub fn code(self) -> ErrorCode {
        match self {
            Self::NoToken
            | Self::UnknownToken
            | Self::MalformedAuthorization
            | Self::WrongClusterCredential => ErrorCode::Unauthenticated,
            Self::ForwardedCallerFromClient | Self::InternalCall | Self::AdminOnly => {
                ErrorCode::PermissionDenied
            }
            Self::MalformedForwardedCaller => ErrorCode::InvalidArgument,
        }
    }

    pub fn status(self) -> Status {
        self.code().status(self.to_string())
    }
}

#[cfg(test)]
mod tests;

//! The rules of [`Auth::check`], call kind by call kind.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use super::*;

const CLIENT_CALL: &str = "/polaroid.v1.DataFrameService/Collect";
const REPORT_LOAD: &str = "/polaroid.v1.ClusterService/ReportLoad";
const LIST_WORKERS: &str = "/polaroid.v1.ClusterService/ListWorkers";
const KEDA_GET_METRICS: &str = "/externalscaler.ExternalScaler/GetMetrics";
const VALIDATE_JOB: &str = "/polaroid.v1.JobValidationService/ValidateJob";
const HEALTH: &str = "/grpc.health.v1.Health/Check";

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 50051))
}

fn anywhere() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 50051))
}

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.insert(
            http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            http::HeaderValue::from_str(value).unwrap(),
        );
    }
    map
}

struct Cluster {
    _dir: tempfile::TempDir,
    auth: Auth,
    user: String,
    admin: String,
    secret: String,
}

/// Tokens for tenant `a` (user) and `ops` (admin), and a cluster secret.
fn with_tokens(anonymous_tenant: &str) -> Cluster {
    let dir = tempfile::tempdir().unwrap();
    let (user, admin) = (new_token(), new_token());
    let file = dir.path().join("tokens");
    std::fs::write(
        &file,
        format!(
            "{}\n{}\n",
            token_line(&user, "a", Role::User, "alice"),
            token_line(&admin, "ops", Role::Admin, "")
        ),
    )
    .unwrap();
    let secret = "0123456789abcdef0123456789abcdef".to_owned();
    let config = AuthConfig {
        tokens_file: file,
        cluster_secret: secret.clone(),
        anonymous_tenant: anonymous_tenant.into(),
        ..AuthConfig::default()
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // The token file's watcher is a task: it needs a runtime to start on.
    let auth = runtime
        .block_on(async { Auth::from_config(&config, anywhere()) })
        .unwrap();
    Cluster {
        _dir: dir,
        auth,
        user,
        admin,
        secret,
    }
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

#[test]
fn without_tokens_loopback_is_one_tenant_and_anywhere_else_refuses_to_start() {
    let auth = Auth::from_config(&AuthConfig::default(), loopback()).unwrap();
    let access = auth.check(CLIENT_CALL, &HeaderMap::new()).unwrap();
    assert_eq!(access.caller.unwrap().tenant, DEFAULT_TENANT);
    // A token means nothing there, but is not an error: the SDK sends one if it has one.
    let access = auth
        .check(CLIENT_CALL, &headers(&[("authorization", "Bearer x")]))
        .unwrap();
    assert_eq!(access.caller.unwrap().tenant, DEFAULT_TENANT);

    let error = Auth::from_config(&AuthConfig::default(), anywhere()).unwrap_err();
    let message = error.to_string();
    assert!(message.contains("tokens_file") && message.contains("allow_unauthenticated"));

    let allowed = AuthConfig {
        allow_unauthenticated: true,
        anonymous_tenant: "shared".into(),
        ..AuthConfig::default()
    };
    // Beyond loopback internal calls need a credential even without tokens.
    let error = Auth::from_config(&allowed, anywhere()).unwrap_err();
    assert!(error.to_string().contains("cluster credential"), "{error}");
    let allowed = AuthConfig {
        cluster_secret: "0123456789abcdef0123456789abcdef".into(),
        ..allowed
    };
    let auth = Auth::from_config(&allowed, anywhere()).unwrap();
    assert_eq!(
        auth.check(REPORT_LOAD, &HeaderMap::new()).unwrap_err(),
        Refusal::InternalCall
    );
    let caller = auth.check(CLIENT_CALL, &HeaderMap::new()).unwrap().caller;
    assert_eq!(caller.unwrap().tenant, "shared");
}

#[test]
fn tokens_need_a_cluster_secret_and_secrets_must_be_long() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tokens");
    std::fs::write(&file, token_line(&new_token(), "a", Role::User, "")).unwrap();
    let config = AuthConfig {
        tokens_file: file,
        ..AuthConfig::default()
    };
    let error = Auth::from_config(&config, anywhere()).unwrap_err();
    assert!(error.to_string().contains("cluster_secret_file"), "{error}");
    let short = AuthConfig {
        cluster_secret: "short".into(),
        ..config
    };
    let error = Auth::from_config(&short, anywhere()).unwrap_err();
    assert!(error.to_string().contains("at least 16"), "{error}");
    assert!(
        !format!("{short:?}").contains("short"),
        "secrets are not printed"
    );
}

#[test]
fn a_client_call_takes_its_tenant_from_its_token() {
    let cluster = with_tokens("");
    let auth = &cluster.auth;
    let access = auth
        .check(
            CLIENT_CALL,
            &headers(&[("authorization", &bearer(&cluster.user))]),
        )
        .unwrap();
    assert_eq!(
        access,
        Access {
            caller: Some(Caller {
                tenant: "a".into(),
                role: Role::User
            }),
            internal: false
        }
    );
    let refused = |pairs: &[(&str, &str)]| auth.check(CLIENT_CALL, &headers(pairs)).unwrap_err();
    assert_eq!(refused(&[]), Refusal::NoToken);
    assert_eq!(
        refused(&[("authorization", &bearer(&new_token()))]),
        Refusal::UnknownToken
    );
    assert_eq!(
        refused(&[("authorization", &format!("Basic {}", cluster.user))]),
        Refusal::MalformedAuthorization
    );
    assert_eq!(
        refused(&[("authorization", "Bearer ")]),
        Refusal::MalformedAuthorization
    );
    // A client naming its own tenant is refused, whatever its token.
    assert_eq!(
        refused(&[
            ("authorization", &bearer(&cluster.user)),
            (TENANT_METADATA, "ops")
        ]),
        Refusal::ForwardedCallerFromClient
    );
    assert_eq!(
        refused(&[(TENANT_METADATA, "ops"), (ROLE_METADATA, "admin")]),
        Refusal::ForwardedCallerFromClient
    );
    assert_eq!(
        Refusal::NoToken.status().code(),
        tonic::Code::Unauthenticated
    );
    assert_eq!(
        Refusal::AdminOnly.status().code(),
        tonic::Code::PermissionDenied
    );
}

#[test]
fn an_anonymous_tenant_takes_callers_without_a_token_only() {
    let cluster = with_tokens("guests");
    let auth = &cluster.auth;
    let caller = auth.check(CLIENT_CALL, &HeaderMap::new()).unwrap().caller;
    assert_eq!(
        caller,
        Some(Caller {
            tenant: "guests".into(),
            role: Role::User
        })
    );
    // A bad token is still refused: it is not silently demoted to the anonymous tenant.
    assert_eq!(
        auth.check(
            CLIENT_CALL,
            &headers(&[("authorization", &bearer(&new_token()))])
        )
        .unwrap_err(),
        Refusal::UnknownToken
    );
}

#[test]
fn internal_calls_need_the_cluster_credential_that_no_token_carries() {
    let cluster = with_tokens("");
    let auth = &cluster.auth;
    for path in [REPORT_LOAD, VALIDATE_JOB] {
        assert_eq!(
            auth.check(path, &HeaderMap::new()).unwrap_err(),
            Refusal::InternalCall
        );
        for token in [&cluster.user, &cluster.admin] {
            let presented = headers(&[("authorization", &bearer(token))]);
            assert_eq!(
                auth.check(path, &presented).unwrap_err(),
                Refusal::InternalCall
            );
        }
        let internal = headers(&[(CLUSTER_CREDENTIAL_METADATA, &cluster.secret)]);
        assert!(auth.check(path, &internal).unwrap().internal);
        let wrong = headers(&[(
            CLUSTER_CREDENTIAL_METADATA,
            "0123456789abcdef0123456789abcdeX",
        )]);
        assert_eq!(
            auth.check(path, &wrong).unwrap_err(),
            Refusal::WrongClusterCredential
        );
    }
    // Health checks are open.
    assert!(auth.check(HEALTH, &HeaderMap::new()).is_ok());
}

#[test]
fn a_forwarded_call_acts_for_the_caller_its_coordinator_names() {
    let cluster = with_tokens("");
    let credential = ClusterCredential {
        secret: Some(ClusterSecret::new(&cluster.secret).unwrap()),
        certificate: false,
    };
    let mut forwarded = headers(&[("authorization", &bearer(&cluster.user))]);
    let caller = Caller {
        tenant: "a".into(),
        role: Role::User,
    };
    credential.authorize(&mut forwarded, Some(&caller));
    assert!(
        !forwarded.contains_key("authorization"),
        "tokens are not passed on"
    );
    let access = cluster.auth.check(CLIENT_CALL, &forwarded).unwrap();
    assert_eq!(access.caller, Some(caller));
    assert!(access.internal);
    forwarded.insert(TENANT_METADATA, http::HeaderValue::from_static("../a"));
    assert_eq!(
        cluster.auth.check(CLIENT_CALL, &forwarded).unwrap_err(),
        Refusal::MalformedForwardedCaller
    );
}

#[test]
fn listing_workers_and_reading_the_scaler_are_for_admins() {
    let cluster = with_tokens("");
    let auth = &cluster.auth;
    for path in [LIST_WORKERS, KEDA_GET_METRICS] {
        let as_user = headers(&[("authorization", &bearer(&cluster.user))]);
        assert_eq!(
            auth.check(path, &as_user).unwrap_err(),
            Refusal::AdminOnly,
            "{path}"
        );
        let as_admin = headers(&[("authorization", &bearer(&cluster.admin))]);
        assert!(auth.check(path, &as_admin).is_ok(), "{path}");
        assert_eq!(
            auth.check(path, &HeaderMap::new()).unwrap_err(),
            Refusal::NoToken,
            "{path}"
        );
    }
}

#[test]
fn tenant_names_are_plain() {
    for good in ["a", "team-1", "A.b_c", &"x".repeat(64)] {
        assert!(valid_tenant_name(good), "{good}");
    }
    for bad in ["", "a/b", "..", ".a", "-a", " a", "é", &"x".repeat(65)] {
        assert!(!valid_tenant_name(bad), "{bad}");
    }
}

/// A self-signed certificate for `localhost` and its key, as PEM files in `dir`.
fn certificate(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let rcgen::CertifiedKey { cert, signing_key } =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let (cert_file, key_file) = (
        dir.join(format!("{name}.crt")),
        dir.join(format!("{name}.key")),
    );
    std::fs::write(&cert_file, cert.pem()).unwrap();
    std::fs::write(&key_file, signing_key.serialize_pem()).unwrap();
    (cert_file, key_file)
}

/// TLS settings whose port asks for client certificates of the cluster CA (here a
/// self-signed certificate: only its parsing matters to these rules).
fn cluster_ca_tls(dir: &Path) -> TlsConfig {
    let (cert_file, key_file) = certificate(dir, "server");
    let (client_ca_file, _) = certificate(dir, "ca");
    TlsConfig {
        cert_file,
        key_file,
        client_ca_file,
        ..TlsConfig::default()
    }
}

#[test]
fn a_client_certificate_from_the_cluster_ca_is_a_cluster_credential() {
    let dir = tempfile::tempdir().unwrap();
    let config = AuthConfig {
        allow_unauthenticated: true,
        ..AuthConfig::default()
    };
    // Beyond loopback, the cluster CA alone is a cluster credential: no secret needed.
    let auth = Auth::from_settings(&config, &cluster_ca_tls(dir.path()), anywhere()).unwrap();
    assert!(auth.tls().serves_tls() && auth.tls().accepts_cluster_certificates());
    let component = Peer::ClusterComponent;
    for path in [REPORT_LOAD, VALIDATE_JOB] {
        assert!(
            auth.check_peer(path, &HeaderMap::new(), component)
                .unwrap()
                .internal
        );
        assert_eq!(
            auth.check(path, &HeaderMap::new()).unwrap_err(),
            Refusal::InternalCall,
            "without the certificate, the call is a client's"
        );
        // A secret presented beside the certificate does not matter: either suffices.
        let guessed = headers(&[(CLUSTER_CREDENTIAL_METADATA, "0123456789abcdef0123456789")]);
        assert!(auth.check_peer(path, &guessed, component).unwrap().internal);
        assert_eq!(
            auth.check(path, &guessed).unwrap_err(),
            Refusal::WrongClusterCredential
        );
    }
    // A component acts for the caller it names, as with the secret.
    let forwarded = headers(&[(TENANT_METADATA, "a"), (ROLE_METADATA, "user")]);
    let access = auth.check_peer(CLIENT_CALL, &forwarded, component).unwrap();
    assert_eq!(access.caller.unwrap().tenant, "a");
    assert_eq!(
        auth.check(CLIENT_CALL, &forwarded).unwrap_err(),
        Refusal::ForwardedCallerFromClient
    );

    // Where no cluster CA is configured, a certificate is nobody's credential.
    let secret = "0123456789abcdef0123456789abcdef";
    let plain = Auth::from_config(
        &AuthConfig {
            cluster_secret: secret.into(),
            ..config.clone()
        },
        anywhere(),
    )
    .unwrap();
    assert_eq!(
        plain
            .check_peer(REPORT_LOAD, &HeaderMap::new(), component)
            .unwrap_err(),
        Refusal::InternalCall
    );

    // Its own calls need a way to present the certificate: TLS towards components.
    let error = auth.cluster_credential(None).unwrap_err();
    assert!(error.to_string().contains("tls.ca_file"), "{error}");
    assert!(!plain.cluster_credential(None).unwrap().certificate);
}

#[test]
fn tls_settings_are_checked_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let (cert_file, key_file) = certificate(dir.path(), "server");
    let (_, other_key) = certificate(dir.path(), "other");
    let loaded = |config: TlsConfig| Tls::load(&config).map(|_| ()).map_err(|e| e.to_string());
    assert!(loaded(TlsConfig::default()).is_ok());
    assert!(
        loaded(TlsConfig {
            cert_file: cert_file.clone(),
            key_file: key_file.clone(),
            ..TlsConfig::default()
        })
        .is_ok()
    );
    let refused = [
        (
            TlsConfig {
                cert_file: cert_file.clone(),
                ..TlsConfig::default()
            },
            "together",
        ),
        (
            TlsConfig {
                cert_file: cert_file.clone(),
                key_file: other_key,
                ..TlsConfig::default()
            },
            "tls.cert_file and tls.key_file",
        ),
        (
            TlsConfig {
                client_ca_file: cert_file.clone(),
                ..TlsConfig::default()
            },
            "only a TLS port",
        ),
        (
            TlsConfig {
                ca_file: key_file.clone(),
                ..TlsConfig::default()
            },
            "no PEM certificate",
        ),
        (
            TlsConfig {
                ca_file: dir.path().join("missing.pem"),
                ..TlsConfig::default()
            },
            "reading tls.ca_file",
        ),
    ];
    for (config, reason) in refused {
        let error = loaded(config).unwrap_err();
        assert!(error.contains(reason), "{reason}: {error}");
    }

    let tls = Tls::load(&TlsConfig {
        ca_file: cert_file.clone(),
        cert_file,
        key_file,
        ..TlsConfig::default()
    })
    .unwrap();
    let dialing = tls.dialing().unwrap();
    assert!(
        dialing.presents_certificate(),
        "a component presents its own certificate unless given another"
    );
    assert!(tls.for_url("http://coordinator:50051").unwrap().is_none());
    assert!(tls.for_url("HTTPS://coordinator:50051").unwrap().is_some());
}

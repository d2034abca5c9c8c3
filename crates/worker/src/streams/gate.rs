//! A loopback SOCKS5 endpoint that holds a client library to the outbound rules: a library
//! that picks its own peers (a Kafka client dials the brokers the cluster's metadata
//! advertises, not only the bootstrap address the request named) is pointed at the gate,
//! which checks each peer under the rules, resolves it once and connects to the address it
//! checked. A peer refused leaves its reason here for the caller's error message, and
//! peers that could not be reached for a while end the caller's work (a library would
//! retry them without end).
//!
//! Only what such a library sends is served: no authentication, `CONNECT` only.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use reqwest::Url;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::error::{EngineError, EngineResult};
use crate::outbound::Outbound;

/// How long one peer may take to accept a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a library may take to say where it goes.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

const VERSION: u8 = 5;
const NO_AUTHENTICATION: u8 = 0;
const NO_ACCEPTABLE_METHOD: u8 = 0xff;
const CONNECT: u8 = 1;
const SUCCEEDED: u8 = 0;
const NOT_ALLOWED: u8 = 2;
const HOST_UNREACHABLE: u8 = 4;
const COMMAND_NOT_SUPPORTED: u8 = 7;
const ADDRESS_NOT_SUPPORTED: u8 = 8;

/// The gate of one stream: it serves until dropped.
pub struct Gate {
    address: SocketAddr,
    /// The rules' reason for the last peer they refused.
    refused: watch::Receiver<Option<String>>,
    /// Since when every connection tried failed (none succeeding since), and why.
    unreachable: watch::Receiver<Option<(tokio::time::Instant, String)>>,
    /// How long peers may stay unreachable.
    give_up_after: Duration,
    /// Whom the gate serves (`Kafka at kafka://host:port`), for messages.
    serving: String,
    task: tokio::task::AbortHandle,
}

impl Gate {
    /// Opens a gate for peers named as `scheme://host:port` URLs (which the rules'
    /// prefixes match).
    /// `serving` names the caller in messages; peers unreachable for `give_up_after`
    /// end its guarded work with UNAVAILABLE.
    pub async fn open(
        outbound: Arc<Outbound>,
        scheme: &'static str,
        serving: String,
        give_up_after: Duration,
    ) -> EngineResult<Self> {
        let listener = TcpListener::bind((IpAddr::from([127, 0, 0, 1]), 0))
            .await
            .map_err(|e| EngineError::Internal {
                operation: "outbound gate",
                reason: e.to_string(),
            })?;
        let address = listener.local_addr().map_err(|e| EngineError::Internal {
            operation: "outbound gate",
            reason: e.to_string(),
        })?;
        let (refuse, refused) = watch::channel(None);
        let (reach, unreachable) = watch::channel(None);
        let (refuse, reach) = (Arc::new(refuse), Arc::new(reach));
        let task = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            loop {
                // Out of descriptors, say: the connection waits in the backlog meanwhile,
                // and counts as a peer not reached, so that guarded work ends in time.
                let connection = match listener.accept().await {
                    Ok((connection, _)) => connection,
                    Err(e) => {
                        reach.send_if_modified(|since| {
                            let first = since.is_none();
                            if first {
                                let reason = format!("the outbound gate cannot accept: {e}");
                                *since = Some((tokio::time::Instant::now(), reason));
                            }
                            first
                        });
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let (outbound, refuse, reach) = (
                    Arc::clone(&outbound),
                    Arc::clone(&refuse),
                    Arc::clone(&reach),
                );
                connections.spawn(async move {
                    // A failed connection is the library's to report; a refusal is kept,
                    // and since when no connection succeeds.
                    let reached = |outcome: Result<(), String>| {
                        reach.send_if_modified(|since| match (&outcome, &since) {
                            (Ok(()), Some(_)) => {
                                *since = None;
                                true
                            }
                            (Err(reason), None) => {
                                *since = Some((tokio::time::Instant::now(), reason.clone()));
                                true
                            }
                            _ => false,
                        });
                    };
                    if let Err(Refusal::Rule(reason)) =
                        relay(connection, &outbound, scheme, reached).await
                    {
                        refuse.send_replace(Some(reason));
                    }
                });
                while connections.try_join_next().is_some() {}
            }
        })
        .abort_handle();
        Ok(Self {
            address,
            refused,
            unreachable,
            give_up_after,
            serving,
            task,
        })
    }

    /// Where the library is to send its connections (`host:port`).
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Why the rules refused a peer, if they did.
    pub fn refusal(&self) -> Option<EngineError> {
        self.refused
            .borrow()
            .clone()
            .map(EngineError::OutboundRefused)
    }

    /// `work`, unless the rules refuse a peer first, or no peer could be reached for
    /// `give_up_after`: a library retries a connection that fails, and the refusal would
    /// otherwise show only when it gives up, if it does.
    pub async fn guard<T>(&self, work: impl Future<Output = EngineResult<T>>) -> EngineResult<T> {
        let mut refused = self.refused.clone();
        tokio::select! {
            biased;
            Ok(reason) = refused.wait_for(Option::is_some) => {
                Err(EngineError::OutboundRefused(reason.clone().unwrap_or_default()))
            }
            reason = self.unreachable_for_good() => Err(EngineError::RemoteAnswer {
                code: polaroid_proto::ErrorCode::Unavailable,
                message: format!(
                    "{}: no connection succeeded for {} s (the last: {reason})",
                    self.serving,
                    self.give_up_after.as_secs()
                ),
            }),
            result = work => result,
        }
    }

    /// Returns, with the last reason, once every connection tried for `give_up_after`
    /// failed; never while one succeeds.
    async fn unreachable_for_good(&self) -> String {
        let mut unreachable = self.unreachable.clone();
        loop {
            let since = unreachable.borrow_and_update().clone();
            let changed = match since {
                Some((at, reason)) => tokio::select! {
                    () = tokio::time::sleep_until(at + self.give_up_after) => return reason,
                    changed = unreachable.changed() => changed,
                },
                None => unreachable.changed().await,
            };
            if changed.is_err() {
                // The gate is closing: its caller ends with it.
                std::future::pending::<()>().await;
            }
        }
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        // Its relays go with it (a JoinSet aborts its tasks when dropped).
        self.task.abort();
    }
}

enum Refusal {
    /// The outbound rules refused the peer, for this reason.
    Rule(String),
    /// The library spoke something else, or the peer or the library went away.
    Other,
}

impl From<std::io::Error> for Refusal {
    fn from(_: std::io::Error) -> Self {
        Refusal::Other
    }
}

/// Serves one SOCKS5 connection: the handshake, the rules, then bytes both ways.
async fn relay(
    mut client: TcpStream,
    outbound: &Outbound,
    scheme: &str,
    reached: impl Fn(Result<(), String>),
) -> Result<(), Refusal> {
    let peer = tokio::time::timeout(HANDSHAKE_TIMEOUT, requested_peer(&mut client))
        .await
        .map_err(|_| Refusal::Other)??;
    let Some((host, port)) = peer else {
        return Ok(());
    };
    let url = Url::parse(&format!("{scheme}://{host}:{port}"))
        .map_err(|e| EngineError::invalid(format!("the peer `{host}:{port}`: {e}")));
    let checked = match url {
        Ok(url) => outbound.resolve(&url, port).await,
        Err(e) => Err(e),
    };
    let addresses = match checked {
        Ok(addresses) => addresses,
        Err(error) => {
            if !matches!(error, EngineError::OutboundRefused(_)) {
                // A name that does not resolve is a peer not reached.
                reached(Err(format!("{host}:{port}: {error}")));
            }
            let code = match error {
                EngineError::OutboundRefused(_) => NOT_ALLOWED,
                _ => HOST_UNREACHABLE,
            };
            reply(&mut client, code).await?;
            return Err(match error {
                EngineError::OutboundRefused(reason) => Refusal::Rule(reason),
                _ => Refusal::Other,
            });
        }
    };
    let mut upstream = None;
    let mut failure = String::new();
    for address in addresses {
        match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(address)).await {
            Ok(Ok(stream)) => {
                upstream = Some(stream);
                break;
            }
            Ok(Err(e)) => failure = format!("{host}:{port}: {e}"),
            Err(_) => failure = format!("{host}:{port}: no answer within {CONNECT_TIMEOUT:?}"),
        }
    }
    let Some(mut upstream) = upstream else {
        reached(Err(failure));
        reply(&mut client, HOST_UNREACHABLE).await?;
        return Err(Refusal::Other);
    };
    reached(Ok(()));
    let _ = upstream.set_nodelay(true);
    reply(&mut client, SUCCEEDED).await?;
    tokio::io::copy_bidirectional(&mut client, &mut upstream).await?;
    Ok(())
}

/// Reads the greeting and the request; the peer asked for, or `None` when the library was
/// answered with a refusal it understands (a method or command this gate does not serve).
async fn requested_peer(client: &mut TcpStream) -> Result<Option<(String, u16)>, Refusal> {
    let mut head = [0u8; 2];
    client.read_exact(&mut head).await?;
    if head[0] != VERSION {
        return Err(Refusal::Other);
    }
    let mut methods = vec![0u8; usize::from(head[1])];
    client.read_exact(&mut methods).await?;
    if !methods.contains(&NO_AUTHENTICATION) {
        client.write_all(&[VERSION, NO_ACCEPTABLE_METHOD]).await?;
        return Ok(None);
    }
    client.write_all(&[VERSION, NO_AUTHENTICATION]).await?;
    let mut request = [0u8; 4];
    client.read_exact(&mut request).await?;
    if request[0] != VERSION {
        return Err(Refusal::Other);
    }
    let host = match request[3] {
        1 => {
            let mut ip = [0u8; 4];
            client.read_exact(&mut ip).await?;
            IpAddr::from(ip).to_string()
        }
        3 => {
            let length = client.read_u8().await?;
            let mut name = vec![0u8; usize::from(length)];
            client.read_exact(&mut name).await?;
            match String::from_utf8(name) {
                // A name with URL syntax in it would name another host once parsed.
                Ok(name)
                    if !name.is_empty()
                        && name
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')) =>
                {
                    name
                }
                _ => {
                    reply(client, ADDRESS_NOT_SUPPORTED).await?;
                    return Ok(None);
                }
            }
        }
        4 => {
            let mut ip = [0u8; 16];
            client.read_exact(&mut ip).await?;
            format!("[{}]", IpAddr::from(ip))
        }
        _ => {
            reply(client, ADDRESS_NOT_SUPPORTED).await?;
            return Ok(None);
        }
    };
    let port = client.read_u16().await?;
    if request[1] != CONNECT {
        reply(client, COMMAND_NOT_SUPPORTED).await?;
        return Ok(None);
    }
    Ok(Some((host, port)))
}

/// A reply with `code` and no bound address (the library needs none).
async fn reply(client: &mut TcpStream, code: u8) -> std::io::Result<()> {
    client
        .write_all(&[VERSION, code, 0, 1, 0, 0, 0, 0, 0, 0])
        .await
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// Asks the gate at `gate` for `host:port` (a name) with `command`, offering `method`:
    /// the bytes it answers.
    async fn ask(gate: SocketAddr, method: u8, command: u8, host: &str, port: u16) -> Vec<u8> {
        let mut client = TcpStream::connect(gate).await.unwrap();
        let mut hello = vec![VERSION, 1, method, VERSION, command, 0, 3, host.len() as u8];
        hello.extend_from_slice(host.as_bytes());
        hello.extend_from_slice(&port.to_be_bytes());
        client.write_all(&hello).await.unwrap();
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), client.read_to_end(&mut answer)).await;
        answer
    }

    async fn gate(allow_private: bool, give_up_after: Duration) -> Gate {
        let outbound = Arc::new(Outbound::new(&[], allow_private).unwrap());
        Gate::open(outbound, "kafka", "a test".into(), give_up_after)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn a_peer_the_rules_refuse_is_refused_and_ends_guarded_work() {
        let gate = gate(false, Duration::from_secs(60)).await;
        let answer = ask(gate.address(), NO_AUTHENTICATION, CONNECT, "127.0.0.1", 9).await;
        assert_eq!(
            answer[..4],
            [VERSION, NO_AUTHENTICATION, VERSION, NOT_ALLOWED]
        );
        assert!(matches!(
            gate.refusal(),
            Some(EngineError::OutboundRefused(_))
        ));
        let ended = gate.guard(std::future::pending::<EngineResult<()>>()).await;
        assert!(
            matches!(ended, Err(EngineError::OutboundRefused(_))),
            "{ended:?}"
        );
    }

    #[tokio::test]
    async fn what_the_gate_does_not_serve_is_answered_so() {
        let gate = gate(true, Duration::from_secs(60)).await;
        // Username and password only.
        let answer = ask(gate.address(), 2, CONNECT, "127.0.0.1", 9).await;
        assert_eq!(answer, [VERSION, NO_ACCEPTABLE_METHOD]);
        // BIND.
        let answer = ask(gate.address(), NO_AUTHENTICATION, 2, "127.0.0.1", 9).await;
        assert_eq!(answer[2..4], [VERSION, COMMAND_NOT_SUPPORTED]);
        // A name with URL syntax in it.
        let answer = ask(gate.address(), NO_AUTHENTICATION, CONNECT, "a@evil.org", 9).await;
        assert_eq!(answer[2..4], [VERSION, ADDRESS_NOT_SUPPORTED]);
        assert!(gate.refusal().is_none());
    }

    #[tokio::test]
    async fn bytes_go_both_ways_to_a_peer_allowed() {
        let peer = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = peer.local_addr().unwrap().port();
        tokio::spawn(async move {
            let (mut connection, _) = peer.accept().await.unwrap();
            let mut word = [0u8; 4];
            connection.read_exact(&mut word).await.unwrap();
            connection.write_all(&word).await.unwrap();
        });
        let gate = gate(true, Duration::from_secs(60)).await;
        let mut client = TcpStream::connect(gate.address()).await.unwrap();
        let mut hello = vec![
            VERSION,
            1,
            NO_AUTHENTICATION,
            VERSION,
            CONNECT,
            0,
            1,
            127,
            0,
            0,
            1,
        ];
        hello.extend_from_slice(&port.to_be_bytes());
        client.write_all(&hello).await.unwrap();
        let mut answer = [0u8; 12];
        client.read_exact(&mut answer).await.unwrap();
        assert_eq!(
            answer[..4],
            [VERSION, NO_AUTHENTICATION, VERSION, SUCCEEDED]
        );
        client.write_all(b"ping").await.unwrap();
        let mut echo = [0u8; 4];
        client.read_exact(&mut echo).await.unwrap();
        assert_eq!(&echo, b"ping");
    }

    #[tokio::test]
    async fn peers_unreachable_for_long_enough_end_guarded_work() {
        let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = closed.local_addr().unwrap().port();
        drop(closed);
        let gate = gate(true, Duration::from_millis(300)).await;
        let answer = ask(
            gate.address(),
            NO_AUTHENTICATION,
            CONNECT,
            "127.0.0.1",
            port,
        )
        .await;
        assert_eq!(answer[2..4], [VERSION, HOST_UNREACHABLE]);
        let ended = tokio::time::timeout(
            Duration::from_secs(10),
            gate.guard(std::future::pending::<EngineResult<()>>()),
        )
        .await
        .unwrap();
        match ended {
            Err(EngineError::RemoteAnswer { code, message }) => {
                assert_eq!(code, polaroid_proto::ErrorCode::Unavailable);
                assert!(message.contains("no connection succeeded"), "{message}");
                assert!(message.contains(&port.to_string()), "{message}");
            }
            other => panic!("{other:?}"),
        }
    }
}

//! A consumer group's committed offsets in Kafka, which rskafka does not cover: the three
//! requests a consumer that assigns itself every partition needs (`FindCoordinator` v1,
//! `OffsetFetch` v1, `OffsetCommit` v2, in the protocol's classic encoding, which brokers
//! from 0.11 to 4.x answer), sent to the group's coordinator through the stream's gate.
//!
//! The stream does not join the group (no `JoinGroup`, no partition assignment): it commits
//! as a standalone member (generation -1), which Kafka accepts while no member of a
//! classic group holds it, so two streams of one group read the same partitions.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The protocol's API keys and the versions this client speaks.
const OFFSET_COMMIT: (i16, i16) = (8, 2);
const OFFSET_FETCH: (i16, i16) = (9, 1);
const FIND_COORDINATOR: (i16, i16) = (10, 1);
/// The largest answer read (a group's offsets for one topic are small).
const MAX_RESPONSE_BYTES: usize = 16 * 1024 * 1024;
/// How long one request may take, connection included.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// `COORDINATOR_LOAD_IN_PROGRESS`, `COORDINATOR_NOT_AVAILABLE` (a new cluster making
/// its offsets topic) and `NOT_COORDINATOR`: ask again, the group is moving.
const RETRIABLE: [i16; 3] = [14, 15, 16];
/// How long a coordinator that is moving or unreachable is asked again.
const RETRY_FOR: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum OffsetsError {
    #[error("{0}")]
    Connection(String),
    /// The broker answered with a protocol error code.
    #[error("{operation}: Kafka error code {code}{}", name(*.code))]
    Broker { operation: &'static str, code: i16 },
    #[error("{0}")]
    Malformed(String),
}

impl OffsetsError {
    /// Whether asking again later may succeed (the coordinator moving, a lost connection).
    pub fn transient(&self) -> bool {
        match self {
            Self::Connection(_) => true,
            Self::Broker { code, .. } => RETRIABLE.contains(code),
            Self::Malformed(_) => false,
        }
    }
}

fn name(code: i16) -> &'static str {
    match code {
        14 => " (COORDINATOR_LOAD_IN_PROGRESS)",
        15 => " (COORDINATOR_NOT_AVAILABLE)",
        16 => " (NOT_COORDINATOR)",
        22 => " (ILLEGAL_GENERATION)",
        24 => " (INVALID_GROUP_ID)",
        25 => " (UNKNOWN_MEMBER_ID)",
        29 => " (TOPIC_AUTHORIZATION_FAILED)",
        30 => " (GROUP_AUTHORIZATION_FAILED)",
        3 => " (UNKNOWN_TOPIC_OR_PARTITION)",
        _ => "",
    }
}

/// A connection to the coordinator of one group.
pub struct GroupOffsets {
    gate: SocketAddr,
    group: String,
    topic: String,
    client_id: &'static str,
    coordinator: Option<(String, u16)>,
    connection: Option<TcpStream>,
    correlation: i32,
}

impl GroupOffsets {
    /// Every connection goes through the gate at `gate`.
    pub fn new(gate: SocketAddr, group: String, topic: String, client_id: &'static str) -> Self {
        Self {
            gate,
            group,
            topic,
            client_id,
            coordinator: None,
            connection: None,
            correlation: 0,
        }
    }

    /// The group's committed offset of each of `partitions` (the next to read), `None`
    /// for a partition it never committed.
    pub async fn committed(
        &mut self,
        bootstrap: &(String, u16),
        partitions: &[i32],
    ) -> Result<Vec<(i32, Option<i64>)>, OffsetsError> {
        let mut body = BytesMut::new();
        put_string(&mut body, &self.group);
        body.put_i32(1);
        put_string(&mut body, &self.topic);
        put_len(&mut body, partitions.len());
        for partition in partitions {
            body.put_i32(*partition);
        }
        let topic = self.topic.clone();
        self.ask_coordinator(bootstrap, OFFSET_FETCH, body.freeze(), |mut answer| {
            let mut offsets = Vec::new();
            for _ in 0..array_len(&mut answer)? {
                let answered = string(&mut answer)?;
                for _ in 0..array_len(&mut answer)? {
                    let partition = i32_of(&mut answer)?;
                    let offset = i64_of(&mut answer)?;
                    let _metadata = nullable_string(&mut answer)?;
                    let code = i16_of(&mut answer)?;
                    if code != 0 {
                        return Err(OffsetsError::Broker {
                            operation: "fetch the group's offsets",
                            code,
                        });
                    }
                    if answered == topic {
                        offsets.push((partition, (offset >= 0).then_some(offset)));
                    }
                }
            }
            Ok(offsets)
        })
        .await
    }

    /// Commits `offsets` (partition, the next offset to read) for the group.
    pub async fn commit(
        &mut self,
        bootstrap: &(String, u16),
        offsets: &[(i32, i64)],
    ) -> Result<(), OffsetsError> {
        let mut body = BytesMut::new();
        put_string(&mut body, &self.group);
        body.put_i32(-1); // generation: a member of no generation
        put_string(&mut body, ""); // member id: none
        body.put_i64(-1); // retention: the broker's
        body.put_i32(1);
        put_string(&mut body, &self.topic);
        put_len(&mut body, offsets.len());
        for (partition, offset) in offsets {
            body.put_i32(*partition);
            body.put_i64(*offset);
            body.put_i16(-1); // metadata: null
        }
        self.ask_coordinator(bootstrap, OFFSET_COMMIT, body.freeze(), |mut answer| {
            for _ in 0..array_len(&mut answer)? {
                let _topic = string(&mut answer)?;
                for _ in 0..array_len(&mut answer)? {
                    let _partition = i32_of(&mut answer)?;
                    let code = i16_of(&mut answer)?;
                    if code != 0 {
                        return Err(OffsetsError::Broker {
                            operation: "commit the group's offsets",
                            code,
                        });
                    }
                }
            }
            Ok(())
        })
        .await
    }

    /// Sends a request to the group's coordinator and reads its answer with `read`; the
    /// coordinator is found first, and found again with backoff while it moves or cannot
    /// be reached (a transient error, from the connection or in the answer), for at most
    /// `RETRY_FOR`.
    async fn ask_coordinator<T>(
        &mut self,
        bootstrap: &(String, u16),
        api: (i16, i16),
        body: Bytes,
        read: impl Fn(Bytes) -> Result<T, OffsetsError>,
    ) -> Result<T, OffsetsError> {
        let started = tokio::time::Instant::now();
        let mut pause = Duration::from_millis(100);
        loop {
            let outcome = match self.try_coordinator(bootstrap, api, &body).await {
                Ok(answer) => read(answer),
                Err(e) => Err(e),
            };
            match outcome {
                Ok(answer) => return Ok(answer),
                Err(e) if e.transient() && started.elapsed() + pause < RETRY_FOR => {
                    self.connection = None;
                    self.coordinator = None;
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(1));
                }
                Err(e) => {
                    self.connection = None;
                    return Err(e);
                }
            }
        }
    }

    /// One attempt of [`Self::ask_coordinator`].
    async fn try_coordinator(
        &mut self,
        bootstrap: &(String, u16),
        api: (i16, i16),
        body: &Bytes,
    ) -> Result<Bytes, OffsetsError> {
        let connection = match self.connection.take() {
            Some(connection) => connection,
            None => {
                let coordinator = match &self.coordinator {
                    Some(coordinator) => coordinator.clone(),
                    None => {
                        let found = self.find_coordinator(bootstrap).await?;
                        self.coordinator = Some(found.clone());
                        found
                    }
                };
                self.connect(&coordinator).await?
            }
        };
        let connection = self.connection.insert(connection);
        self.correlation = self.correlation.wrapping_add(1);
        request(connection, self.client_id, self.correlation, api, body).await
    }

    async fn find_coordinator(
        &mut self,
        bootstrap: &(String, u16),
    ) -> Result<(String, u16), OffsetsError> {
        let mut connection = self.connect(bootstrap).await?;
        let mut body = BytesMut::new();
        put_string(&mut body, &self.group);
        body.put_i8(0); // the key is a group
        self.correlation = self.correlation.wrapping_add(1);
        let mut answer = request(
            &mut connection,
            self.client_id,
            self.correlation,
            FIND_COORDINATOR,
            &body.freeze(),
        )
        .await?;
        let _throttle = i32_of(&mut answer)?;
        let code = i16_of(&mut answer)?;
        if code != 0 {
            return Err(OffsetsError::Broker {
                operation: "find the group's coordinator",
                code,
            });
        }
        let _message = nullable_string(&mut answer)?;
        let _node = i32_of(&mut answer)?;
        let host = string(&mut answer)?;
        let port = i32_of(&mut answer)?;
        let port = u16::try_from(port)
            .map_err(|_| OffsetsError::Malformed(format!("coordinator port {port}")))?;
        Ok((host, port))
    }

    /// A connection to `host:port` through the gate (SOCKS5, no authentication).
    async fn connect(&self, (host, port): &(String, u16)) -> Result<TcpStream, OffsetsError> {
        let lost = |e: std::io::Error| OffsetsError::Connection(format!("{host}:{port}: {e}"));
        let connecting = async {
            let mut stream = TcpStream::connect(self.gate).await.map_err(lost)?;
            stream.set_nodelay(true).map_err(lost)?;
            let mut hello = vec![5u8, 1, 0, 5, 1, 0, 3];
            let name = host.trim_start_matches('[').trim_end_matches(']');
            let length = u8::try_from(name.len())
                .map_err(|_| OffsetsError::Malformed(format!("host name `{name}`")))?;
            hello.push(length);
            hello.extend_from_slice(name.as_bytes());
            hello.extend_from_slice(&port.to_be_bytes());
            stream.write_all(&hello).await.map_err(lost)?;
            // The method chosen, then the gate's reply (its own, always 10 bytes).
            let mut answer = [0u8; 12];
            stream.read_exact(&mut answer).await.map_err(lost)?;
            if answer[..4] != [5, 0, 5, 0] {
                return Err(OffsetsError::Connection(format!(
                    "{host}:{port}: not reachable (SOCKS reply {})",
                    answer[3]
                )));
            }
            Ok(stream)
        };
        tokio::time::timeout(REQUEST_TIMEOUT, connecting)
            .await
            .map_err(|_| OffsetsError::Connection(format!("{host}:{port}: timed out")))?
    }
}

/// One request and its answer's body (after the correlation id, which is checked).
async fn request(
    connection: &mut TcpStream,
    client_id: &str,
    correlation: i32,
    (key, version): (i16, i16),
    body: &Bytes,
) -> Result<Bytes, OffsetsError> {
    let lost = |e: std::io::Error| OffsetsError::Connection(e.to_string());
    let mut frame = BytesMut::with_capacity(body.len() + 64);
    frame.put_i32(0); // the size, set below
    frame.put_i16(key);
    frame.put_i16(version);
    frame.put_i32(correlation);
    put_string(&mut frame, client_id);
    frame.put_slice(body);
    let size = i32::try_from(frame.len() - 4)
        .map_err(|_| OffsetsError::Malformed("a request over 2 GiB".into()))?;
    frame[..4].copy_from_slice(&size.to_be_bytes());
    let exchange = async {
        connection.write_all(&frame).await.map_err(lost)?;
        let size = connection.read_i32().await.map_err(lost)?;
        let size = usize::try_from(size)
            .ok()
            .filter(|size| (4..=MAX_RESPONSE_BYTES).contains(size))
            .ok_or_else(|| OffsetsError::Malformed(format!("an answer of {size} bytes")))?;
        let mut answer = vec![0u8; size];
        connection.read_exact(&mut answer).await.map_err(lost)?;
        Ok::<_, OffsetsError>(Bytes::from(answer))
    };
    let mut answer = tokio::time::timeout(REQUEST_TIMEOUT, exchange)
        .await
        .map_err(|_| OffsetsError::Connection("no answer in 10 s".into()))??;
    let answered = i32_of(&mut answer)?;
    if answered != correlation {
        return Err(OffsetsError::Malformed(format!(
            "the answer to request {correlation} came as {answered}"
        )));
    }
    Ok(answer)
}

fn put_string(buffer: &mut BytesMut, text: &str) {
    // Group ids and topics are checked to be short before they get here.
    buffer.put_i16(i16::try_from(text.len()).unwrap_or(i16::MAX));
    buffer.put_slice(&text.as_bytes()[..text.len().min(i16::MAX as usize)]);
}

fn put_len(buffer: &mut BytesMut, length: usize) {
    buffer.put_i32(i32::try_from(length).unwrap_or(i32::MAX));
}

fn short(what: &str) -> OffsetsError {
    OffsetsError::Malformed(format!("an answer that ends inside {what}"))
}

fn i16_of(buffer: &mut Bytes) -> Result<i16, OffsetsError> {
    (buffer.remaining() >= 2)
        .then(|| buffer.get_i16())
        .ok_or_else(|| short("an int16"))
}

fn i32_of(buffer: &mut Bytes) -> Result<i32, OffsetsError> {
    (buffer.remaining() >= 4)
        .then(|| buffer.get_i32())
        .ok_or_else(|| short("an int32"))
}

fn i64_of(buffer: &mut Bytes) -> Result<i64, OffsetsError> {
    (buffer.remaining() >= 8)
        .then(|| buffer.get_i64())
        .ok_or_else(|| short("an int64"))
}

fn array_len(buffer: &mut Bytes) -> Result<usize, OffsetsError> {
    let length = i32_of(buffer)?;
    // -1 is a null array; anything longer than the bytes left cannot be.
    usize::try_from(length.max(0))
        .ok()
        .filter(|&n| n <= buffer.remaining())
        .ok_or_else(|| OffsetsError::Malformed(format!("an array of {length} items")))
}

fn nullable_string(buffer: &mut Bytes) -> Result<Option<String>, OffsetsError> {
    let length = i16_of(buffer)?;
    if length < 0 {
        return Ok(None);
    }
    let length = length as usize;
    if buffer.remaining() < length {
        return Err(short("a string"));
    }
    let text = buffer.split_to(length);
    String::from_utf8(text.to_vec())
        .map(Some)
        .map_err(|_| OffsetsError::Malformed("a string that is not UTF-8".into()))
}

fn string(buffer: &mut Bytes) -> Result<String, OffsetsError> {
    nullable_string(buffer)?.ok_or_else(|| OffsetsError::Malformed("a null string".into()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn answers_that_end_early_or_lie_about_lengths_are_malformed() {
        let mut empty = Bytes::new();
        assert!(matches!(
            i32_of(&mut empty),
            Err(OffsetsError::Malformed(_))
        ));
        // An array claiming a billion items in four bytes.
        let mut huge = Bytes::from_static(&[0x40, 0, 0, 0]);
        assert!(matches!(
            array_len(&mut huge),
            Err(OffsetsError::Malformed(_))
        ));
        let mut cut = Bytes::from_static(&[0, 5, b'a', b'b']);
        assert!(matches!(
            nullable_string(&mut cut),
            Err(OffsetsError::Malformed(_))
        ));
        let mut null = Bytes::from_static(&[0xff, 0xff]);
        assert_eq!(nullable_string(&mut null).unwrap(), None);
    }

    #[test]
    fn a_coordinator_that_moved_is_transient() {
        for code in [14, 15, 16] {
            let moved = OffsetsError::Broker {
                operation: "commit the group's offsets",
                code,
            };
            assert!(moved.transient(), "{moved}");
        }
        let moved = OffsetsError::Broker {
            operation: "commit the group's offsets",
            code: 16,
        };
        assert!(moved.to_string().contains("NOT_COORDINATOR"), "{moved}");
        let refused = OffsetsError::Broker {
            operation: "commit the group's offsets",
            code: 30,
        };
        assert!(!refused.transient(), "{refused}");
    }
}

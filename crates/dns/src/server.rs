//! The wire side: DNS messages over UDP and TCP (RFC 1035, length-prefixed on TCP), answered
//! from the resolver or forwarded upstream.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::opt::{EdnsCode, EdnsOption};
use hickory_proto::rr::{DNSClass, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio_util::sync::CancellationToken;

use crate::catalog::Catalog;
use crate::resolve::{Outcome, Reply, Zone, resolve};
use crate::upstream::{ForwardError, Upstream};

/// The UDP payload we advertise and honour at most (the DNS flag day 2020 value).
const MAX_UDP_PAYLOAD: u16 = 1232;
/// How long a TCP connection may sit idle between queries.
const TCP_IDLE: Duration = Duration::from_secs(10);
/// RFC 8914 extended DNS error option code.
const EDE_OPTION: u16 = 15;
/// RFC 8914 info codes.
const EDE_OTHER: u16 = 0;
const EDE_NETWORK_ERROR: u16 = 23;

/// What the query handlers share.
#[derive(Debug)]
pub(crate) struct State {
    pub zone: Zone,
    pub catalog: Catalog,
    pub upstream: Arc<Upstream>,
}

/// A question that needs the upstream resolvers.
#[derive(Debug)]
pub(crate) struct Pending {
    request: Message,
    max_len: usize,
    raw: Vec<u8>,
    kind: PendingKind,
}

#[derive(Debug)]
enum PendingKind {
    Forward,
    Chase(Reply, hickory_proto::rr::Name),
}

/// The first step of answering: either the answer, or the upstream work left to do.
#[derive(Debug)]
pub(crate) enum Step {
    Done(Vec<u8>),
    Upstream(Box<Pending>),
    Drop,
}

/// Answers what can be answered locally (synchronously, without allocation of a task).
/// `udp` selects the UDP size limit (512, or the client's EDNS payload size up to 1232);
/// TCP answers may be 65535 bytes.
pub(crate) fn prepare(state: &State, raw: &[u8], udp: bool) -> Step {
    let request = match Message::from_vec(raw) {
        Ok(m) => m,
        Err(_) if raw.len() >= 12 => {
            let id = u16::from_be_bytes([raw[0], raw[1]]);
            return encode(
                Message::error_msg(id, OpCode::Query, ResponseCode::FormErr),
                512,
            );
        }
        Err(_) => return Step::Drop,
    };
    let max_len = if udp {
        request.edns.as_ref().map_or(512, |e| {
            usize::from(e.max_payload().clamp(512, MAX_UDP_PAYLOAD))
        })
    } else {
        usize::from(u16::MAX)
    };
    if request.metadata.message_type != MessageType::Query {
        return Step::Drop;
    }
    if request.metadata.op_code != OpCode::Query {
        return encode(error_reply(&request, ResponseCode::NotImp, None), max_len);
    }
    let [query] = request.queries.as_slice() else {
        return encode(error_reply(&request, ResponseCode::FormErr, None), max_len);
    };
    if query.query_class() != DNSClass::IN {
        return encode(error_reply(&request, ResponseCode::Refused, None), max_len);
    }
    let outcome = {
        let catalog = state.catalog.read();
        resolve(&state.zone, &catalog, query.name(), query.query_type())
    };
    match outcome {
        Outcome::Local(reply) => encode(local_reply(&request, reply), max_len),
        Outcome::Forward => Step::Upstream(Box::new(Pending {
            request,
            max_len,
            raw: raw.to_vec(),
            kind: PendingKind::Forward,
        })),
        Outcome::Chase(reply, target) => Step::Upstream(Box::new(Pending {
            request,
            max_len,
            raw: Vec::new(),
            kind: PendingKind::Chase(reply, target),
        })),
    }
}

/// Finishes a question that needed the upstream resolvers.
pub(crate) async fn finish(state: &State, pending: Box<Pending>) -> Option<Vec<u8>> {
    let max_len = pending.max_len;
    match pending.kind {
        PendingKind::Forward => match state.upstream.exchange(&pending.raw).await {
            Ok(answer) if answer.len() <= max_len => Some(answer),
            Ok(answer) => match Message::from_vec(&answer) {
                Ok(message) => encoded(message.truncate(), max_len),
                Err(_) => encoded(
                    servfail(&pending.request, "unparsable upstream answer"),
                    max_len,
                ),
            },
            Err(e) => {
                tracing::debug!(error = %e, "forwarding failed");
                encoded(forward_error(&pending.request, &e), max_len)
            }
        },
        PendingKind::Chase(mut reply, target) => {
            let qtype = pending
                .request
                .queries
                .first()
                .map_or(RecordType::A, Query::query_type);
            if let Some(answers) = chase(state, target, qtype).await {
                reply.answers.extend(answers);
            }
            encoded(local_reply(&pending.request, reply), max_len)
        }
    }
}

/// The upstream answers for an ExternalName's target (none when upstream fails: the CNAME
/// alone is still a correct answer).
async fn chase(
    state: &State,
    target: hickory_proto::rr::Name,
    qtype: RecordType,
) -> Option<Vec<hickory_proto::rr::Record>> {
    let mut query = Message::query();
    query.metadata.recursion_desired = true;
    query.add_query(Query::query(target, qtype));
    let raw = query.to_vec().ok()?;
    let answer = state.upstream.exchange(&raw).await.ok()?;
    Message::from_vec(&answer).ok().map(|m| m.answers)
}

fn response_for(request: &Message) -> Message {
    let mut response = Message::response(request.metadata.id, request.metadata.op_code);
    response.metadata.recursion_desired = request.metadata.recursion_desired;
    response.metadata.recursion_available = true;
    response.metadata.checking_disabled = request.metadata.checking_disabled;
    response.add_queries(request.queries.iter().cloned());
    if request.edns.is_some() {
        let mut edns = Edns::new();
        edns.set_max_payload(MAX_UDP_PAYLOAD);
        response.set_edns(edns);
    }
    response
}

fn local_reply(request: &Message, reply: Reply) -> Message {
    let mut response = response_for(request);
    response.metadata.authoritative = true;
    response.metadata.response_code = reply.rcode;
    response.insert_answers(reply.answers);
    response.insert_authorities(reply.authorities);
    response.insert_additionals(reply.additionals);
    response
}

fn error_reply(request: &Message, rcode: ResponseCode, ede: Option<(u16, &str)>) -> Message {
    let mut response = response_for(request);
    response.metadata.response_code = rcode;
    if let (Some(edns), Some((code, text))) = (response.edns.as_mut(), ede) {
        let mut data = code.to_be_bytes().to_vec();
        data.extend_from_slice(text.as_bytes());
        edns.options_mut().insert(EdnsOption::Unknown(
            u16::from(EdnsCode::from(EDE_OPTION)),
            data,
        ));
    }
    response
}

fn servfail(request: &Message, text: &str) -> Message {
    error_reply(request, ResponseCode::ServFail, Some((EDE_OTHER, text)))
}

fn forward_error(request: &Message, e: &ForwardError) -> Message {
    let code = match e {
        ForwardError::Failed(_) => EDE_NETWORK_ERROR,
        ForwardError::NoUpstreams(_) | ForwardError::Busy => EDE_OTHER,
    };
    error_reply(
        request,
        ResponseCode::ServFail,
        Some((code, &e.to_string())),
    )
}

fn encoded(message: Message, max_len: usize) -> Option<Vec<u8>> {
    match encode(message, max_len) {
        Step::Done(bytes) => Some(bytes),
        _ => None,
    }
}

/// Serializes, truncating (TC bit, no records) what does not fit in `max_len`.
fn encode(message: Message, max_len: usize) -> Step {
    match message.to_vec() {
        Ok(bytes) if bytes.len() <= max_len => Step::Done(bytes),
        Ok(_) => match message.truncate().to_vec() {
            Ok(bytes) => Step::Done(bytes),
            Err(_) => Step::Drop,
        },
        Err(e) => {
            tracing::warn!(error = %e, "cannot encode a DNS answer");
            Step::Drop
        }
    }
}

/// Serves one UDP socket until shutdown.
pub(crate) async fn serve_udp(
    state: Arc<State>,
    socket: Arc<UdpSocket>,
    shutdown: CancellationToken,
) {
    let mut buf = vec![0u8; 65535];
    loop {
        let (n, peer) = tokio::select! {
            () = shutdown.cancelled() => return,
            r = socket.recv_from(&mut buf) => match r {
                Ok(r) => r,
                Err(e) => {
                    tracing::debug!(error = %e, "UDP receive failed");
                    continue;
                }
            },
        };
        match prepare(&state, &buf[..n], true) {
            Step::Done(answer) => send(&socket, &answer, peer).await,
            Step::Drop => {}
            Step::Upstream(pending) => {
                let (state, socket) = (state.clone(), socket.clone());
                tokio::spawn(async move {
                    if let Some(answer) = finish(&state, pending).await {
                        send(&socket, &answer, peer).await;
                    }
                });
            }
        }
    }
}

async fn send(socket: &UdpSocket, answer: &[u8], peer: SocketAddr) {
    if let Err(e) = socket.send_to(answer, peer).await {
        tracing::debug!(error = %e, %peer, "UDP send failed");
    }
}

/// Accepts TCP connections until shutdown.
pub(crate) async fn serve_tcp(
    state: Arc<State>,
    listener: TcpListener,
    shutdown: CancellationToken,
) {
    loop {
        let stream = tokio::select! {
            () = shutdown.cancelled() => return,
            r = listener.accept() => match r {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::debug!(error = %e, "TCP accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let (state, shutdown) = (state.clone(), shutdown.clone());
        tokio::spawn(async move {
            tokio::select! {
                () = shutdown.cancelled() => {}
                r = serve_connection(&state, stream) => {
                    if let Err(e) = r {
                        tracing::debug!(error = %e, "TCP connection ended");
                    }
                }
            }
        });
    }
}

async fn serve_connection(state: &State, mut stream: TcpStream) -> std::io::Result<()> {
    loop {
        let len = match tokio::time::timeout(TCP_IDLE, stream.read_u16()).await {
            Ok(Ok(len)) => usize::from(len),
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Ok(Err(e)) => return Err(e),
            Err(_) => return Ok(()),
        };
        let mut raw = vec![0u8; len];
        tokio::time::timeout(TCP_IDLE, stream.read_exact(&mut raw))
            .await
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
        let answer = match prepare(state, &raw, false) {
            Step::Done(answer) => answer,
            Step::Drop => continue,
            Step::Upstream(pending) => match finish(state, pending).await {
                Some(answer) => answer,
                None => continue,
            },
        };
        let Ok(len) = u16::try_from(answer.len()) else {
            continue;
        };
        let mut framed = Vec::with_capacity(answer.len() + 2);
        framed.extend_from_slice(&len.to_be_bytes());
        framed.extend_from_slice(&answer);
        stream.write_all(&framed).await?;
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use hickory_proto::rr::Name;
    use k8s_openapi::api::core::v1::{Namespace, Service};
    use k8s_openapi::api::discovery::v1::EndpointSlice;
    use serde_json::json;

    use super::*;

    fn state(endpoints: usize) -> State {
        let catalog = Catalog::new();
        let ns: Namespace =
            serde_json::from_value(json!({"metadata": {"name": "default"}})).unwrap();
        catalog.apply_namespace(&ns);
        let svc: Service = serde_json::from_value(json!({
            "metadata": {"name": "big", "namespace": "default"},
            "spec": {"clusterIP": "None"}
        }))
        .unwrap();
        catalog.apply_service(&svc);
        let eps: Vec<_> = (0..endpoints)
            .map(|i| json!({"addresses": [format!("10.42.{}.{}", i / 200, i % 200 + 1)]}))
            .collect();
        let slice: EndpointSlice = serde_json::from_value(json!({
            "metadata": {"name": "big-1", "namespace": "default",
                         "labels": {"kubernetes.io/service-name": "big"}},
            "addressType": "IPv4", "endpoints": eps
        }))
        .unwrap();
        catalog.apply_endpoint_slice(&slice);
        State {
            zone: Zone::new("cluster.local", 5),
            catalog,
            upstream: Upstream::new(
                PathBuf::from("/nonexistent"),
                vec![],
                Duration::from_secs(1),
                1,
            ),
        }
    }

    fn query(edns: bool) -> Vec<u8> {
        let mut msg = Message::query();
        let name = Name::from_ascii("big.default.svc.cluster.local.").unwrap();
        msg.add_query(Query::query(name, RecordType::A));
        if edns {
            let mut e = Edns::new();
            e.set_max_payload(4096);
            msg.set_edns(e);
        }
        msg.to_vec().unwrap()
    }

    fn done(step: Step) -> Message {
        match step {
            Step::Done(bytes) => Message::from_vec(&bytes).unwrap(),
            other => panic!("expected an answer, got {other:?}"),
        }
    }

    #[test]
    fn udp_answers_too_large_are_truncated() {
        let state = state(50);
        let udp = done(prepare(&state, &query(false), true));
        assert!(udp.metadata.truncation);
        assert!(udp.answers.is_empty());
        let edns = done(prepare(&state, &query(true), true));
        assert!(!edns.metadata.truncation);
        assert_eq!(edns.answers.len(), 50);
        let tcp = done(prepare(&state, &query(false), false));
        assert_eq!(tcp.answers.len(), 50);
    }

    #[test]
    fn garbage_is_formerr_or_dropped() {
        let state = state(1);
        let mut junk = vec![0xab, 0xcd];
        junk.extend([0xff; 14]);
        let reply = done(prepare(&state, &junk, true));
        assert_eq!(reply.metadata.id, 0xabcd);
        assert_eq!(reply.metadata.response_code, ResponseCode::FormErr);
        assert!(matches!(prepare(&state, &[1, 2, 3], true), Step::Drop));
    }
}

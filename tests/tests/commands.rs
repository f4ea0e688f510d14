//! Application commands over real WebSockets: Stop (`stream.cancel`) reaches the producer
//! within one token, every viewer gets the terminal `stream.cancelled`, and a viewer the policy
//! refuses gets `PERMISSION_DENIED` while the stream goes on.

use anyhow::{Result, bail, ensure};
use streamgate::{
    Action, Authorizer, ErrorCode, Gateway, Principal, RoomId, StaticTokens, StreamHandle,
};
use streamgate_e2e::{Client, TestServer};
use streamgate_protocol::{
    Command, Payload, Publication, ServerFrame, StreamUpdate, UserCommand, WireFormat,
};
use tokio::sync::mpsc;

/// Stop is for operators; viewers may only watch.
struct OperatorsStop;

impl Authorizer for OperatorsStop {
    fn authorize(&self, principal: &Principal, action: Action<'_>) -> Result<(), ErrorCode> {
        match action {
            Action::Command { name, .. } if name == streamgate::STREAM_CANCEL => {
                if principal.has_role("operator") {
                    Ok(())
                } else {
                    Err(ErrorCode::PermissionDenied)
                }
            }
            _ => Ok(()),
        }
    }
}

async fn server() -> Result<TestServer> {
    let tokens = StaticTokens::new()
        .with_token("alice-1", Principal::user("alice").with_roles(["operator"]))
        .with_token("alice-2", Principal::user("alice").with_roles(["operator"]))
        .with_token("bob", Principal::user("bob").with_roles(["viewer"]));
    let gateway = Gateway::builder()
        .authenticator(tokens)
        .authorizer(OperatorsStop)
        .build()?;
    TestServer::start(gateway).await
}

fn room(id: &str) -> RoomId {
    id.parse().unwrap_or_else(|e| panic!("{id}: {e}"))
}

fn stop(room: &RoomId) -> Result<Command> {
    Ok(Command::Command(UserCommand {
        name: streamgate::STREAM_CANCEL.into(),
        room: None,
        data: Payload::json(&serde_json::json!({ "room": room }))?,
    }))
}

/// Streams numbered tokens until cancelled, one token per permit from `pace`; reports how many
/// tokens it sent after it observed the cancel (and ends the stream as cancelled).
async fn produce(stream: StreamHandle, mut pace: mpsc::Receiver<()>) -> Result<u64> {
    let mut sent = 0_u64;
    loop {
        tokio::select! {
            biased;
            () = stream.cancelled() => break,
            permit = pace.recv() => {
                if permit.is_none() {
                    bail!("pace closed before the cancel");
                }
                if stream.is_cancelled() {
                    break;
                }
                stream.token(format!("t{sent}"))?;
                sent += 1;
            }
        }
    }
    stream.end_cancelled(serde_json::json!({ "tokens": sent }))?;
    Ok(sent)
}

/// Publications until the terminal one, skipping the answers to our own commands.
async fn until_end(client: &mut Client) -> Result<Vec<Publication>> {
    let mut out = Vec::new();
    loop {
        match client.recv().await? {
            ServerFrame::Publication(p) => {
                let end = StreamUpdate::from_publication(&p)
                    .and_then(Result::ok)
                    .is_some_and(|u| u.is_terminal());
                out.push(p);
                if end {
                    return Ok(out);
                }
            }
            ServerFrame::Reply(_) => {}
            other => bail!("unexpected {other:?}"),
        }
    }
}

async fn next_publication(client: &mut Client) -> Result<Publication> {
    client.publication().await
}

#[tokio::test]
async fn stop_reaches_the_producer_within_a_token_and_every_viewer_sees_cancelled() -> Result<()> {
    let server = server().await?;
    let url = server.ws_url();
    let r = room("execution:x");
    let mut tab1 = Client::connect(&url, "alice-1", WireFormat::Json).await?;
    let mut tab2 = Client::connect(&url, "alice-2", WireFormat::Bincode).await?;
    let mut bob = Client::connect(&url, "bob", WireFormat::Json).await?;
    for client in [&mut tab1, &mut tab2, &mut bob] {
        client.join(&r, None).await?;
    }

    let (pace, permits) = mpsc::channel(1);
    let producer = tokio::spawn(produce(server.gateway.stream(r.clone()), permits));
    for i in 0..3 {
        pace.send(()).await?;
        for client in [&mut tab1, &mut tab2, &mut bob] {
            let p = next_publication(client).await?;
            ensure!(p.event == StreamUpdate::TOKEN, "token {i}: {p:?}");
        }
    }

    // A viewer without permission is refused and the stream goes on.
    let id = bob.send(stop(&r)?).await?;
    match bob.recv().await? {
        ServerFrame::Error(e) if e.id == Some(id) => {
            ensure!(e.error.code == ErrorCode::PermissionDenied, "{e:?}");
        }
        other => bail!("expected PERMISSION_DENIED, got {other:?}"),
    }
    pace.send(()).await?;
    for client in [&mut tab1, &mut tab2, &mut bob] {
        ensure!(next_publication(client).await?.event == StreamUpdate::TOKEN);
    }

    // The operator stops it; one more permit is allowed to race the cancel.
    let id = tab1.send(stop(&r)?).await?;
    match tab1.recv().await? {
        ServerFrame::Reply(reply) if reply.id == id => {}
        other => bail!("expected the stop's reply, got {other:?}"),
    }
    let _ = pace.try_send(());
    let sent = producer.await??;
    ensure!(sent <= 5, "the producer went on for {} tokens", sent - 4);

    for (who, client) in [("tab1", &mut tab1), ("tab2", &mut tab2), ("bob", &mut bob)] {
        let rest = until_end(client).await?;
        let last = rest.last().map(|p| p.event.as_str());
        ensure!(
            last == Some(StreamUpdate::CANCELLED),
            "{who} ended with {last:?}"
        );
        ensure!(
            rest.len() <= 2,
            "{who} got {} publications after the stop",
            rest.len()
        );
    }
    ensure!(!server.gateway.hub().cancel_stream(&r), "the stream ended");
    Ok(())
}

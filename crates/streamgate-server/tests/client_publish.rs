//! The `publish` command: clients publish into rooms of kinds configured with
//! `client_publish = true`, over their own connection, and nowhere else.

mod common;

use anyhow::{Result, bail, ensure};
use common::{Scratch, Server};
use streamgate_protocol::{Command, ErrorCode, ServerFrame, UserCommand, WireFormat};

const CONFIG: &str = r#"
[rooms.chat]
client_publish = true

[rooms.feed]
"#;

/// Sends `publish` into `room` and returns the answer to it.
async fn publish(
    client: &mut streamgate_e2e::Client,
    room: Option<&str>,
    data: serde_json::Value,
) -> Result<ServerFrame> {
    let id = client
        .send(Command::Command(UserCommand {
            name: "publish".into(),
            room: room.map(str::parse).transpose()?,
            data: streamgate_protocol::Payload::json(&data)?,
        }))
        .await?;
    loop {
        let frame = client.recv().await?;
        match &frame {
            ServerFrame::Reply(reply) if reply.id == id => return Ok(frame),
            ServerFrame::Error(error) if error.id == Some(id) => return Ok(frame),
            _ => {}
        }
    }
}

fn refused(frame: &ServerFrame) -> Option<ErrorCode> {
    match frame {
        ServerFrame::Error(error) => Some(error.error.code),
        _ => None,
    }
}

#[tokio::test]
async fn members_publish_into_rooms_that_allow_it_and_nowhere_else() -> Result<()> {
    let scratch = Scratch::new("client-publish")?;
    let config = scratch.file("server.toml", CONFIG)?;
    let server = Server::start(Some(&config), &[]).await?;
    let url = server.ws_url();

    let mut alice = streamgate_e2e::Client::connect(
        &url,
        &common::token("alice", Some("acme")).await?,
        WireFormat::Json,
    )
    .await?;
    alice.join(&"chat:acme.lobby".parse()?, None).await?;
    // Bob (same tenant) publishes without joining, over the binary codec.
    let mut bob = streamgate_e2e::Client::connect(
        &url,
        &common::token("bob", Some("acme")).await?,
        WireFormat::Bincode,
    )
    .await?;

    let answer = publish(
        &mut bob,
        Some("chat:acme.lobby"),
        serde_json::json!({"text": "hi"}),
    )
    .await?;
    let ServerFrame::Reply(reply) = answer else {
        bail!("publish was refused: {answer:?}");
    };
    let position: serde_json::Value = serde_json::from_str(reply.data.as_str())?;
    ensure!(position["offset"] == 1, "{position}");

    let publication = alice.publication().await?;
    ensure!(publication.event == "message", "{publication:?}");
    ensure!(publication.offset == 1);
    ensure!(
        publication.data.as_str() == r#"{"text":"hi"}"#,
        "{publication:?}"
    );

    // A configured kind without client publications, an unconfigured kind, and no room.
    let answer = publish(&mut bob, Some("feed:acme.news"), serde_json::json!(1)).await?;
    ensure!(
        refused(&answer) == Some(ErrorCode::PermissionDenied),
        "{answer:?}"
    );
    let answer = publish(&mut bob, Some("execution:acme.run-1"), serde_json::json!(1)).await?;
    ensure!(
        refused(&answer) == Some(ErrorCode::RoomAccessDenied),
        "{answer:?}"
    );
    let answer = publish(&mut bob, None, serde_json::json!(1)).await?;
    ensure!(
        refused(&answer) == Some(ErrorCode::ValidationFailed),
        "{answer:?}"
    );

    // Another tenant's member may not publish into acme's room.
    let mut mallory = streamgate_e2e::Client::connect(
        &url,
        &common::token("mallory", Some("evil")).await?,
        WireFormat::Json,
    )
    .await?;
    let answer = publish(&mut mallory, Some("chat:acme.lobby"), serde_json::json!(1)).await?;
    ensure!(refused(&answer).is_some(), "{answer:?}");

    // Only the one accepted publication reached the room.
    let answer = publish(
        &mut bob,
        Some("chat:acme.lobby"),
        serde_json::json!("second"),
    )
    .await?;
    ensure!(matches!(answer, ServerFrame::Reply(_)), "{answer:?}");
    let publication = alice.publication().await?;
    ensure!(publication.offset == 2 && publication.data.as_str() == r#""second""#);
    Ok(())
}

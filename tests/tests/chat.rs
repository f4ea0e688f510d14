//! The chat example (`streamgate_examples::chat`) end to end, over real sockets: users of
//! organisation `acme` chat in `conversation:acme.1` through raw WebSockets (both codecs) and
//! the official socket.io-client; only authors may edit or delete (`PERMISSION_DENIED`);
//! receipts, delivery status and typing reach whom they should and nobody else; a user of
//! organisation `globex` is kept out (`ROOM_ACCESS_DENIED`). Tokens are HS256 JWTs minted here,
//! carrying the organisation in the `tenant` claim.

use std::{
    collections::VecDeque,
    process::Stdio,
    time::{SystemTime, UNIX_EPOCH},
};

use anyhow::{Context, Result, anyhow, bail, ensure};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use streamgate::{ErrorCode, Gateway, RoomId};
use streamgate_auth::{JwtAlgorithm, JwtAuthenticator, JwtConfig, JwtKey};
use streamgate_e2e::{
    Client, STEP_TIMEOUT, TestServer,
    browser::{node_dir, prerequisites},
};
use streamgate_examples::chat::{self, Chat};
use streamgate_protocol::{
    Command, ErrorBody, Join, Payload, Ping, Publication, ServerFrame, Typing, UserCommand,
    WireFormat,
};
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines},
    process::{Child, ChildStdin, ChildStdout},
};

const SECRET: &str = "chat-e2e-hs256-secret-0123456789abcdef";

fn room(id: &str) -> RoomId {
    id.parse().unwrap_or_else(|e| panic!("{id}: {e}"))
}

/// An HS256 JWT for `user` of organisation `org`, valid for ten minutes.
fn token(user: &str, org: &str) -> Result<String> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let claims = json!({ "sub": user, "tenant": org, "iat": now, "exp": now + 600 });
    Ok(jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )?)
}

/// The chat example served on a loopback port, authenticating the JWTs of [`token`].
async fn server() -> Result<(TestServer, Chat)> {
    let jwt =
        JwtConfig::new(JwtAlgorithm::HS256, JwtKey::Secret(SECRET.into())).require_tenant(true);
    let chat = Chat::build(Gateway::builder().authenticator(JwtAuthenticator::new(jwt)?))?;
    let server = TestServer::start(chat.gateway().clone()).await?;
    Ok((server, chat))
}

/// A publication's event and data.
fn event_of(p: &Publication) -> Result<(String, Value)> {
    Ok((p.event.clone(), serde_json::from_str(p.data.as_str())?))
}

/// A chat user on a raw WebSocket. Publications that arrive while it waits for the answer to
/// a command are kept, in order, for [`Member::next`].
struct Member {
    name: &'static str,
    client: Client,
    inbox: VecDeque<Publication>,
}

impl Member {
    async fn connect(
        server: &TestServer,
        name: &'static str,
        org: &str,
        format: WireFormat,
    ) -> Result<Self> {
        let client = Client::connect(&server.ws_url(), &token(name, org)?, format).await?;
        Ok(Self {
            name,
            client,
            inbox: VecDeque::new(),
        })
    }

    /// Sends `cmd` and returns its answer: the `reply`, `joined` or `pong` frame, or the error.
    async fn answer(&mut self, cmd: Command) -> Result<Result<ServerFrame, ErrorBody>> {
        let id = self.client.send(cmd).await?;
        loop {
            let frame = self.client.recv().await.context(self.name)?;
            let answers = match &frame {
                ServerFrame::Publication(p) => {
                    self.inbox.push_back(p.clone());
                    continue;
                }
                ServerFrame::Reply(r) => Some(r.id),
                ServerFrame::Joined(j) => j.id,
                ServerFrame::Pong(p) => p.id,
                ServerFrame::Error(e) if e.id == Some(id) => return Ok(Err(e.error.clone())),
                other => bail!("{}: unexpected {other:?}", self.name),
            };
            ensure!(
                answers == Some(id),
                "{}: answer to another request: {frame:?}",
                self.name
            );
            return Ok(Ok(frame));
        }
    }

    /// Sends the application command `name` about `room` and returns the reply's data.
    async fn call(
        &mut self,
        name: &str,
        room: &RoomId,
        data: Value,
    ) -> Result<Result<Value, ErrorBody>> {
        let cmd = Command::Command(UserCommand {
            name: name.into(),
            room: Some(room.clone()),
            data: Payload::json(&data)?,
        });
        Ok(match self.answer(cmd).await? {
            Ok(ServerFrame::Reply(reply)) => Ok(serde_json::from_str(reply.data.as_str())?),
            Ok(other) => bail!("{}: {name} answered with {other:?}", self.name),
            Err(error) => Err(error),
        })
    }

    /// [`call`](Self::call), expecting a reply.
    async fn ok(&mut self, name: &str, room: &RoomId, data: Value) -> Result<Value> {
        self.call(name, room, data)
            .await?
            .map_err(|e| anyhow!("{}: {name} refused: {e:?}", self.name))
    }

    /// [`call`](Self::call), expecting a refusal with `code`; returns the message.
    async fn refused(
        &mut self,
        name: &str,
        room: &RoomId,
        data: Value,
        code: ErrorCode,
    ) -> Result<String> {
        match self.call(name, room, data).await? {
            Err(e) if e.code == code => Ok(e.message),
            other => bail!(
                "{}: {name} should be refused with {code}, got {other:?}",
                self.name
            ),
        }
    }

    async fn join(&mut self, room: &RoomId) -> Result<Result<ServerFrame, ErrorBody>> {
        self.answer(Command::Join(Join::new(room.clone()))).await
    }

    async fn typing(&mut self, room: &RoomId) -> Result<Result<ServerFrame, ErrorBody>> {
        self.answer(Command::TypingStart(Typing { room: room.clone() }))
            .await
    }

    /// The next publication's event and data.
    async fn next(&mut self) -> Result<(String, Value)> {
        if let Some(p) = self.inbox.pop_front() {
            return event_of(&p);
        }
        match self.client.recv().await.context(self.name)? {
            ServerFrame::Publication(p) => event_of(&p),
            other => bail!("{}: expected a publication, got {other:?}", self.name),
        }
    }

    /// Expects the next publication to be `event` with exactly `data`.
    async fn expect(&mut self, event: &str, data: &Value) -> Result<()> {
        let got = self.next().await?;
        ensure!(
            got == (event.to_owned(), data.clone()),
            "{}: expected {event} {data}, got {got:?}",
            self.name
        );
        Ok(())
    }

    /// Checks that nothing was published to this member that the test did not expect: a ping's
    /// `pong` comes back with no publication before it.
    async fn quiet(&mut self) -> Result<()> {
        self.answer(Command::Ping(Ping {}))
            .await?
            .map_err(|e| anyhow!("ping: {e:?}"))?;
        ensure!(
            self.inbox.is_empty(),
            "{} got unexpected publications: {:?}",
            self.name,
            self.inbox
        );
        Ok(())
    }
}

#[tokio::test]
async fn members_chat_and_only_authors_change_their_messages() -> Result<()> {
    let (server, chat) = server().await?;
    let r = room("conversation:acme.1");
    let mut alice = Member::connect(&server, "alice", "acme", WireFormat::Json).await?;
    let mut bob = Member::connect(&server, "bob", "acme", WireFormat::Bincode).await?;
    let mut mallory = Member::connect(&server, "mallory", "globex", WireFormat::Json).await?;
    for member in [&mut alice, &mut bob] {
        match member.join(&r).await? {
            Ok(ServerFrame::Joined(_)) => {}
            other => bail!("{} could not join: {other:?}", member.name),
        }
    }

    // Another organisation's user cannot join, type in or write to the conversation.
    match mallory.join(&r).await? {
        Err(e) if e.code == ErrorCode::RoomAccessDenied => {}
        other => bail!("mallory joined acme's conversation: {other:?}"),
    }
    match mallory.typing(&r).await? {
        Err(e) if e.code == ErrorCode::RoomAccessDenied => {}
        other => bail!("mallory typed in acme's conversation: {other:?}"),
    }
    mallory
        .refused(
            chat::commands::SEND,
            &r,
            json!({"text": "hi"}),
            ErrorCode::RoomAccessDenied,
        )
        .await?;

    // alice sends; both members get the message.
    let sent = alice
        .ok(chat::commands::SEND, &r, json!({"text": "hello bob"}))
        .await?;
    ensure!(
        sent["id"] == 1 && sent["ts"].as_u64().is_some_and(|ts| ts > 0),
        "{sent}"
    );
    let created = json!({"id": 1, "author": "alice", "text": "hello bob", "ts": sent["ts"]});
    alice.expect(chat::events::CREATED, &created).await?;
    bob.expect(chat::events::CREATED, &created).await?;

    // bob's client confirms delivery: alice (only) is told, once.
    let recorded = bob
        .ok(chat::commands::DELIVERED, &r, json!({"message_id": 1}))
        .await?;
    ensure!(
        recorded == json!({"message_id": 1, "first": true}),
        "{recorded}"
    );
    alice
        .expect(
            chat::events::STATUS,
            &json!({"message_id": 1, "user": "bob", "status": "delivered"}),
        )
        .await?;
    let again = bob
        .ok(chat::commands::DELIVERED, &r, json!({"message_id": 1}))
        .await?;
    ensure!(again == json!({"message_id": 1, "first": false}), "{again}");

    // bob reads it: the receipt goes to the room.
    let recorded = bob
        .ok(chat::commands::READ, &r, json!({"message_id": 1}))
        .await?;
    ensure!(
        recorded == json!({"message_id": 1, "first": true}),
        "{recorded}"
    );
    let receipt = json!({"message_id": 1, "user": "bob"});
    alice.expect(chat::events::READ, &receipt).await?;
    bob.expect(chat::events::READ, &receipt).await?;

    // bob may not edit or delete alice's message; it stays as it was.
    bob.refused(
        chat::commands::EDIT,
        &r,
        json!({"message_id": 1, "text": "bob was here"}),
        ErrorCode::PermissionDenied,
    )
    .await?;
    bob.refused(
        chat::commands::DELETE,
        &r,
        json!({"message_id": 1}),
        ErrorCode::PermissionDenied,
    )
    .await?;
    let stored = chat.messages().message(&r, 1).context("message 1")?;
    ensure!(stored.text == "hello bob" && !stored.deleted && stored.edited_ts.is_none());

    // Typing reaches the room.
    match bob.typing(&r).await? {
        Ok(ServerFrame::Reply(_)) => {}
        other => bail!("typing_start: {other:?}"),
    }
    alice
        .expect("typing.start", &json!({"user": "bob"}))
        .await?;
    bob.expect("typing.start", &json!({"user": "bob"})).await?;

    // alice edits, then deletes, her own message.
    let edited = alice
        .ok(
            chat::commands::EDIT,
            &r,
            json!({"message_id": 1, "text": "hello, bob"}),
        )
        .await?;
    ensure!(
        edited["id"] == 1 && edited["edited_ts"].as_u64() >= sent["ts"].as_u64(),
        "{edited}"
    );
    let view = json!({
        "id": 1, "author": "alice", "text": "hello, bob", "ts": sent["ts"],
        "edited_ts": edited["edited_ts"],
    });
    alice.expect(chat::events::EDITED, &view).await?;
    bob.expect(chat::events::EDITED, &view).await?;
    let removed = alice
        .ok(chat::commands::DELETE, &r, json!({"message_id": 1}))
        .await?;
    ensure!(removed == json!({"id": 1}), "{removed}");
    alice
        .expect(chat::events::DELETED, &json!({"id": 1}))
        .await?;
    bob.expect(chat::events::DELETED, &json!({"id": 1})).await?;
    let stored = chat.messages().message(&r, 1).context("message 1")?;
    ensure!(stored.deleted && stored.text.is_empty());

    // A deleted or unknown message cannot be changed or read.
    let message = alice
        .refused(
            chat::commands::EDIT,
            &r,
            json!({"message_id": 1, "text": "again"}),
            ErrorCode::ValidationFailed,
        )
        .await?;
    ensure!(message == "message 1 was deleted", "{message}");
    bob.refused(
        chat::commands::READ,
        &r,
        json!({"message_id": 1}),
        ErrorCode::ValidationFailed,
    )
    .await?;
    let message = alice
        .refused(
            chat::commands::DELETE,
            &r,
            json!({"message_id": 99}),
            ErrorCode::ValidationFailed,
        )
        .await?;
    ensure!(message == "no message 99 in this conversation", "{message}");

    // The text must be 1 to 4000 characters (characters, not bytes).
    for text in [String::new(), "é".repeat(4001)] {
        let message = alice
            .refused(
                chat::commands::SEND,
                &r,
                json!({"text": text}),
                ErrorCode::ValidationFailed,
            )
            .await?;
        ensure!(message == "invalid command data: text", "{message}");
    }
    let refused = alice
        .refused(
            chat::commands::SEND,
            &r,
            json!({"body": "hi"}),
            ErrorCode::ValidationFailed,
        )
        .await?;
    ensure!(refused.contains("shape"), "{refused}");
    let long = "é".repeat(4000);
    let sent = bob
        .ok(chat::commands::SEND, &r, json!({"text": long}))
        .await?;
    ensure!(sent["id"] == 2, "{sent}");
    let created = json!({"id": 2, "author": "bob", "text": long, "ts": sent["ts"]});
    alice.expect(chat::events::CREATED, &created).await?;
    bob.expect(chat::events::CREATED, &created).await?;

    // Reloading the conversation: the tombstone, then bob's message.
    let page = alice.ok(chat::commands::LIST, &r, json!({})).await?;
    let tombstone = json!({
        "id": 1, "author": "alice", "text": "", "ts": view["ts"],
        "edited_ts": view["edited_ts"], "deleted": true,
    });
    ensure!(page == json!({"messages": [tombstone, created]}), "{page}");
    let page = alice
        .ok(chat::commands::LIST, &r, json!({"before": 2, "limit": 1}))
        .await?;
    ensure!(page["messages"].as_array().map(Vec::len) == Some(1) && page["messages"][0]["id"] == 1);
    alice
        .refused(
            chat::commands::LIST,
            &r,
            json!({"limit": 0}),
            ErrorCode::ValidationFailed,
        )
        .await?;

    // Commands need the conversation joined, and a conversation room.
    let other = room("conversation:acme.2");
    bob.refused(
        chat::commands::SEND,
        &other,
        json!({"text": "hi"}),
        ErrorCode::NotJoined,
    )
    .await?;
    let message = bob
        .refused(
            chat::commands::SEND,
            &room("lobby:acme.1"),
            json!({"text": "hi"}),
            ErrorCode::ValidationFailed,
        )
        .await?;
    ensure!(
        message == "chat commands concern conversation rooms",
        "{message}"
    );

    // Nobody got anything else: no status for bob, nothing at all for mallory.
    for member in [&mut alice, &mut bob, &mut mallory] {
        member.quiet().await?;
    }
    Ok(())
}

#[tokio::test]
async fn the_eleventh_message_in_a_minute_is_rate_limited() -> Result<()> {
    let (server, _chat) = server().await?;
    let r = room("conversation:acme.7");
    let mut alice = Member::connect(&server, "alice", "acme", WireFormat::Json).await?;
    alice.join(&r).await?.map_err(|e| anyhow!("join: {e:?}"))?;
    for i in 1..=10 {
        let sent = alice
            .ok(chat::commands::SEND, &r, json!({"text": format!("m{i}")}))
            .await?;
        ensure!(sent["id"] == i, "{sent}");
    }
    match alice
        .call(chat::commands::SEND, &r, json!({"text": "one too many"}))
        .await?
    {
        Err(e) if e.code == ErrorCode::RateLimited => {
            ensure!(e.retry_after_ms.is_some_and(|ms| ms > 0), "{e:?}");
        }
        other => bail!("expected RATE_LIMITED, got {other:?}"),
    }
    // Ten messages published, the refused one not.
    for i in 1..=10 {
        let (event, data) = alice.next().await?;
        ensure!(
            event == chat::events::CREATED && data["text"] == format!("m{i}"),
            "{data}"
        );
    }
    alice.quiet().await
}

/// `node socketio-driver.mjs`: the official socket.io-client, one request at a time.
struct SocketIo {
    child: Child,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
    events: VecDeque<Value>,
    next_id: u64,
}

impl SocketIo {
    /// Connects and waits for `gateway.connected` (or the `connect_error`, returned as `Err`).
    async fn connect(url: &str, token: &str) -> Result<std::result::Result<Self, Value>> {
        let mut child = tokio::process::Command::new("node")
            .arg(node_dir().join("socketio-driver.mjs"))
            .arg(url)
            .arg(token)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("start node socketio-driver.mjs")?;
        let mut client = Self {
            stdin: child.stdin.take().context("stdin")?,
            lines: BufReader::new(child.stdout.take().context("stdout")?).lines(),
            child,
            events: VecDeque::new(),
            next_id: 1,
        };
        let first = client.line().await?;
        if first["kind"] == "connect_error" {
            return Ok(Err(first));
        }
        ensure!(
            first["kind"] == "event" && first["event"] == "gateway.connected",
            "{first}"
        );
        Ok(Ok(client))
    }

    async fn line(&mut self) -> Result<Value> {
        let line = tokio::time::timeout(STEP_TIMEOUT, self.lines.next_line())
            .await
            .map_err(|_| anyhow!("no line from the driver within {STEP_TIMEOUT:?}"))??
            .ok_or_else(|| anyhow!("the driver exited"))?;
        let value: Value = serde_json::from_str(&line).with_context(|| line.clone())?;
        ensure!(value["kind"] != "fatal", "driver failed: {value}");
        Ok(value)
    }

    /// Emits `event` with `data` and returns the acknowledgement; events that arrive
    /// meanwhile are kept for [`SocketIo::next`].
    async fn request(&mut self, event: &str, data: Value) -> Result<Value> {
        let id = self.next_id;
        self.next_id += 1;
        let line = json!({ "id": id, "event": event, "data": data }).to_string();
        self.stdin.write_all(format!("{line}\n").as_bytes()).await?;
        self.stdin.flush().await?;
        loop {
            let line = self.line().await?;
            match line["kind"].as_str() {
                Some("ack") if line["id"] == id => return Ok(line["ack"].clone()),
                Some("event") => self.events.push_back(line),
                _ => bail!("unexpected {line}"),
            }
        }
    }

    /// An application command through the `command` event.
    async fn command(&mut self, name: &str, room: &RoomId, data: Value) -> Result<Value> {
        self.request(
            "command",
            json!({ "name": name, "room": room, "data": data }),
        )
        .await
    }

    /// The next publication: the Socket.IO event (`stream.data` for chat events) and the
    /// publication's own event and data.
    async fn next(&mut self) -> Result<(String, String, Value)> {
        let line = match self.events.pop_front() {
            Some(line) => line,
            None => self.line().await?,
        };
        ensure!(line["kind"] == "event", "{line}");
        let publication = &line["data"];
        ensure!(publication["type"] == "pub", "not a publication: {line}");
        Ok((
            line["event"].as_str().unwrap_or_default().to_owned(),
            publication["event"].as_str().unwrap_or_default().to_owned(),
            publication["data"].clone(),
        ))
    }

    /// Closes stdin and checks the driver exits cleanly with nothing unread.
    async fn finish(mut self) -> Result<()> {
        drop(self.stdin);
        let mut rest = Vec::new();
        while let Some(line) = self.lines.next_line().await? {
            rest.push(line);
        }
        let status = tokio::time::timeout(STEP_TIMEOUT, self.child.wait())
            .await
            .map_err(|_| anyhow!("the driver did not exit"))??;
        ensure!(status.success(), "driver exited with {status}");
        ensure!(
            self.events.is_empty() && rest.is_empty(),
            "unexpected events: {:?} {rest:?}",
            self.events
        );
        Ok(())
    }
}

#[tokio::test]
async fn a_socketio_client_chats_with_a_websocket_client() -> Result<()> {
    if !prerequisites("chat: socket.io", false)? {
        return Ok(());
    }
    let (server, _chat) = server().await?;
    let url = format!("http://{}/streaming", server.addr);
    let r = room("conversation:acme.3");
    let mut alice = Member::connect(&server, "alice", "acme", WireFormat::Json).await?;
    alice.join(&r).await?.map_err(|e| anyhow!("join: {e:?}"))?;
    let mut bob = SocketIo::connect(&url, &token("bob", "acme")?)
        .await?
        .map_err(|e| anyhow!("bob was refused: {e}"))?;
    let joined = bob.request("join", json!({ "room": r })).await?;
    ensure!(
        joined["room"] == r.as_str() && joined.get("error").is_none(),
        "{joined}"
    );

    // A message from the WebSocket reaches the socket.io client as `stream.data`.
    let sent = alice
        .ok(chat::commands::SEND, &r, json!({"text": "hi from ws"}))
        .await?;
    let created = json!({"id": 1, "author": "alice", "text": "hi from ws", "ts": sent["ts"]});
    alice.expect(chat::events::CREATED, &created).await?;
    let got = bob.next().await?;
    ensure!(
        got == ("stream.data".into(), chat::events::CREATED.into(), created),
        "{got:?}"
    );

    // Its delivery confirmation reaches alice; its edit is refused.
    let ack = bob
        .command(chat::commands::DELIVERED, &r, json!({"message_id": 1}))
        .await?;
    ensure!(
        ack == json!({"data": {"message_id": 1, "first": true}}),
        "{ack}"
    );
    alice
        .expect(
            chat::events::STATUS,
            &json!({"message_id": 1, "user": "bob", "status": "delivered"}),
        )
        .await?;
    let ack = bob
        .command(
            chat::commands::EDIT,
            &r,
            json!({"message_id": 1, "text": "mine"}),
        )
        .await?;
    ensure!(ack["error"]["code"] == "PERMISSION_DENIED", "{ack}");

    // Typing and a reply of its own.
    let ack = bob.request("typing_start", json!({ "room": r })).await?;
    ensure!(ack.get("error").is_none(), "{ack}");
    alice
        .expect("typing.start", &json!({"user": "bob"}))
        .await?;
    let got = bob.next().await?;
    ensure!(
        got == (
            "stream.data".into(),
            "typing.start".into(),
            json!({"user": "bob"})
        ),
        "{got:?}"
    );
    let ack = bob
        .command(
            chat::commands::SEND,
            &r,
            json!({"text": "hi from socket.io"}),
        )
        .await?;
    ensure!(ack["data"]["id"] == 2, "{ack}");
    let created =
        json!({"id": 2, "author": "bob", "text": "hi from socket.io", "ts": ack["data"]["ts"]});
    alice.expect(chat::events::CREATED, &created).await?;
    let got = bob.next().await?;
    ensure!(
        got == ("stream.data".into(), chat::events::CREATED.into(), created),
        "{got:?}"
    );

    // Another organisation's socket.io user is kept out.
    let mut mallory = SocketIo::connect(&url, &token("mallory", "globex")?)
        .await?
        .map_err(|e| anyhow!("mallory was refused: {e}"))?;
    let ack = mallory.request("join", json!({ "room": r })).await?;
    ensure!(ack["error"]["code"] == "ROOM_ACCESS_DENIED", "{ack}");

    alice.quiet().await?;
    mallory.finish().await?;
    bob.finish().await
}

//! The HTTP API under `/api/v1`, called over real HTTP against the real binary: every route's
//! success (checked from a WebSocket client where it publishes) and its refusals, tenant-bound
//! keys, and the OpenAPI document against the routes actually served.

mod common;

use std::collections::BTreeSet;

use anyhow::{Context, Result, bail, ensure};
use common::{API_KEY, Scratch, Server, http};
use reqwest::{RequestBuilder, StatusCode};
use serde_json::{Value, json};
use streamgate_e2e::{Client, Event};
use streamgate_protocol::{ErrorCode, Publication, ServerFrame, WireFormat};

/// Every route the API serves, as (method, path template): what the OpenAPI document must list,
/// no more and no less.
const ROUTES: [(&str, &str); 9] = [
    ("post", "/api/v1/publish"),
    ("post", "/api/v1/broadcast"),
    ("post", "/api/v1/streams"),
    ("post", "/api/v1/streams/{room}/updates"),
    ("post", "/api/v1/streams/{room}/close"),
    ("get", "/api/v1/rooms/{room}/presence"),
    ("get", "/api/v1/rooms/{room}/history"),
    ("post", "/api/v1/users/{user}/disconnect"),
    ("get", "/api/v1/stats"),
];

/// A running server and an HTTP client for it.
struct Api {
    server: Server,
    http: reqwest::Client,
    key: String,
}

impl Api {
    async fn start(env: &[(&str, &str)]) -> Result<Self> {
        Self::with(Server::start(None, env).await?, API_KEY)
    }

    fn with(server: Server, key: &str) -> Result<Self> {
        Ok(Self {
            server,
            http: http(),
            key: key.to_owned(),
        })
    }

    fn url(&self, path: &str) -> String {
        self.server.url(&format!("/api/v1{path}"))
    }

    /// `POST /api/v1{path}` with the key, without a body.
    fn post(&self, path: &str) -> RequestBuilder {
        self.http.post(self.url(path)).bearer_auth(&self.key)
    }

    /// `GET /api/v1{path}` with the key.
    fn get(&self, path: &str) -> RequestBuilder {
        self.http.get(self.url(path)).bearer_auth(&self.key)
    }

    /// `POST` of a JSON body with the key: the status and the JSON answer.
    async fn post_json(&self, path: &str, body: &Value) -> Result<(StatusCode, Value)> {
        call(self.post(path).json(body)).await
    }

    /// `POST` that must answer 200: the JSON answer.
    async fn ok(&self, path: &str, body: &Value) -> Result<Value> {
        expect_ok(self.post_json(path, body).await?).with_context(|| format!("POST {path} {body}"))
    }

    /// `GET` that must answer 200: the JSON answer.
    async fn get_ok(&self, path: &str) -> Result<Value> {
        expect_ok(call(self.get(path)).await?).with_context(|| format!("GET {path}"))
    }

    /// A WebSocket client of `user` in tenant `acme`, joined to `rooms` (presence rooms last:
    /// their diffs may arrive before a later join's answer).
    async fn viewer(&self, user: &str, rooms: &[&str]) -> Result<Client> {
        let token = common::token(user, Some("acme")).await?;
        let mut ws = Client::connect(&self.server.ws_url(), &token, WireFormat::Json).await?;
        for room in rooms {
            ws.join(&room.parse()?, None)
                .await
                .with_context(|| format!("{user} joins {room}"))?;
        }
        Ok(ws)
    }
}

/// Sends the request: the status and the body as JSON (`null` when empty).
async fn call(request: RequestBuilder) -> Result<(StatusCode, Value)> {
    let response = request.send().await?;
    let status = response.status();
    let text = response.text().await?;
    if text.is_empty() {
        return Ok((status, Value::Null));
    }
    let body =
        serde_json::from_str(&text).with_context(|| format!("{status}: not JSON: {text}"))?;
    Ok((status, body))
}

fn expect_ok((status, body): (StatusCode, Value)) -> Result<Value> {
    ensure!(
        status == StatusCode::OK,
        "expected 200, got {status}: {body}"
    );
    Ok(body)
}

/// Checks an error answer: the status, `{"error": {"code", "message", "recoverable"}}` with
/// `code`; returns the message.
fn expect_error(
    (status, body): (StatusCode, Value),
    expected: u16,
    code: ErrorCode,
) -> Result<String> {
    ensure!(
        status.as_u16() == expected,
        "expected {expected} {code}, got {status}: {body}"
    );
    let error = &body["error"];
    ensure!(
        error["code"] == code.to_string(),
        "expected code {code}: {body}"
    );
    ensure!(
        error["recoverable"] == code.recoverable(),
        "recoverable: {body}"
    );
    let message = error["message"].as_str().context("no message")?;
    ensure!(!message.is_empty(), "empty message: {body}");
    Ok(message.to_owned())
}

/// The next publication, skipping presence diffs.
async fn next_publication(ws: &mut Client) -> Result<Publication> {
    loop {
        match ws.recv().await? {
            ServerFrame::Publication(p) => return Ok(p),
            ServerFrame::Presence(_) => {}
            other => bail!("expected a publication, got {other:?}"),
        }
    }
}

fn data(p: &Publication) -> Result<Value> {
    serde_json::from_str(p.data.as_str()).context("publication data")
}

fn offsets(history: &Value) -> Vec<u64> {
    history["publications"]
        .as_array()
        .map(|items| items.iter().filter_map(|p| p["offset"].as_u64()).collect())
        .unwrap_or_default()
}

/// Polls `GET path` until `done` holds for the answer (up to 10 s); returns that answer.
async fn poll(api: &Api, path: &str, done: impl Fn(&Value) -> bool) -> Result<Value> {
    let mut last = Value::Null;
    for _ in 0..200 {
        last = api.get_ok(path).await?;
        if done(&last) {
            return Ok(last);
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    bail!("GET {path}: condition not reached, last answer {last}")
}

#[tokio::test]
async fn publish_assigns_offsets_reaches_clients_targets_users_and_volatile_is_live() -> Result<()>
{
    let api = Api::start(&[]).await?;
    let room = "task:acme.1";
    let mut alice = api.viewer("alice", &[room]).await?;
    let mut bob = api.viewer("bob", &[room]).await?;

    let first = api
        .ok(
            "/publish",
            &json!({"room": room, "event": "task.updated", "data": {"n": 1}, "id": "evt-1"}),
        )
        .await?;
    ensure!(first["room"] == room && first["offset"] == 1, "{first}");
    ensure!(
        first["delivered"] == 2 && first["dropped"] == 0 && first["offline"] == 0,
        "{first}"
    );
    let epoch = first["epoch"].as_u64().context("epoch")?;
    let second = api
        .ok(
            "/publish",
            &json!({"room": room, "event": "task.updated", "data": {"n": 2}, "priority": "high"}),
        )
        .await?;
    ensure!(
        second["offset"] == 2 && second["epoch"] == epoch,
        "{second}"
    );

    for ws in [&mut alice, &mut bob] {
        let p = next_publication(ws).await?;
        ensure!(
            p.room.as_str() == room && p.offset == 1 && p.epoch == epoch,
            "{p:?}"
        );
        ensure!(
            p.event == "task.updated" && p.id == "evt-1" && data(&p)? == json!({"n": 1}),
            "{p:?}"
        );
        let p = next_publication(ws).await?;
        ensure!(p.offset == 2 && data(&p)? == json!({"n": 2}), "{p:?}");
        ensure!(p.priority == streamgate_protocol::Priority::High, "{p:?}");
    }

    // Targeted: only bob's session gets it; carol, offline, finds it in her offline queue.
    let targeted = api
        .ok(
            "/publish",
            &json!({"room": room, "event": "dm", "data": "for bob", "to_users": ["bob", "carol"]}),
        )
        .await?;
    ensure!(
        targeted["delivered"] == 1 && targeted["offline"] == 1,
        "{targeted}"
    );
    let p = next_publication(&mut bob).await?;
    ensure!(p.event == "dm" && data(&p)? == json!("for bob"), "{p:?}");

    // Volatile: live only, offset 0, and not in the history.
    let volatile = api
        .ok(
            "/publish",
            &json!({"room": room, "event": "typing", "volatile": true}),
        )
        .await?;
    ensure!(
        volatile["offset"] == 0 && volatile["delivered"] == 2,
        "{volatile}"
    );
    let p = next_publication(&mut alice).await?;
    ensure!(
        p.event == "typing" && p.offset == 0,
        "alice got the targeted one or else: {p:?}"
    );
    let p = next_publication(&mut bob).await?;
    ensure!(p.event == "typing" && p.offset == 0, "{p:?}");

    let third = api
        .ok("/publish", &json!({"room": room, "event": "task.done"}))
        .await?;
    ensure!(
        third["offset"] == 3,
        "targeted and volatile publications take no offset: {third}"
    );
    let history = api.get_ok(&format!("/rooms/{room}/history")).await?;
    ensure!(offsets(&history) == [1, 2, 3], "{history}");

    // Field checks.
    for (body, what) in [
        (json!({"room": room, "event": ""}), "empty event"),
        (
            json!({"room": room, "event": "x".repeat(129)}),
            "long event",
        ),
        (json!({"room": room, "event": "e", "id": ""}), "empty id"),
        (
            json!({"room": room, "event": "e", "to_users": [""]}),
            "empty user",
        ),
        (
            json!({"room": room, "event": "e", "priority": "urgent"}),
            "unknown priority",
        ),
        (json!({"room": room}), "missing event"),
    ] {
        expect_error(
            api.post_json("/publish", &body).await?,
            400,
            ErrorCode::ValidationFailed,
        )
        .context(what)?;
    }
    Ok(())
}

#[tokio::test]
async fn broadcast_publishes_into_every_room_or_none() -> Result<()> {
    let api = Api::start(&[]).await?;
    let mut ws = api
        .viewer("alice", &["task:acme.b1", "execution:acme.b2"])
        .await?;

    let answer = api
        .ok("/broadcast", &json!({"rooms": ["task:acme.b1", "execution:acme.b2"], "event": "notice", "data": {"v": 1}}))
        .await?;
    let results = answer["results"].as_array().context("results")?;
    ensure!(results.len() == 2, "{answer}");
    ensure!(
        results[0]["room"] == "task:acme.b1" && results[0]["offset"] == 1,
        "{answer}"
    );
    ensure!(
        results[1]["room"] == "execution:acme.b2" && results[1]["offset"] == 1,
        "{answer}"
    );
    let mut seen = BTreeSet::new();
    for _ in 0..2 {
        let p = next_publication(&mut ws).await?;
        ensure!(
            p.event == "notice" && p.offset == 1 && data(&p)? == json!({"v": 1}),
            "{p:?}"
        );
        seen.insert(p.room.to_string());
    }
    ensure!(
        seen == BTreeSet::from(["task:acme.b1".into(), "execution:acme.b2".into()]),
        "{seen:?}"
    );

    // One room of an unknown kind: refused before anything is published.
    let message = expect_error(
        api.post_json(
            "/broadcast",
            &json!({"rooms": ["task:acme.b3", "nope:1"], "event": "notice"}),
        )
        .await?,
        400,
        ErrorCode::ValidationFailed,
    )?;
    ensure!(message.contains("`nope`"), "{message}");
    let history = api.get_ok("/rooms/task:acme.b3/history").await?;
    ensure!(
        offsets(&history).is_empty() && history["offset"] == 0,
        "{history}"
    );

    for (body, what) in [
        (json!({"rooms": [], "event": "e"}), "no room"),
        (
            json!({"rooms": vec!["task:acme.x"; 101], "event": "e"}),
            "101 rooms",
        ),
        (
            json!({"rooms": ["task:acme.b3", "not a room"], "event": "e"}),
            "invalid room",
        ),
        (
            json!({"rooms": ["task:acme.b3"], "event": ""}),
            "empty event",
        ),
    ] {
        expect_error(
            api.post_json("/broadcast", &body).await?,
            400,
            ErrorCode::ValidationFailed,
        )
        .context(what)?;
    }
    let history = api.get_ok("/rooms/task:acme.b3/history").await?;
    ensure!(offsets(&history).is_empty(), "{history}");
    Ok(())
}

#[tokio::test]
async fn streams_open_append_and_close_with_one_terminal_update() -> Result<()> {
    let api = Api::start(&[]).await?;
    let room = "execution:acme.run-1";
    let mut ws = api.viewer("alice", &[room]).await?;

    let opened = api.ok("/streams", &json!({"room": room})).await?;
    ensure!(
        opened["room"] == room && opened["offset"] == 0 && opened["cancelled"] == false,
        "{opened}"
    );
    let again = api.ok("/streams", &json!({"room": room})).await?;
    ensure!(again == opened, "open is idempotent: {again} vs {opened}");

    let appended = api
        .ok(
            &format!("/streams/{room}/updates"),
            &json!({"updates": [
                {"type": "token", "text": "Hel"},
                {"type": "token", "text": "lo"},
                {"type": "event", "name": "tool.call", "data": {"tool": "search"}},
                {"type": "progress", "value": 0.5, "stage": "generation"},
            ]}),
        )
        .await?;
    ensure!(
        appended["offset"] == 4 && appended["cancelled"] == false,
        "{appended}"
    );
    let expected = [
        ("stream.token", json!({"text": "Hel"})),
        ("stream.token", json!({"text": "lo"})),
        (
            "stream.event",
            json!({"name": "tool.call", "data": {"tool": "search"}}),
        ),
        (
            "stream.progress",
            json!({"value": 0.5, "stage": "generation", "message": null}),
        ),
    ];
    for (i, (event, value)) in expected.iter().enumerate() {
        let p = next_publication(&mut ws).await?;
        ensure!(
            p.offset == i as u64 + 1 && p.event == *event && data(&p)? == *value,
            "#{i}: {p:?}"
        );
    }

    let closed = api
        .ok(
            &format!("/streams/{room}/close"),
            &json!({"status": "complete", "result": {"tokens": 2}}),
        )
        .await?;
    ensure!(closed["offset"] == 5, "{closed}");
    let p = next_publication(&mut ws).await?;
    ensure!(p.event == "stream.complete" && p.offset == 5, "{p:?}");
    ensure!(data(&p)? == json!({"result": {"tokens": 2}}), "{p:?}");

    // Ended: appending or closing again finds no stream.
    let token = json!({"updates": [{"type": "token", "text": "late"}]});
    expect_error(
        api.post_json(&format!("/streams/{room}/updates"), &token)
            .await?,
        404,
        ErrorCode::ValidationFailed,
    )?;
    expect_error(
        api.post_json(
            &format!("/streams/{room}/close"),
            &json!({"status": "complete"}),
        )
        .await?,
        404,
        ErrorCode::ValidationFailed,
    )?;
    expect_error(
        api.post_json("/streams/execution:acme.never/updates", &token)
            .await?,
        404,
        ErrorCode::ValidationFailed,
    )?;

    // A second run: invalid updates are refused, then it ends with an error.
    let room = "execution:acme.run-2";
    let mut ws = api.viewer("alice", &[room]).await?;
    api.ok("/streams", &json!({"room": room})).await?;
    let updates = format!("/streams/{room}/updates");
    for (body, what) in [
        (
            json!({"updates": [{"type": "progress", "value": 2.0}]}),
            "progress 2.0",
        ),
        (
            json!({"updates": [{"type": "progress", "value": -0.1}]}),
            "progress -0.1",
        ),
        (
            json!({"updates": [{"type": "event", "name": ""}]}),
            "empty event name",
        ),
        (
            json!({"updates": [{"type": "shout", "text": "x"}]}),
            "unknown type",
        ),
        (json!({"updates": []}), "no update"),
    ] {
        expect_error(
            api.post_json(&updates, &body).await?,
            400,
            ErrorCode::ValidationFailed,
        )
        .context(what)?;
    }
    expect_error(
        api.post_json(
            &format!("/streams/{room}/close"),
            &json!({"status": "error", "message": ""}),
        )
        .await?,
        400,
        ErrorCode::ValidationFailed,
    )
    .context("empty error message")?;
    let closed = api
        .ok(
            &format!("/streams/{room}/close"),
            &json!({"status": "error", "message": "the model timed out"}),
        )
        .await?;
    ensure!(
        closed["offset"] == 1,
        "nothing was published before: {closed}"
    );
    let p = next_publication(&mut ws).await?;
    ensure!(p.event == "stream.error" && p.offset == 1, "{p:?}");
    ensure!(
        data(&p)? == json!({"code": "STREAM_ABORTED", "message": "the model timed out"}),
        "{p:?}"
    );

    // An explicit code, and `cancelled`.
    let room = "execution:acme.run-3";
    let mut ws = api.viewer("alice", &[room]).await?;
    api.ok("/streams", &json!({"room": room})).await?;
    api.ok(
        &format!("/streams/{room}/close"),
        &json!({"status": "error", "code": "RATE_LIMITED", "message": "provider quota"}),
    )
    .await?;
    let p = next_publication(&mut ws).await?;
    ensure!(data(&p)?["code"] == "RATE_LIMITED", "{p:?}");
    api.ok("/streams", &json!({"room": room})).await?;
    api.ok(
        &format!("/streams/{room}/close"),
        &json!({"status": "cancelled", "result": {"partial": true}}),
    )
    .await?;
    let p = next_publication(&mut ws).await?;
    ensure!(
        p.event == "stream.cancelled" && data(&p)? == json!({"result": {"partial": true}}),
        "{p:?}"
    );
    Ok(())
}

#[tokio::test]
async fn presence_lists_the_users_joined_over_websocket() -> Result<()> {
    let api = Api::start(&[]).await?;
    let room = "conversation:acme.1";
    let path = format!("/rooms/{room}/presence");
    let empty = api.get_ok(&path).await?;
    ensure!(empty == json!({"room": room, "users": []}), "{empty}");

    let _alice = api.viewer("alice", &[room]).await?;
    let present = poll(&api, &path, |v| {
        v["users"].as_array().is_some_and(|u| !u.is_empty())
    })
    .await?;
    let users = present["users"].as_array().context("users")?;
    ensure!(users.len() == 1 && users[0]["user"] == "alice", "{present}");
    ensure!(users[0]["state"] == "online", "{present}");

    let _bob = api.viewer("bob", &[room]).await?;
    let both = poll(&api, &path, |v| {
        v["users"].as_array().is_some_and(|u| u.len() == 2)
    })
    .await?;
    ensure!(
        both["users"][0]["user"] == "alice" && both["users"][1]["user"] == "bob",
        "sorted: {both}"
    );

    // Another room of the same kind has nobody.
    let other = api.get_ok("/rooms/conversation:acme.2/presence").await?;
    ensure!(other["users"] == json!([]), "{other}");
    Ok(())
}

#[tokio::test]
async fn history_reads_after_an_offset_checks_the_epoch_and_truncates() -> Result<()> {
    let api = Api::start(&[]).await?;
    let room = "task:acme.h";
    let mut epoch = 0;
    for n in 1..=5 {
        let p = api
            .ok(
                "/publish",
                &json!({"room": room, "event": "step", "data": {"n": n}, "id": format!("s{n}")}),
            )
            .await?;
        ensure!(p["offset"] == n, "{p}");
        epoch = p["epoch"].as_u64().context("epoch")?;
    }
    let base = format!("/rooms/{room}/history");

    let all = api.get_ok(&base).await?;
    ensure!(
        offsets(&all) == [1, 2, 3, 4, 5] && all["recovered"] == true,
        "{all}"
    );

    let since = api.get_ok(&format!("{base}?since=2&epoch={epoch}")).await?;
    ensure!(
        since["room"] == room && since["epoch"] == epoch && since["offset"] == 5,
        "{since}"
    );
    ensure!(offsets(&since) == [3, 4, 5], "{since}");
    ensure!(
        since["recovered"] == true && since["truncated"] == false,
        "{since}"
    );
    let third = &since["publications"][0];
    ensure!(
        third["id"] == "s3" && third["event"] == "step" && third["data"] == json!({"n": 3}),
        "{since}"
    );
    ensure!(
        third["ts"]
            .as_u64()
            .is_some_and(|ts| ts > 1_600_000_000_000),
        "{since}"
    );

    let since = api.get_ok(&format!("{base}?since=2")).await?;
    ensure!(
        offsets(&since) == [3, 4, 5] && since["recovered"] == true,
        "no epoch: {since}"
    );

    let other_epoch = api
        .get_ok(&format!("{base}?since=2&epoch={}", epoch + 1))
        .await?;
    ensure!(
        other_epoch["recovered"] == false && other_epoch["epoch"] == epoch,
        "{other_epoch}"
    );

    let limited = api.get_ok(&format!("{base}?since=2&limit=2")).await?;
    ensure!(
        offsets(&limited) == [3, 4] && limited["truncated"] == true,
        "{limited}"
    );
    let exact = api.get_ok(&format!("{base}?since=2&limit=3")).await?;
    ensure!(
        offsets(&exact) == [3, 4, 5] && exact["truncated"] == false,
        "{exact}"
    );

    let up_to_date = api.get_ok(&format!("{base}?since=5")).await?;
    ensure!(
        offsets(&up_to_date).is_empty() && up_to_date["recovered"] == true,
        "{up_to_date}"
    );

    for query in [
        "limit=0",
        "limit=1001",
        "since=-1",
        "since=abc",
        "epoch=x",
        "unknown=1",
    ] {
        expect_error(
            call(api.get(&format!("{base}?{query}"))).await?,
            400,
            ErrorCode::ValidationFailed,
        )
        .context(query.to_owned())?;
    }
    Ok(())
}

#[tokio::test]
async fn disconnect_closes_every_session_of_the_user() -> Result<()> {
    let api = Api::start(&[]).await?;
    let mut alice = api.viewer("alice", &["task:acme.1"]).await?;
    let mut alice_again = api.viewer("alice", &[]).await?;
    let mut bob = api.viewer("bob", &["task:acme.1"]).await?;

    let answer = api
        .ok(
            "/users/alice/disconnect",
            &json!({"reason": "account suspended"}),
        )
        .await?;
    ensure!(answer == json!({"user": "alice", "closed": 2}), "{answer}");
    for ws in [&mut alice, &mut alice_again] {
        let mut disconnect = None;
        loop {
            match ws.next_event().await? {
                Event::Frame(ServerFrame::Disconnect(d)) => disconnect = Some(d),
                Event::Frame(ServerFrame::Presence(_)) => {}
                Event::Frame(other) => bail!("unexpected {other:?}"),
                Event::Closed(_) => break,
            }
        }
        let d = disconnect.context("closed without a disconnect frame")?;
        ensure!(
            d.code == ErrorCode::PermissionDenied && !d.reconnect,
            "{d:?}"
        );
        ensure!(d.reason == "account suspended", "{d:?}");
    }

    // Bob stays connected and keeps receiving.
    api.ok(
        "/publish",
        &json!({"room": "task:acme.1", "event": "still.here"}),
    )
    .await?;
    ensure!(next_publication(&mut bob).await?.event == "still.here");

    // No body at all is fine (the default reason); nobody left to close.
    let (status, body) = call(api.post("/users/alice/disconnect")).await?;
    ensure!(
        status == 200 && body == json!({"user": "alice", "closed": 0}),
        "{status} {body}"
    );
    let answer = api.ok("/users/nobody/disconnect", &json!({})).await?;
    ensure!(answer["closed"] == 0, "{answer}");

    expect_error(
        api.post_json("/users/bob/disconnect", &json!({"reason": "x".repeat(257)}))
            .await?,
        400,
        ErrorCode::ValidationFailed,
    )?;
    expect_error(
        call(
            api.post("/users/bob/disconnect")
                .header("content-type", "application/json")
                .body("{"),
        )
        .await?,
        400,
        ErrorCode::ValidationFailed,
    )?;
    expect_error(
        api.post_json("/users/bob/disconnect", &json!({"why": "x"}))
            .await?,
        400,
        ErrorCode::ValidationFailed,
    )?;
    Ok(())
}

#[tokio::test]
async fn stats_reflect_sessions_rooms_and_traffic() -> Result<()> {
    let api = Api::start(&[]).await?;
    let stats = api.get_ok("/stats").await?;
    ensure!(
        stats["sessions"] == 0 && stats["logged_rooms"] == 0,
        "{stats}"
    );
    for key in [
        "sessions",
        "rooms",
        "logged_rooms",
        "queued",
        "offline_users",
        "offline_queued",
        "active_streams",
        "messages_in",
        "messages_out",
        "dropped",
        "uptime_secs",
    ] {
        ensure!(stats[key].is_u64(), "{key}: {stats}");
    }

    let mut alice = api.viewer("alice", &["task:acme.1"]).await?;
    let bob = api.viewer("bob", &[]).await?;
    api.ok("/publish", &json!({"room": "task:acme.1", "event": "e"}))
        .await?;
    next_publication(&mut alice).await?;
    let stats = api.get_ok("/stats").await?;
    ensure!(stats["sessions"] == 2 && stats["rooms"] == 1, "{stats}");
    ensure!(
        stats["logged_rooms"] == 1 && stats["active_streams"] == 0,
        "{stats}"
    );
    api.ok("/streams", &json!({"room": "execution:acme.s"}))
        .await?;
    let stats = api.get_ok("/stats").await?;
    ensure!(stats["active_streams"] == 1, "{stats}");
    ensure!(
        stats["messages_out"].as_u64().is_some_and(|n| n >= 1),
        "{stats}"
    );
    ensure!(
        stats["messages_in"].as_u64().is_some_and(|n| n >= 1),
        "alice's join: {stats}"
    );

    bob.kill();
    poll(&api, "/stats", |s| s["sessions"] == 1).await?;
    api.ok(
        "/streams/execution:acme.s/close",
        &json!({"status": "complete"}),
    )
    .await?;
    let stats = api.get_ok("/stats").await?;
    ensure!(
        stats["active_streams"] == 0 && stats["logged_rooms"] == 2,
        "{stats}"
    );
    Ok(())
}

/// One valid request per route (paths filled in), for the refusal and documentation checks.
/// Order matters: the stream is opened before it is appended to and closed.
fn valid_requests() -> Vec<(&'static str, String, Option<Value>)> {
    let stream = "execution:acme.doc";
    vec![
        (
            "post",
            "/api/v1/publish".into(),
            Some(json!({"room": "task:acme.1", "event": "e"})),
        ),
        (
            "post",
            "/api/v1/broadcast".into(),
            Some(json!({"rooms": ["task:acme.1"], "event": "e"})),
        ),
        (
            "post",
            "/api/v1/streams".into(),
            Some(json!({"room": stream})),
        ),
        (
            "post",
            format!("/api/v1/streams/{stream}/updates"),
            Some(json!({"updates": [{"type": "token", "text": "t"}]})),
        ),
        (
            "post",
            format!("/api/v1/streams/{stream}/close"),
            Some(json!({"status": "complete"})),
        ),
        (
            "get",
            "/api/v1/rooms/conversation:acme.1/presence".into(),
            None,
        ),
        ("get", "/api/v1/rooms/task:acme.1/history".into(), None),
        (
            "post",
            "/api/v1/users/alice/disconnect".into(),
            Some(json!({})),
        ),
        ("get", "/api/v1/stats".into(), None),
    ]
}

fn request(
    client: &reqwest::Client,
    server: &Server,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> RequestBuilder {
    let builder = if method == "get" {
        client.get(server.url(path))
    } else {
        client.post(server.url(path))
    };
    match body {
        Some(body) => builder.json(body),
        None => builder,
    }
}

#[tokio::test]
async fn refusals_name_the_problem_in_json() -> Result<()> {
    let api = Api::start(&[]).await?;
    let client = &api.http;

    // Authentication, on every route.
    for (method, path, body) in valid_requests() {
        let what = format!("{method} {path}");
        let response = request(client, &api.server, method, &path, body.as_ref())
            .send()
            .await?;
        let challenge = response
            .headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let status = response.status();
        let body_json: Value = response.json().await.context(what.clone())?;
        expect_error((status, body_json), 401, ErrorCode::AuthFailed).context(what.clone())?;
        ensure!(
            challenge.as_deref() == Some("Bearer realm=\"streamgate\""),
            "{what}: {challenge:?}"
        );
        ensure!(
            content_type.as_deref() == Some("application/json"),
            "{what}: {content_type:?}"
        );

        for (name, value) in [
            ("authorization", "Bearer sgk_wrong"),
            ("x-api-key", "sgk_wrong"),
            ("authorization", "Basic dXNlcjpwYXNz"),
            ("authorization", API_KEY),
        ] {
            let wrong =
                request(client, &api.server, method, &path, body.as_ref()).header(name, value);
            expect_error(call(wrong).await?, 401, ErrorCode::AuthFailed)
                .with_context(|| format!("{what} with {name}: {value}"))?;
        }

        // The key in X-API-Key works as well as in Authorization.
        let with_header =
            request(client, &api.server, method, &path, body.as_ref()).header("x-api-key", API_KEY);
        expect_ok(call(with_header).await?).context(what.clone())?;
    }
    let lower_case_scheme = client
        .get(api.url("/stats"))
        .header("authorization", format!("bearer {API_KEY}"));
    expect_ok(call(lower_case_scheme).await?)?;

    // Bodies, on every route that takes one (with a stream open, so that only the body is wrong).
    api.ok("/streams", &json!({"room": "execution:acme.1"}))
        .await?;
    let body_routes = [
        ("/publish", json!({"room": "task:acme.1", "event": "e"})),
        (
            "/broadcast",
            json!({"rooms": ["task:acme.1"], "event": "e"}),
        ),
        ("/streams", json!({"room": "execution:acme.1"})),
        (
            "/streams/execution:acme.1/updates",
            json!({"updates": [{"type": "token", "text": "t"}]}),
        ),
        (
            "/streams/execution:acme.1/close",
            json!({"status": "complete"}),
        ),
    ];
    for (path, valid) in &body_routes {
        let malformed = api
            .post(path)
            .header("content-type", "application/json")
            .body("{\"room\": ");
        let message = expect_error(call(malformed).await?, 400, ErrorCode::ValidationFailed)
            .with_context(|| format!("{path}: malformed"))?;
        ensure!(
            message.starts_with("invalid request body"),
            "{path}: {message}"
        );

        let mut unknown = valid.clone();
        unknown["surprise"] = json!(1);
        let message = expect_error(
            api.post_json(path, &unknown).await?,
            400,
            ErrorCode::ValidationFailed,
        )
        .with_context(|| format!("{path}: unknown field"))?;
        ensure!(message.contains("surprise"), "{path}: {message}");

        let untyped = api.post(path).body(valid.to_string());
        expect_error(call(untyped).await?, 415, ErrorCode::ValidationFailed)
            .with_context(|| format!("{path}: no content type"))?;
        let text = api
            .post(path)
            .header("content-type", "text/plain")
            .body(valid.to_string());
        expect_error(call(text).await?, 415, ErrorCode::ValidationFailed)
            .with_context(|| format!("{path}: text/plain"))?;

        expect_error(
            api.post_json(path, &json!([])).await?,
            400,
            ErrorCode::ValidationFailed,
        )
        .with_context(|| format!("{path}: an array"))?;
    }
    // The stream opened by the loop above is still open (every close was refused).
    api.ok(
        "/streams/execution:acme.1/close",
        &json!({"status": "complete"}),
    )
    .await?;

    // Rooms: an unknown kind names the kind; an invalid id is refused; on every route with a room.
    for room in [
        "nope:1",
        "not-a-room",
        "Upper:1",
        "task:",
        "task:bad%20name",
    ] {
        let checks = [
            api.post_json("/publish", &json!({"room": room, "event": "e"}))
                .await?,
            api.post_json("/broadcast", &json!({"rooms": [room], "event": "e"}))
                .await?,
            api.post_json("/streams", &json!({"room": room})).await?,
            api.post_json(
                &format!("/streams/{room}/updates"),
                &json!({"updates": [{"type": "token", "text": "t"}]}),
            )
            .await?,
            api.post_json(
                &format!("/streams/{room}/close"),
                &json!({"status": "complete"}),
            )
            .await?,
            call(api.get(&format!("/rooms/{room}/presence"))).await?,
            call(api.get(&format!("/rooms/{room}/history"))).await?,
        ];
        for (i, answer) in checks.into_iter().enumerate() {
            let message = expect_error(answer, 400, ErrorCode::ValidationFailed)
                .with_context(|| format!("room {room}, check #{i}"))?;
            if room == "nope:1" {
                ensure!(
                    message.contains("unknown room kind `nope`"),
                    "#{i}: {message}"
                );
            } else {
                ensure!(
                    message.contains("is not a room id"),
                    "{room} #{i}: {message}"
                );
            }
        }
    }

    // Unknown routes: JSON 404, with or without a key; a known path with another method: 405.
    for path in [
        "/api/v1/whatever",
        "/api/v1/rooms/task:acme.1",
        "/api/v1/publish/extra",
    ] {
        let with_key = client.get(api.server.url(path)).bearer_auth(API_KEY);
        let message =
            expect_error(call(with_key).await?, 404, ErrorCode::ValidationFailed).context(path)?;
        ensure!(message.contains("openapi.json"), "{path}: {message}");
    }
    let (status, _) = call(client.post(api.url("/whatever"))).await?;
    ensure!(status == 404, "{status}");
    Ok(())
}

#[tokio::test]
async fn bodies_over_max_body_bytes_are_refused_with_413() -> Result<()> {
    let api = Api::start(&[("STREAMGATE_SERVER__MAX_BODY_BYTES", "2048")]).await?;
    let big = "x".repeat(4096);
    let cases = [
        (
            "/publish",
            json!({"room": "task:acme.1", "event": "e", "data": big}),
        ),
        (
            "/broadcast",
            json!({"rooms": ["task:acme.1"], "event": "e", "data": big}),
        ),
        ("/streams", json!({"room": "execution:acme.1", "pad": big})),
        (
            "/streams/execution:acme.1/updates",
            json!({"updates": [{"type": "token", "text": big}]}),
        ),
        (
            "/streams/execution:acme.1/close",
            json!({"status": "complete", "result": big}),
        ),
        ("/users/alice/disconnect", json!({"reason": big})),
    ];
    for (path, body) in &cases {
        let message = expect_error(
            api.post_json(path, body).await?,
            413,
            ErrorCode::FrameTooLarge,
        )
        .context(*path)?;
        ensure!(message.contains("max_body_bytes"), "{path}: {message}");
    }
    // Under the limit it is accepted; nothing of the refused ones was published.
    let small = api
        .ok(
            "/publish",
            &json!({"room": "task:acme.1", "event": "e", "data": "x".repeat(1024)}),
        )
        .await?;
    ensure!(small["offset"] == 1, "{small}");
    Ok(())
}

#[tokio::test]
async fn a_tenant_bound_key_reaches_only_its_tenant() -> Result<()> {
    let acme_key = "sgk_acme_backend_0123456789";
    let ops_key = "sgk_ops_0123456789";
    let scratch = Scratch::new("api-tenant-key")?;
    let config = scratch.file(
        "streamgate.toml",
        &format!(
            "[[api.keys]]\nname = \"acme-backend\"\nsha256 = \"{}\"\ntenant = \"acme\"\n\n\
             [[api.keys]]\nname = \"ops\"\nsha256 = \"{}\"\n",
            streamgate_auth::ApiKeys::hash(acme_key),
            streamgate_auth::ApiKeys::hash(ops_key),
        ),
    )?;
    let acme = Api::with(Server::start(Some(&config), &[]).await?, acme_key)?;

    // Configured keys replace the development key.
    let dev = acme.http.get(acme.url("/stats")).bearer_auth(API_KEY);
    expect_error(call(dev).await?, 401, ErrorCode::AuthFailed)?;

    let mut ws = acme.viewer("alice", &["conversation:acme.1"]).await?;
    let own = acme
        .ok(
            "/publish",
            &json!({"room": "conversation:acme.1", "event": "e", "data": 1}),
        )
        .await?;
    ensure!(own["offset"] == 1, "{own}");
    ensure!(next_publication(&mut ws).await?.offset == 1);

    let denied = |answer: (StatusCode, Value)| -> Result<String> {
        expect_error(answer, 403, ErrorCode::RoomAccessDenied)
    };
    for room in ["conversation:globex.1", "execution:run-1"] {
        let message = denied(
            acme.post_json("/publish", &json!({"room": room, "event": "e"}))
                .await?,
        )
        .context(room)?;
        ensure!(message.contains(room), "{message}");
        denied(acme.post_json("/streams", &json!({"room": room})).await?).context(room)?;
        denied(
            acme.post_json(
                &format!("/streams/{room}/updates"),
                &json!({"updates": [{"type": "token", "text": "t"}]}),
            )
            .await?,
        )
        .context(room)?;
        denied(
            acme.post_json(
                &format!("/streams/{room}/close"),
                &json!({"status": "complete"}),
            )
            .await?,
        )
        .context(room)?;
        denied(call(acme.get(&format!("/rooms/{room}/presence"))).await?).context(room)?;
        denied(call(acme.get(&format!("/rooms/{room}/history"))).await?).context(room)?;
    }
    // All or nothing: the acme room of a refused broadcast gets nothing.
    denied(
        acme.post_json(
            "/broadcast",
            &json!({"rooms": ["conversation:acme.1", "conversation:globex.1"], "event": "e"}),
        )
        .await?,
    )?;
    let history = acme.get_ok("/rooms/conversation:acme.1/history").await?;
    ensure!(offsets(&history) == [1], "{history}");

    expect_error(
        acme.post_json("/users/alice/disconnect", &json!({}))
            .await?,
        403,
        ErrorCode::PermissionDenied,
    )?;
    still_connected(&mut ws)
        .await
        .context("alice must still be connected")?;

    // A key without a tenant reaches every tenant, and may disconnect.
    let ops = Api::with(acme.server, ops_key)?;
    let other = ops
        .ok(
            "/publish",
            &json!({"room": "conversation:globex.1", "event": "e"}),
        )
        .await?;
    ensure!(other["offset"] == 1, "{other}");
    let closed = ops.ok("/users/alice/disconnect", &json!({})).await?;
    ensure!(closed["closed"] == 1, "{closed}");
    Ok(())
}

/// Checks that the connection is still open: a ping round trip.
async fn still_connected(ws: &mut Client) -> Result<()> {
    let id = ws
        .send(streamgate_protocol::Command::Ping(
            streamgate_protocol::Ping {},
        ))
        .await?;
    loop {
        match ws.recv().await? {
            ServerFrame::Pong(pong) if pong.id == Some(id) => return Ok(()),
            ServerFrame::Presence(_) => {}
            other => bail!("expected pong, got {other:?}"),
        }
    }
}

/// Every `$ref` in `value` that does not resolve inside `doc`.
fn dangling_refs(doc: &Value, value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                if key == "$ref" {
                    let target = v.as_str().unwrap_or_default();
                    let pointer = target.strip_prefix('#').unwrap_or(target);
                    if doc.pointer(pointer).is_none() {
                        out.push(target.to_owned());
                    }
                } else {
                    dangling_refs(doc, v, out);
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| dangling_refs(doc, v, out)),
        _ => {}
    }
}

#[tokio::test]
async fn openapi_document_lists_exactly_the_served_routes() -> Result<()> {
    let api = Api::start(&[]).await?;
    let client = &api.http;

    // Public: no key needed.
    let response = client.get(api.url("/openapi.json")).send().await?;
    ensure!(response.status() == 200, "{}", response.status());
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    ensure!(content_type == "application/json", "{content_type}");
    let doc: Value = response.json().await?;
    ensure!(
        doc["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1.")),
        "{}",
        doc["openapi"]
    );
    ensure!(
        doc["info"]["title"].is_string() && doc["info"]["version"] == "1",
        "{}",
        doc["info"]
    );
    let schemes = &doc["components"]["securitySchemes"];
    ensure!(schemes["bearer"]["scheme"] == "bearer", "{schemes}");
    ensure!(
        schemes["api_key"]["in"] == "header" && schemes["api_key"]["name"] == "X-API-Key",
        "{schemes}"
    );

    let mut dangling = Vec::new();
    dangling_refs(&doc, &doc, &mut dangling);
    ensure!(dangling.is_empty(), "unresolved $ref: {dangling:?}");

    let methods = [
        "get", "put", "post", "delete", "options", "head", "patch", "trace",
    ];
    let paths = doc["paths"].as_object().context("paths")?;
    let mut documented = BTreeSet::new();
    for (path, item) in paths {
        let item = item.as_object().context("path item")?;
        for (method, operation) in item.iter().filter(|(m, _)| methods.contains(&m.as_str())) {
            documented.insert((method.clone(), path.clone()));
            let what = format!("{method} {path}");
            ensure!(
                operation["security"]
                    .as_array()
                    .is_some_and(|s| s.len() == 2),
                "{what}: security"
            );
            let responses = operation["responses"].as_object().context("responses")?;
            for status in ["200", "401"] {
                ensure!(responses.contains_key(status), "{what}: no {status}");
            }
            for (status, response) in responses {
                ensure!(
                    response["content"]["application/json"]["schema"].is_object(),
                    "{what} {status}: no JSON schema"
                );
            }
            for param in operation["parameters"].as_array().into_iter().flatten() {
                if param["in"] == "path" {
                    let name = param["name"].as_str().unwrap_or_default();
                    ensure!(
                        path.contains(&format!("{{{name}}}")),
                        "{what}: parameter {name}"
                    );
                    ensure!(param["required"] == true, "{what}: {name} must be required");
                }
            }
        }
    }
    let expected: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|(m, p)| ((*m).to_owned(), (*p).to_owned()))
        .collect();
    ensure!(
        documented == expected,
        "documented but not expected: {:?}\nexpected but not documented: {:?}",
        documented.difference(&expected).collect::<Vec<_>>(),
        expected.difference(&documented).collect::<Vec<_>>()
    );

    // Every documented route answers, with the key and a valid body, 200; the other methods on
    // the same paths are not served.
    let requests = valid_requests();
    ensure!(requests.len() == ROUTES.len());
    for ((method, template), (req_method, path, body)) in ROUTES.iter().zip(&requests) {
        ensure!(method == req_method, "{template} vs {path}");
        let answer =
            call(request(client, &api.server, method, path, body.as_ref()).bearer_auth(API_KEY))
                .await?;
        expect_ok(answer).with_context(|| format!("{method} {path} (documented as {template})"))?;
        let other = if *method == "get" {
            client.post(api.server.url(path))
        } else {
            client.get(api.server.url(path))
        };
        let (status, _) = call(other.bearer_auth(API_KEY)).await?;
        ensure!(status == 405, "{path}: the other method answered {status}");
    }
    // The document itself is served, and public, but not part of the API it describes.
    ensure!(!paths.contains_key("/api/v1/openapi.json"));
    Ok(())
}

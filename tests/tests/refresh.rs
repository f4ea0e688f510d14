//! Credentials that expire on live connections, on every transport, in a real browser: the
//! server warns with `token.expiring`; a client that refreshes keeps its session past the old
//! expiry; one that does not is closed with `TOKEN_EXPIRED` and resumes after reconnecting with
//! a fresh token.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Result, ensure};
use serde_json::{Value, json};
use streamgate::{Gateway, Principal, RoomPolicy, StaticTokens};
use streamgate_e2e::{
    TestServer,
    browser::{Browser, prerequisites, test_pages},
};

/// Seconds until the short tokens expire.
const LIFETIME: u64 = 8;

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[tokio::test]
async fn expiring_credentials_are_refreshed_in_place_or_end_the_session_on_every_transport()
-> Result<()> {
    if !prerequisites("refresh", true)? {
        return Ok(());
    }
    let expires_at = now_secs() + LIFETIME;
    let users = ["ws-a", "ws-b", "sse-a", "sse-b", "io-a", "io-b"];
    let tokens = users.iter().fold(StaticTokens::new(), |t, user| {
        t.with_token(
            format!("short-{user}"),
            Principal::user(*user).with_expiry(expires_at),
        )
        .with_token(*user, Principal::user(*user))
    });
    let gateway = Gateway::builder()
        .authenticator(tokens)
        .room_kind(
            "execution",
            RoomPolicy::default().history(1_000, Duration::from_secs(600)),
        )
        .token_expiry(
            Duration::from_secs(LIFETIME + 5),
            Duration::from_millis(100),
        )
        .build()?;
    let server = TestServer::start_with(gateway, test_pages()?).await?;
    let base = format!("http://{}", server.addr);
    let ws = format!("ws://{}/ws", server.addr);
    let mut browser = Browser::open(&base).await?;
    let room = "execution:r1";

    for user in ["ws-a", "ws-b"] {
        browser
            .eval(&format!(
                "sg.wsOpen('{user}', '{ws}', 'short-{user}', '{room}', null)"
            ))
            .await?;
    }
    for user in ["sse-a", "sse-b"] {
        browser
            .eval(&format!(
                "sg.sseOpen('{user}', '{base}/sse?rooms={room}&token=short-{user}')"
            ))
            .await?;
    }
    for user in ["io-a", "io-b"] {
        browser
            .eval(&format!(
                "sg.sioOpen('{user}', '{base}', 'short-{user}', '{room}', null)"
            ))
            .await?;
    }
    server.gateway.publish(&room.parse()?, "before", 1)?;
    for user in users {
        let warning = browser
            .eval(&format!("sg.waitFrame('{user}', 'token.expiring')"))
            .await?;
        ensure!(warning["expires_at"] == expires_at, "{user}: {warning}");
        browser.eval(&format!("sg.waitFor('{user}', 1)")).await?;
    }

    // The `-a` clients refresh in place.
    for user in ["ws-a", "sse-a", "io-a"] {
        let refresh = json!({ "type": "refresh", "id": 7, "token": user });
        let answer = browser
            .eval(&format!(
                "sg.command('{user}', {refresh}, '{base}', '{user}')"
            ))
            .await?;
        match user {
            "sse-a" => ensure!(answer == 202, "{answer}"),
            "io-a" => ensure!(answer.get("error").is_none(), "{answer}"),
            _ => {}
        }
    }
    // A refresh for another user is refused and changes nothing.
    let other = json!({ "type": "refresh", "id": 8, "token": "ws-b" });
    browser
        .eval(&format!("sg.command('ws-a', {other}, '{base}', 'ws-a')"))
        .await?;
    let refused = browser.eval("sg.waitFrame('ws-a', 'error')").await?;
    ensure!(
        refused["id"] == 8 && refused["error"]["code"] == "AUTH_FAILED",
        "{refused}"
    );

    // Past the old expiry: the `-b` clients are told TOKEN_EXPIRED, the `-a` ones live on.
    for user in ["ws-b", "sse-b"] {
        let bye = browser
            .eval(&format!("sg.waitFrame('{user}', 'disconnect')"))
            .await?;
        ensure!(
            bye["code"] == "TOKEN_EXPIRED" && bye["reconnect"] == true,
            "{user}: {bye}"
        );
    }
    let bye = browser.eval("sg.waitFrame('io-b', 'disconnect')").await?;
    ensure!(bye["code"] == "TOKEN_EXPIRED", "io-b: {bye}");
    ensure!(now_secs() >= expires_at);
    server.gateway.publish(&room.parse()?, "after", 2)?;
    for user in ["ws-a", "sse-a", "io-a"] {
        browser.eval(&format!("sg.waitFor('{user}', 2)")).await?;
        let events = browser.eval(&format!("sg.events('{user}')")).await?;
        ensure!(events == json!(["before", "after"]), "{user}: {events}");
    }

    // The expired clients come back with fresh tokens and resume after what they had.
    browser
        .eval(&format!("sg.wsOpen('ws-b2', '{ws}', 'ws-b', '{room}', 1)"))
        .await?;
    let cursor = browser.eval("sg.lastEventId('sse-b')").await?;
    let cursor = cursor.as_str().unwrap_or_default().to_owned();
    browser
        .eval(&format!(
            "sg.sseOpen('sse-b2', '{base}/sse?rooms={room}&token=sse-b&last_event_id={cursor}')"
        ))
        .await?;
    browser
        .eval(&format!(
            "sg.sioOpen('io-b2', '{base}', 'io-b', '{room}', 1)"
        ))
        .await?;
    for user in ["ws-b2", "sse-b2", "io-b2"] {
        browser.eval(&format!("sg.waitFor('{user}', 1)")).await?;
        let events = browser.eval(&format!("sg.events('{user}')")).await?;
        ensure!(events == json!(["after"]), "{user}: {events}");
        let offsets = browser.eval(&format!("sg.offsets('{user}')")).await?;
        ensure!(offsets == Value::from(vec![2]), "{user}: {offsets}");
    }
    let expired = server.gateway.hub().metrics().snapshot();
    ensure!(
        expired.errors_for(streamgate::ErrorCode::TokenExpired) == 3,
        "{expired:?}"
    );
    browser.close().await
}

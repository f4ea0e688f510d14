//! Presence end to end over real WebSockets: two tabs of one user are one member, the presence
//! query, and typing that ends on its own as another client sees it.

use std::{collections::BTreeMap, time::Duration};

use anyhow::{Result, bail, ensure};
use streamgate::{Gateway, Principal, RoomId, RoomPolicy, StaticTokens};
use streamgate_e2e::{Client, TestServer};
use streamgate_protocol::{
    Command, PresenceDiff, PresenceEntry, PresenceQuery, PresenceSnapshot, PresenceState,
    Publication, ServerFrame, Typing, WireFormat,
};

async fn server() -> Result<TestServer> {
    let tokens = ["alice", "bob"]
        .into_iter()
        .fold(StaticTokens::new(), |t, user| {
            t.with_token(user, Principal::user(user))
        });
    let gateway = Gateway::builder()
        .authenticator(tokens)
        .room_kind("conversation", RoomPolicy::default().presence(true))
        .typing_timeout(Duration::from_millis(300))
        .build()?;
    TestServer::start(gateway).await
}

/// A client that keeps the member list of its room up to date from every presence diff it
/// reads, whatever it is waiting for.
struct Watcher {
    client: Client,
    members: BTreeMap<String, PresenceState>,
}

impl Watcher {
    /// Reads frames until `pick` accepts one, applying presence diffs on the way (each read
    /// fails after the harness's step timeout).
    async fn next<T>(&mut self, mut pick: impl FnMut(&ServerFrame) -> Option<T>) -> Result<T> {
        loop {
            let frame = self.client.recv().await?;
            if let ServerFrame::Presence(diff) = &frame {
                self.apply(diff);
            }
            if let Some(found) = pick(&frame) {
                return Ok(found);
            }
        }
    }

    fn apply(&mut self, diff: &PresenceDiff) {
        for e in diff.joined.iter().chain(&diff.updated) {
            self.members.insert(e.user.clone(), e.state);
        }
        for e in &diff.left {
            self.members.remove(&e.user);
        }
    }

    /// Reads until the member list is `expected`.
    async fn members_become(&mut self, expected: &[&str]) -> Result<()> {
        let expected: BTreeMap<String, PresenceState> = expected
            .iter()
            .map(|user| ((*user).to_owned(), PresenceState::Online))
            .collect();
        while self.members != expected {
            self.next(|f| matches!(f, ServerFrame::Presence(_)).then_some(()))
                .await?;
        }
        Ok(())
    }

    async fn query(&mut self, room: &RoomId) -> Result<PresenceSnapshot> {
        let id = self
            .client
            .send(Command::Presence(PresenceQuery { room: room.clone() }))
            .await?;
        let data = self
            .next(|f| match f {
                ServerFrame::Reply(r) if r.id == id => Some(r.data.clone()),
                _ => None,
            })
            .await?;
        Ok(data.decode()?)
    }

    async fn typing(&mut self) -> Result<(String, String)> {
        self.next(|f| match f {
            ServerFrame::Publication(p) => typing(p),
            _ => None,
        })
        .await
    }
}

fn typing(p: &Publication) -> Option<(String, String)> {
    if !p.event.starts_with("typing.") {
        return None;
    }
    let data: serde_json::Value = p.data.decode().ok()?;
    Some((p.event.clone(), data["user"].as_str()?.to_owned()))
}

#[tokio::test]
async fn two_tabs_are_one_member_and_typing_ends_on_its_own() -> Result<()> {
    let server = server().await?;
    let url = server.ws_url();
    let room: RoomId = "conversation:e2e".parse()?;
    let mut bob = Watcher {
        client: Client::connect(&url, "bob", WireFormat::Json).await?,
        members: BTreeMap::new(),
    };
    bob.client.join(&room, None).await?;
    let mut tab1 = Client::connect(&url, "alice", WireFormat::Json).await?;
    let mut tab2 = Client::connect(&url, "alice", WireFormat::Bincode).await?;
    tab1.join(&room, None).await?;
    tab2.join(&room, None).await?;

    bob.members_become(&["alice", "bob"]).await?;
    let snapshot = bob.query(&room).await?;
    ensure!(
        snapshot.users == [PresenceEntry::online("alice"), PresenceEntry::online("bob")],
        "two tabs, one member: {snapshot:?}"
    );

    // Closing one tab keeps alice online.
    tab1.kill();
    server.wait_sessions(2).await?;
    let snapshot = bob.query(&room).await?;
    ensure!(snapshot.users.len() == 2, "{snapshot:?}");

    // alice starts typing and never stops: bob sees the start, then the server's stop.
    tab2.send(Command::TypingStart(Typing { room: room.clone() }))
        .await?;
    let start = bob.typing().await?;
    ensure!(
        start == ("typing.start".to_owned(), "alice".to_owned()),
        "{start:?}"
    );
    let stop = bob.typing().await?;
    ensure!(
        stop == ("typing.stop".to_owned(), "alice".to_owned()),
        "{stop:?}"
    );
    ensure!(bob.query(&room).await?.typing.is_empty());
    ensure!(
        bob.members.contains_key("alice"),
        "no diff took alice away while a tab was open: {:?}",
        bob.members
    );

    // The last tab goes: alice is offline.
    tab2.kill();
    bob.members_become(&["bob"]).await?;
    let snapshot = bob.query(&room).await?;
    if snapshot.users != [PresenceEntry::online("bob")] {
        bail!("alice should be gone: {snapshot:?}");
    }
    Ok(())
}

//! The command line: `check-config` names the offending key and exits non-zero, prints the
//! effective configuration with secrets masked; `token` mints a JWT the server accepts;
//! `version`.

mod common;

use anyhow::{Result, ensure};
use common::{Scratch, Server, command};
use streamgate_protocol::WireFormat;

async fn check(config: &std::path::Path) -> Result<std::process::Output> {
    Ok(command(Some(config)).arg("check-config").output().await?)
}

#[tokio::test]
async fn check_config_names_the_offending_key_and_fails() -> Result<()> {
    let dir = Scratch::new("check-bad")?;
    let cases = [
        (
            "[websocket]\nenabled = true\nprot = 3000\n",
            "websocket.prot",
        ),
        (
            "[server]\nmax_connections = \"lots\"\n",
            "server.max_connections",
        ),
        (
            "[rooms.execution]\nhistory_ttl = \"soon\"\n",
            "rooms.execution.history_ttl",
        ),
        ("[sse]\npath = \"no-slash\"\n", "sse.path"),
        (
            "[auth.jwt]\nalgorithm = \"HS256\"\nkey = { pem_file = \"/nope.pem\" }\n",
            "auth.jwt",
        ),
        ("[server\nlisten = 1\n", "(file)"),
    ];
    for (i, (text, key)) in cases.iter().enumerate() {
        let path = dir.file(&format!("bad{i}.toml"), text)?;
        let out = check(&path).await?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        ensure!(!out.status.success(), "{text} was accepted");
        ensure!(
            out.status.code() == Some(2),
            "exit code {:?}",
            out.status.code()
        );
        ensure!(
            stderr
                .lines()
                .any(|l| l.trim_start().starts_with(&format!("{key}:"))),
            "expected an error naming {key} for\n{text}\ngot:\n{stderr}"
        );
    }

    // The environment is named when it is the culprit.
    let ok = dir.file("ok.toml", "")?;
    let out = command(Some(&ok))
        .arg("check-config")
        .env("STREAMGATE_QUEUES__SESSION_CAPACITY", "-5")
        .output()
        .await?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(!out.status.success());
    ensure!(
        stderr.contains("queues.session_capacity")
            && stderr.contains("STREAMGATE_QUEUES__SESSION_CAPACITY"),
        "{stderr}"
    );
    Ok(())
}

#[tokio::test]
async fn check_config_prints_the_effective_config_with_secrets_masked() -> Result<()> {
    let dir = Scratch::new("check-ok")?;
    let path = dir.file(
        "streamgate.toml",
        "[server]\nlisten = \"127.0.0.1:9000\"\n\
         [auth.jwt]\nalgorithm = \"HS256\"\nkey = { secret = \"super-secret-value-1234567890\" }\n\
         [[api.keys]]\nname = \"backend\"\nsha256 = \"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\"\n\
         [rooms.ticket]\nhistory_size = 50\nhistory_ttl = \"10m\"\n",
    )?;
    let out = check(&path).await?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    ensure!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    ensure!(
        !stdout.contains("super-secret-value"),
        "secret printed:\n{stdout}"
    );
    ensure!(!stdout.contains("ba7816bf"), "key hash printed:\n{stdout}");
    ensure!(stdout.contains("listen = \"127.0.0.1:9000\""), "{stdout}");
    ensure!(
        stdout.contains("[rooms.ticket]") && stdout.contains("history_ttl = \"10m\""),
        "{stdout}"
    );
    Ok(())
}

#[tokio::test]
async fn the_minimal_legacy_form_serves_on_its_port() -> Result<()> {
    // `[websocket] enabled = true, port = N` is all older deployments wrote.
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0")?;
        probe.local_addr()?.port()
    };
    let dir = Scratch::new("legacy")?;
    let path = dir.file(
        "streamgate.toml",
        &format!("[websocket]\nenabled = true\nport = {port}\n"),
    )?;
    let server = Server::spawn({
        let mut cmd = command(Some(&path));
        cmd.arg("serve");
        cmd
    })
    .await?;
    ensure!(server.addr.port() == port, "listening on {}", server.addr);
    let token = common::token("alice", Some("acme")).await?;
    let client =
        streamgate_e2e::Client::connect(&server.ws_url(), &token, WireFormat::Json).await?;
    let connected = client.connected;
    ensure!(
        connected.as_ref().and_then(|c| c.user.as_deref()) == Some("alice"),
        "{connected:?}"
    );
    Ok(())
}

#[tokio::test]
async fn token_mints_what_the_server_accepts_and_version_prints() -> Result<()> {
    let server = Server::start(None, &[]).await?;
    let token = common::token("bob", Some("acme")).await?;
    let mut client =
        streamgate_e2e::Client::connect(&server.ws_url(), &token, WireFormat::Json).await?;
    let joined = client.join(&"conversation:acme.7".parse()?, None).await?;
    ensure!(joined.room.as_str() == "conversation:acme.7");

    // A token signed with another secret is refused.
    let forged = {
        let mut cmd = command(None);
        cmd.env(
            "STREAMGATE_DEV_SECRET",
            "another-secret-entirely-0123456789",
        );
        let out = cmd.args(["token", "--user", "mallory"]).output().await?;
        String::from_utf8(out.stdout)?.trim().to_owned()
    };
    // Refused: the session never gets `connected`.
    let refused = streamgate_e2e::Client::connect(&server.ws_url(), &forged, WireFormat::Json)
        .await
        .is_err();
    ensure!(refused, "a forged token connected");

    // Without any signing key, `token` explains what is missing.
    let out = command(None)
        .env_remove("STREAMGATE_DEV_SECRET")
        .args(["token", "--user", "x"])
        .output()
        .await?;
    ensure!(!out.status.success());
    ensure!(String::from_utf8_lossy(&out.stderr).contains("STREAMGATE_DEV_SECRET"));

    let out = command(None).arg("version").output().await?;
    ensure!(out.status.success());
    ensure!(
        String::from_utf8(out.stdout)?.trim()
            == format!("streamgate-server {}", env!("CARGO_PKG_VERSION"))
    );
    Ok(())
}

//! Authentication and tenant isolation end to end, over real sockets: a table of tokens, each
//! presented to the WebSocket, SSE and (when Node is there) Socket.IO transports of a gateway
//! authenticating with `streamgate-auth`; each must be refused with its documented code, or
//! accepted as the expected user.

use std::{
    collections::HashMap,
    path::PathBuf,
    process::Stdio,
    time::{SystemTime, UNIX_EPOCH},
};

use anyhow::{Context, Result, anyhow, bail, ensure};
use eventsource_stream::Eventsource;
use futures_util::StreamExt;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use streamgate::{ErrorCode, Gateway};
use streamgate_auth::{
    ApiKey, ApiKeys, ClaimNames, JwtAlgorithm, JwtAuthenticator, JwtConfig, JwtKey, Strategies,
    TenantPolicy,
};
use streamgate_e2e::{
    Auth, Client, Event, STEP_TIMEOUT, TestServer,
    browser::{node_dir, prerequisites},
};
use streamgate_protocol::{Command, Join, RoomId, ServerFrame, WireFormat};
use tokio::io::{AsyncBufReadExt, BufReader};

const ISSUER: &str = "https://id.streamgate.test";
const AUDIENCE: &str = "streamgate-e2e";
const LIVE_KEY: &str = "sk_test_live_0123456789";
const REVOKED_KEY: &str = "sk_test_revoked_0123456789";

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/keys")
        .join(name)
}

fn read(name: &str) -> Result<Vec<u8>> {
    std::fs::read(fixture(name)).with_context(|| format!("fixture {name}"))
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// base64url without padding, for hand-made tokens.
fn b64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
        }
    }
    out
}

/// The key configurations a gateway can verify with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Setup {
    Hs256,
    Rs256,
    Es256,
    EdDsa,
    Jwks,
}

impl Setup {
    const ALL: [Self; 5] = [
        Self::Hs256,
        Self::Rs256,
        Self::Es256,
        Self::EdDsa,
        Self::Jwks,
    ];

    fn config(self) -> Result<JwtConfig> {
        let (algorithm, key) = match self {
            Self::Hs256 => (
                JwtAlgorithm::HS256,
                JwtKey::Secret(String::from_utf8(read("hmac_secret.txt")?)?),
            ),
            Self::Rs256 => (
                JwtAlgorithm::RS256,
                JwtKey::PemFile(fixture("rsa_public.pem")),
            ),
            Self::Es256 => (
                JwtAlgorithm::ES256,
                JwtKey::PemFile(fixture("ec_public.pem")),
            ),
            Self::EdDsa => (
                JwtAlgorithm::EdDSA,
                JwtKey::PemFile(fixture("ed25519_public.pem")),
            ),
            Self::Jwks => (JwtAlgorithm::RS256, JwtKey::JwksFile(fixture("jwks.json"))),
        };
        Ok(JwtConfig::new(algorithm, key)
            .issuer(ISSUER)
            .audience(AUDIENCE)
            .claims(ClaimNames::default().tenant("org_id")))
    }
}

/// The signing keys of the fixtures.
struct Signers {
    hs: EncodingKey,
    rsa: EncodingKey,
    rsa2: EncodingKey,
    ec: EncodingKey,
    ed: EncodingKey,
    /// The RSA *public* key as an HMAC secret: the key-confusion attack.
    confused: EncodingKey,
}

impl Signers {
    fn load() -> Result<Self> {
        Ok(Self {
            hs: EncodingKey::from_secret(&read("hmac_secret.txt")?),
            rsa: EncodingKey::from_rsa_pem(&read("rsa_private.pem")?)?,
            rsa2: EncodingKey::from_rsa_pem(&read("rsa2_private.pem")?)?,
            ec: EncodingKey::from_ec_pem(&read("ec_private.pem")?)?,
            ed: EncodingKey::from_ed_pem(&read("ed25519_private.pem")?)?,
            confused: EncodingKey::from_secret(&read("rsa_public.pem")?),
        })
    }
}

fn claims(user: &str) -> Value {
    let now = now();
    json!({
        "sub": user, "org_id": "acme", "iss": ISSUER, "aud": AUDIENCE,
        "iat": now, "exp": now + 600, "roles": ["agent"],
    })
}

fn with(mut claims: Value, changes: &Value) -> Value {
    if let (Some(c), Some(changes)) = (claims.as_object_mut(), changes.as_object()) {
        for (k, v) in changes {
            if v.is_null() {
                c.remove(k);
            } else {
                c.insert(k.clone(), v.clone());
            }
        }
    }
    claims
}

fn mint(alg: Algorithm, key: &EncodingKey, kid: Option<&str>, claims: &Value) -> Result<String> {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    Ok(jsonwebtoken::encode(&header, claims, key)?)
}

/// What a transport did with a credential: the connected user, or the refusal's code.
type Outcome = std::result::Result<String, String>;

struct Case {
    name: &'static str,
    setup: Setup,
    token: String,
    expect: Outcome,
}

fn refused(code: ErrorCode) -> Outcome {
    Err(code.as_str().to_owned())
}

fn cases() -> Result<Vec<Case>> {
    let s = Signers::load()?;
    let ok = claims("alice");
    let valid_rs = mint(Algorithm::RS256, &s.rsa, None, &ok)?;
    let tampered = {
        let parts: Vec<&str> = valid_rs.split('.').collect();
        ensure!(parts.len() == 3);
        let forged = with(ok.clone(), &json!({"sub": "admin"}));
        format!(
            "{}.{}.{}",
            parts[0],
            b64url(forged.to_string().as_bytes()),
            parts[2]
        )
    };
    let alg_none = format!(
        "{}.{}.",
        b64url(br#"{"alg":"none","typ":"JWT"}"#),
        b64url(ok.to_string().as_bytes())
    );
    let rs = |claims: &Value| mint(Algorithm::RS256, &s.rsa, None, claims);
    let auth_failed = refused(ErrorCode::AuthFailed);
    let case = |name, setup, token, expect| Case {
        name,
        setup,
        token,
        expect,
    };
    Ok(vec![
        // Accepted: one valid token per key type, and an API key.
        case(
            "HS256",
            Setup::Hs256,
            mint(Algorithm::HS256, &s.hs, None, &ok)?,
            Ok("alice".into()),
        ),
        case("RS256", Setup::Rs256, valid_rs, Ok("alice".into())),
        case(
            "ES256",
            Setup::Es256,
            mint(Algorithm::ES256, &s.ec, None, &ok)?,
            Ok("alice".into()),
        ),
        case(
            "EdDSA",
            Setup::EdDsa,
            mint(Algorithm::EdDSA, &s.ed, None, &ok)?,
            Ok("alice".into()),
        ),
        case(
            "JWKS kid rsa-2",
            Setup::Jwks,
            mint(Algorithm::RS256, &s.rsa2, Some("rsa-2"), &ok)?,
            Ok("alice".into()),
        ),
        case(
            "API key",
            Setup::Rs256,
            LIVE_KEY.into(),
            Ok("svc-live".into()),
        ),
        // Refused.
        case("alg none", Setup::Rs256, alg_none, auth_failed.clone()),
        case(
            "RS256 to HS256 key confusion",
            Setup::Rs256,
            mint(Algorithm::HS256, &s.confused, None, &ok)?,
            auth_failed.clone(),
        ),
        case(
            "expired",
            Setup::Rs256,
            rs(&with(ok.clone(), &json!({"exp": now() - 3600})))?,
            refused(ErrorCode::TokenExpired),
        ),
        case(
            "not yet valid",
            Setup::Rs256,
            rs(&with(ok.clone(), &json!({"nbf": now() + 3600})))?,
            auth_failed.clone(),
        ),
        case(
            "wrong issuer",
            Setup::Rs256,
            rs(&with(ok.clone(), &json!({"iss": "https://evil.test"})))?,
            auth_failed.clone(),
        ),
        case(
            "missing issuer",
            Setup::Rs256,
            rs(&with(ok.clone(), &json!({"iss": null})))?,
            auth_failed.clone(),
        ),
        case(
            "wrong audience",
            Setup::Rs256,
            rs(&with(ok.clone(), &json!({"aud": "another-service"})))?,
            auth_failed.clone(),
        ),
        case(
            "missing exp",
            Setup::Rs256,
            rs(&with(ok.clone(), &json!({"exp": null})))?,
            auth_failed.clone(),
        ),
        case(
            "bad signature",
            Setup::Rs256,
            mint(Algorithm::RS256, &s.rsa2, None, &ok)?,
            auth_failed.clone(),
        ),
        case(
            "tampered payload",
            Setup::Rs256,
            tampered,
            auth_failed.clone(),
        ),
        case(
            "missing sub",
            Setup::Rs256,
            rs(&with(ok.clone(), &json!({"sub": null})))?,
            auth_failed.clone(),
        ),
        case(
            "oversized",
            Setup::Rs256,
            rs(&with(ok.clone(), &json!({"pad": "x".repeat(9 * 1024)})))?,
            auth_failed.clone(),
        ),
        case(
            "unknown kid",
            Setup::Jwks,
            mint(Algorithm::RS256, &s.rsa, Some("rsa-9"), &ok)?,
            auth_failed.clone(),
        ),
        case(
            "no kid, several JWKS keys",
            Setup::Jwks,
            mint(Algorithm::RS256, &s.rsa, None, &ok)?,
            auth_failed.clone(),
        ),
        case(
            "JWKS key of another algorithm",
            Setup::Jwks,
            mint(Algorithm::ES256, &s.ec, Some("ec-1"), &ok)?,
            auth_failed.clone(),
        ),
        case(
            "revoked API key",
            Setup::Rs256,
            REVOKED_KEY.into(),
            auth_failed.clone(),
        ),
        case(
            "unknown API key",
            Setup::Rs256,
            "sk_test_nope".into(),
            auth_failed,
        ),
    ])
}

/// A gateway for `setup`: JWTs, then API keys; the tenant policy with a shared `lobby` kind.
async fn server(setup: Setup) -> Result<TestServer> {
    let keys = ApiKeys::from_keys([
        ApiKey::from_hash("svc-live", &ApiKeys::hash(LIVE_KEY))?
            .tenant("acme")
            .scopes(["publish"]),
        ApiKey::from_hash("svc-revoked", &ApiKeys::hash(REVOKED_KEY))?.tenant("acme"),
    ])?;
    let authenticator = Strategies::new()
        .jwt(JwtAuthenticator::new(setup.config()?)?)
        .api_keys(keys.clone());
    // Revoked at run time, through a clone of the table.
    ensure!(keys.revoke("svc-revoked"));
    let gateway = Gateway::builder()
        .authenticator(authenticator)
        .authorizer(TenantPolicy::new().shared_kind("lobby"))
        .build()?;
    TestServer::start(gateway).await
}

async fn servers() -> Result<HashMap<Setup, TestServer>> {
    let mut servers = HashMap::new();
    for setup in Setup::ALL {
        servers.insert(setup, server(setup).await?);
    }
    Ok(servers)
}

/// Connects over the raw WebSocket with the token in `Authorization`.
async fn over_websocket(server: &TestServer, token: &str) -> Result<Outcome> {
    let mut client = Client::open(&server.ws_url(), Auth::Header(token), WireFormat::Json).await?;
    match client.next_event().await? {
        Event::Frame(ServerFrame::Connected(c)) => Ok(Ok(c.user.unwrap_or_default())),
        Event::Frame(ServerFrame::Disconnect(d)) => {
            ensure!(d.reconnect == d.code.recoverable(), "{d:?}");
            match client.next_event().await? {
                Event::Closed(Some(close)) => {
                    ensure!(
                        u16::from(close.code) == d.code.number(),
                        "{close:?} after {d:?}"
                    );
                }
                other => bail!("expected the close frame after {d:?}, got {other:?}"),
            }
            Ok(Err(d.code.as_str().to_owned()))
        }
        other => bail!("expected connected or disconnect, got {other:?}"),
    }
}

/// Opens an SSE stream with the token as a bearer: 200 and `connected`, or 401 and JSON.
async fn over_sse(server: &TestServer, token: &str) -> Result<Outcome> {
    let request = reqwest::Client::new()
        .get(format!("http://{}/sse?rooms=lobby:main", server.addr))
        .bearer_auth(token);
    let response = tokio::time::timeout(STEP_TIMEOUT, request.send())
        .await
        .context("no response")??;
    let status = response.status().as_u16();
    if status != 200 {
        ensure!(status == 401, "status {status}");
        let body: Value = response.json().await?;
        let error = &body["error"];
        ensure!(error["message"].is_string(), "{body}");
        let code = error["code"].as_str().context("code")?.to_owned();
        let recoverable = code == ErrorCode::TokenExpired.as_str();
        ensure!(error["recoverable"] == recoverable, "{body}");
        return Ok(Err(code));
    }
    let mut events = response.bytes_stream().eventsource();
    let first = tokio::time::timeout(STEP_TIMEOUT, events.next())
        .await
        .context("no first event")?
        .context("stream ended")??;
    match WireFormat::Json.decode_server(first.data.as_bytes(), usize::MAX)? {
        ServerFrame::Connected(c) => Ok(Ok(c.user.unwrap_or_default())),
        other => bail!("expected connected, got {other:?}"),
    }
}

/// Connects the official socket.io-client (through `tests/node/socketio-client.mjs`).
async fn over_socketio(server: &TestServer, token: &str) -> Result<Outcome> {
    let mut child = tokio::process::Command::new("node")
        .arg(node_dir().join("socketio-client.mjs"))
        .arg(format!("http://{}/streaming", server.addr))
        .arg(token)
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("start node socketio-client.mjs")?;
    let stdout = child.stdout.take().context("stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let mut seen = Vec::new();
    let mut user = None;
    loop {
        let line = tokio::time::timeout(STEP_TIMEOUT, lines.next_line())
            .await
            .map_err(|_| anyhow!("no line from the client; it printed {seen:#?}"))??
            .ok_or_else(|| anyhow!("the client exited; it printed {seen:#?}"))?;
        let value: Value = serde_json::from_str(&line).with_context(|| line.clone())?;
        seen.push(value.clone());
        match value["kind"].as_str() {
            Some("event") if value["event"] == "gateway.connected" => {
                user = value["data"]["user"].as_str().map(str::to_owned);
            }
            Some("connect_error") => {
                let code = value["error"]["code"].as_str().context("code")?.to_owned();
                return Ok(Err(code));
            }
            Some("done") => {
                return user
                    .map(Ok)
                    .ok_or_else(|| anyhow!("connected without a user: {seen:#?}"));
            }
            Some("fatal") => bail!("client failed: {seen:#?}"),
            _ => {}
        }
    }
}

#[tokio::test]
async fn every_credential_is_accepted_or_refused_with_its_code_on_websocket_and_sse() -> Result<()>
{
    let servers = servers().await?;
    let mut failures = Vec::new();
    for case in cases()? {
        let server = servers.get(&case.setup).context("server")?;
        for (transport, outcome) in [
            ("websocket", over_websocket(server, &case.token).await),
            ("sse", over_sse(server, &case.token).await),
        ] {
            match outcome {
                Ok(got) if got == case.expect => {}
                Ok(got) => failures.push(format!(
                    "{transport} / {}: expected {:?}, got {got:?}",
                    case.name, case.expect
                )),
                Err(e) => failures.push(format!("{transport} / {}: {e:#}", case.name)),
            }
        }
    }
    ensure!(failures.is_empty(), "{failures:#?}");
    for server in servers.values() {
        server.wait_sessions(0).await?;
    }
    Ok(())
}

#[tokio::test]
async fn every_credential_is_accepted_or_refused_with_its_code_on_socketio() -> Result<()> {
    if !prerequisites("auth: socketio table", false)? {
        return Ok(());
    }
    let servers = servers().await?;
    let mut failures = Vec::new();
    for case in cases()? {
        let server = servers.get(&case.setup).context("server")?;
        match over_socketio(server, &case.token).await {
            Ok(got) if got == case.expect => {}
            Ok(got) => failures.push(format!(
                "socketio / {}: expected {:?}, got {got:?}",
                case.name, case.expect
            )),
            Err(e) => failures.push(format!("socketio / {}: {e:#}", case.name)),
        }
    }
    ensure!(failures.is_empty(), "{failures:#?}");
    Ok(())
}

fn room(id: &str) -> RoomId {
    id.parse().unwrap_or_else(|e| panic!("{id}: {e}"))
}

#[tokio::test]
async fn a_tenant_reaches_its_own_rooms_and_shared_ones_only() -> Result<()> {
    let server = server(Setup::Rs256).await?;
    let s = Signers::load()?;
    let acme = mint(Algorithm::RS256, &s.rsa, None, &claims("alice"))?;
    let globex = mint(
        Algorithm::RS256,
        &s.rsa,
        None,
        &with(claims("gina"), &json!({"org_id": "globex"})),
    )?;
    let mut alice = Client::connect(&server.ws_url(), &acme, WireFormat::Json).await?;
    let mut gina = Client::connect(&server.ws_url(), &globex, WireFormat::Json).await?;
    let own = room("conversation:acme.1");
    alice.join(&own, None).await?;
    gina.join(&room("lobby:main"), None).await?;
    let id = gina.send(Command::Join(Join::new(own.clone()))).await?;
    match gina.recv().await? {
        ServerFrame::Error(e) if e.id == Some(id) => {
            ensure!(e.error.code == ErrorCode::RoomAccessDenied, "{e:?}");
        }
        other => bail!("expected ROOM_ACCESS_DENIED, got {other:?}"),
    }
    // The refusal leaves the session open, and nothing of acme's room reaches gina.
    server.gateway.publish(&own, "secret", "for acme")?;
    server
        .gateway
        .publish(&room("lobby:main"), "notice", "for all")?;
    ensure!(alice.publication().await?.event == "secret");
    ensure!(gina.publication().await?.event == "notice");

    // Over SSE, a foreign room in `rooms` is answered in the stream, the session stays open.
    let response = reqwest::Client::new()
        .get(format!(
            "http://{}/sse?rooms=conversation:acme.1,lobby:main",
            server.addr
        ))
        .bearer_auth(&globex)
        .send()
        .await?;
    ensure!(response.status() == 200);
    let mut events = response.bytes_stream().eventsource();
    let mut frames = Vec::new();
    while frames.len() < 3 {
        let event = tokio::time::timeout(STEP_TIMEOUT, events.next())
            .await
            .context("no event")?
            .context("stream ended")??;
        frames.push(WireFormat::Json.decode_server(event.data.as_bytes(), usize::MAX)?);
    }
    ensure!(
        matches!(&frames[1], ServerFrame::Error(e) if e.error.code == ErrorCode::RoomAccessDenied),
        "{frames:?}"
    );
    ensure!(
        matches!(&frames[2], ServerFrame::Joined(j) if j.room.as_str() == "lobby:main"),
        "{frames:?}"
    );
    Ok(())
}

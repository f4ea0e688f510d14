//! The chat service of [`streamgate_examples::chat`] on 127.0.0.1:8080: conversation rooms per
//! organisation, send / edit / delete with ownership checks, typing, read receipts, delivery
//! status.
//!
//! ```text
//! cargo run --example chat
//! ```
//!
//! Without `STREAMGATE_JWT_SECRET` it admits three development tokens: `alice-token` and
//! `bob-token` (organisation `acme`) and `mallory-token` (organisation `globex`). With it, it
//! takes HS256 JWTs signed with that secret, whose `sub` is the user and whose `tenant` claim
//! (required) is the organisation. Try it with websocat in two terminals, typing the lines
//! after connecting:
//!
//! ```text
//! websocat -H 'Authorization: Bearer alice-token' ws://127.0.0.1:8080/ws
//! {"type":"join","id":1,"room":"conversation:acme.1"}
//! {"type":"command","id":2,"name":"message.send","room":"conversation:acme.1","data":{"text":"hi bob"}}
//!
//! websocat -H 'Authorization: Bearer bob-token' ws://127.0.0.1:8080/ws
//! {"type":"join","id":1,"room":"conversation:acme.1"}
//! {"type":"command","id":2,"name":"message.delivered","room":"conversation:acme.1","data":{"message_id":1}}
//! {"type":"command","id":3,"name":"message.edit","room":"conversation:acme.1","data":{"message_id":1,"text":"mine now"}}
//! ```
//!
//! Bob's edit is refused with `PERMISSION_DENIED`; alice sees `message.status` (delivered).
//! Set `STREAMGATE_ADDR` to listen elsewhere.

use std::net::SocketAddr;

use anyhow::Context;
use streamgate::{
    Gateway, JwtAlgorithm, JwtAuthenticator, JwtConfig, JwtKey, Principal, StaticTokens,
};
use streamgate_examples::chat::Chat;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter("info,streamgate=debug")
        .init();
    let addr: SocketAddr = std::env::var("STREAMGATE_ADDR")
        .unwrap_or_else(|_| "127.0.0.1:8080".into())
        .parse()
        .context("STREAMGATE_ADDR")?;

    let builder = Gateway::builder();
    let builder = match std::env::var("STREAMGATE_JWT_SECRET") {
        Ok(secret) => {
            let config =
                JwtConfig::new(JwtAlgorithm::HS256, JwtKey::Secret(secret)).require_tenant(true);
            println!("authenticating HS256 JWTs (claims: sub, tenant)");
            builder.authenticator(JwtAuthenticator::new(config).context("JWT settings")?)
        }
        Err(_) => {
            println!("development tokens: alice-token, bob-token (acme), mallory-token (globex)");
            builder.authenticator(
                [("alice", "acme"), ("bob", "acme"), ("mallory", "globex")]
                    .into_iter()
                    .fold(StaticTokens::new(), |tokens, (user, org)| {
                        tokens.with_token(
                            format!("{user}-token"),
                            Principal::user(user).with_tenant(org),
                        )
                    }),
            )
        }
    };
    let chat = Chat::build(builder)?;

    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("bind {addr}"))?;
    println!("chat listening on ws://{addr}/ws, http://{addr}/sse and socket.io {addr}/streaming");
    println!(r#"join with {{"type":"join","room":"conversation:acme.1"}}"#);

    axum::serve(
        listener,
        chat.router()
            .into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await?;
    chat.gateway().shutdown();
    Ok(())
}

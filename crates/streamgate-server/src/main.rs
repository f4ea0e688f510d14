//! The `streamgate-server` command: `serve` (the default), `check-config`, `token`, `version`.

use std::{path::PathBuf, process::ExitCode, time::Duration};

use clap::{Parser, Subcommand};
use streamgate_server::{
    app::{DEV_SECRET_ENV, DevSecrets},
    config::{LogFormat, ServerConfig},
    token::{Minter, TokenSpec},
    units::Span,
};

/// The standalone streamgate gateway.
#[derive(Debug, Parser)]
#[command(name = "streamgate-server", version, about)]
struct Cli {
    /// The TOML configuration file (none: development defaults).
    #[arg(long, short, global = true, env = "STREAMGATE_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve (the default).
    Serve {
        /// Listen here instead of `server.listen`.
        #[arg(long)]
        listen: Option<String>,
        /// Log format instead of `server.log_format`.
        #[arg(long, value_enum)]
        log_format: Option<LogFormat>,
    },
    /// Validate the configuration and print it, with secrets masked.
    CheckConfig,
    /// Mint a development JWT, signed with the configured HMAC secret or STREAMGATE_DEV_SECRET.
    Token {
        /// The user id (`sub`).
        #[arg(long)]
        user: String,
        /// The tenant (organisation).
        #[arg(long)]
        tenant: Option<String>,
        /// A role (repeatable).
        #[arg(long = "role")]
        roles: Vec<String>,
        /// A permission (repeatable).
        #[arg(long = "permission")]
        permissions: Vec<String>,
        /// Limit the token to a room or `kind:prefix*` pattern (repeatable).
        #[arg(long = "room")]
        rooms: Vec<String>,
        /// Lifetime (`30m`, `1h`, `7d`).
        #[arg(long, default_value = "1h")]
        ttl: Span,
    },
    /// Print the version.
    Version,
}

fn load(cli: &Cli, overrides: Vec<(String, String)>) -> Result<ServerConfig, ExitCode> {
    let env = std::env::vars().chain(overrides);
    ServerConfig::load(cli.config.as_deref(), env).map_err(|errors| {
        let source = cli
            .config
            .as_ref()
            .map_or_else(|| "the environment".to_owned(), |p| p.display().to_string());
        eprintln!("error: invalid configuration in {source}:");
        for e in &errors.0 {
            eprintln!("  {e}");
        }
        ExitCode::from(2)
    })
}

fn init_logs(config: &ServerConfig) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(&config.server.log_level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match config.server.log_format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

fn token(config: &ServerConfig, spec: &TokenSpec, ttl: Duration) -> Result<(), ExitCode> {
    let minter = match &config.auth.jwt {
        Some(jwt) => Minter::from_config(jwt),
        None => std::env::var(DEV_SECRET_ENV)
            .ok()
            .filter(|s| !s.is_empty())
            .map(|s| Minter::hs256(s.as_bytes())),
    };
    let Some(minter) = minter else {
        eprintln!(
            "error: no signing key: configure auth.jwt with an HS256/HS384/HS512 secret, or set \
             {DEV_SECRET_ENV} to the secret the development server printed"
        );
        return Err(ExitCode::from(2));
    };
    match minter.mint(spec, ttl) {
        Ok(jwt) => {
            println!("{jwt}");
            Ok(())
        }
        Err(e) => {
            eprintln!("error: cannot sign the token: {e}");
            Err(ExitCode::FAILURE)
        }
    }
}

fn run(cli: &Cli) -> Result<(), ExitCode> {
    match cli.command {
        Some(Command::Version) => {
            println!("streamgate-server {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
        Some(Command::CheckConfig) => {
            let config = load(cli, Vec::new())?;
            print!("{}", config.to_masked_toml());
            eprintln!("configuration ok");
            Ok(())
        }
        Some(Command::Token {
            ref user,
            ref tenant,
            ref roles,
            ref permissions,
            ref rooms,
            ttl,
        }) => {
            let config = load(cli, Vec::new())?;
            let spec = TokenSpec {
                user: user.clone(),
                tenant: tenant.clone(),
                roles: roles.clone(),
                permissions: permissions.clone(),
                rooms: rooms.clone(),
                kind: None,
            };
            token(&config, &spec, ttl.0)
        }
        Some(Command::Serve {
            ref listen,
            log_format,
        }) => serve(cli, listen.clone(), log_format),
        None => serve(cli, None, None),
    }
}

fn serve(cli: &Cli, listen: Option<String>, log_format: Option<LogFormat>) -> Result<(), ExitCode> {
    let mut overrides = Vec::new();
    if let Some(listen) = listen {
        overrides.push(("STREAMGATE_SERVER__LISTEN".to_owned(), listen));
    }
    if let Some(format) = log_format {
        let name = match format {
            LogFormat::Json => "json",
            LogFormat::Text => "text",
        };
        overrides.push(("STREAMGATE_SERVER__LOG_FORMAT".to_owned(), name.to_owned()));
    }
    let config = load(cli, overrides)?;
    init_logs(&config);
    let secrets = DevSecrets::for_config(&config);
    let runtime = tokio::runtime::Runtime::new().map_err(|e| {
        eprintln!("error: cannot start the runtime: {e}");
        ExitCode::FAILURE
    })?;
    runtime
        .block_on(streamgate_server::serve::serve(config, secrets))
        .map_err(|e| {
            tracing::error!(error = format!("{e:#}"), "the server failed");
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        })
}

fn main() -> ExitCode {
    match run(&Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(code) => code,
    }
}

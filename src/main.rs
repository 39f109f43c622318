use clap::{Parser, Subcommand};
use memspace::config::{DatabaseArgs, ServeArgs};
use memspace::{db::Db, directory as service, Config};
use tracing_subscriber::EnvFilter;

/// mimalloc instead of glibc's malloc: a GraphQL request allocates many small objects across
/// threads, and glibc's allocator was a fifth of the server's CPU profile under load.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Memspace: a GraphQL server for shared memory spaces.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

// Parsed once at start-up: the size of the serve arguments does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Run the server (migrates the database first).
    Serve(ServeArgs),
    /// Apply database migrations and exit.
    Migrate(DatabaseArgs),
    /// Print the GraphQL schema (SDL) on stdout.
    ExportSchema,
    /// Administration from the shell (works while a server runs on the same database).
    #[command(subcommand)]
    Admin(Admin),
    /// Export a space's memories as JSONL from a running server.
    Export(memspace::transfer::ExportArgs),
    /// Import JSONL into a space of a running server (resumable; re-run to finish).
    Import(memspace::transfer::ImportArgs),
    /// Serve MCP on stdin/stdout, forwarding to a running server's `/mcp` (for agents that
    /// launch a command).
    Mcp(memspace::mcp::stdio::McpArgs),
}

#[derive(Subcommand)]
enum Admin {
    /// Create an organization with an admin user; prints its admin API key.
    CreateOrg {
        #[arg(long)]
        handle: String,
        #[arg(long)]
        name: String,
        #[command(flatten)]
        db: DatabaseArgs,
    },
    /// Create a fresh admin API key for an organization; prints it.
    CreateKey {
        #[arg(long)]
        org: String,
        #[command(flatten)]
        db: DatabaseArgs,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("MEMSPACE_LOG").unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Serve(args) => serve(args).await,
        Command::Migrate(args) => Db::connect(&args.database_url, 1).await?.migrate().await,
        Command::Export(args) => memspace::transfer::export(args).await,
        Command::Import(args) => memspace::transfer::import(args).await,
        Command::Mcp(args) => memspace::mcp::stdio::run(args).await,
        Command::ExportSchema => {
            print!("{}", memspace::schema::sdl());
            Ok(())
        }
        Command::Admin(admin) => {
            let key = match admin {
                Admin::CreateOrg { handle, name, db } => {
                    let db = open(&db).await?;
                    service::create_organization(&db, &handle, &name).await
                }
                Admin::CreateKey { org, db } => {
                    let db = open(&db).await?;
                    service::create_admin_key(&db, &org).await
                }
            }
            .map_err(|e| anyhow::anyhow!(e.message()))?;
            eprintln!("organization: {}", key.organization.handle);
            eprintln!("admin api key: {}", key.secret);
            Ok(())
        }
    }
}

async fn open(args: &DatabaseArgs) -> anyhow::Result<Db> {
    let db = Db::connect(&args.database_url, 1).await?;
    db.migrate().await?;
    Ok(db)
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let app = memspace::build(&Config::try_from(&args).map_err(anyhow::Error::msg)?).await?;
    if let Some(key) = &app.generated_admin_key {
        eprintln!("admin api key: {key}");
        eprintln!(
            "(shown once: store it now; `memspace admin create-key --org default` makes another)"
        );
    }
    let listener = tokio::net::TcpListener::bind(args.bind).await?;
    tracing::info!("listening on http://{}/graphql", listener.local_addr()?);
    memspace::http::serve(
        listener,
        app.router,
        app.limits.header_read_timeout,
        memspace::http::shutdown_signal(),
    )
    .await;
    if let Err(e) = app.recall.flush().await {
        tracing::warn!(error = ?e, "recall counters not flushed at shutdown");
    }
    if let Some(keyword) = app.index.keyword() {
        if let Err(e) = keyword.commit_async().await {
            tracing::warn!(error = %e, "keyword index not committed at shutdown (it catches up from the database)");
        }
    }
    if let Err(e) = app.index.save().await {
        tracing::warn!(error = %e, "vector index not saved at shutdown (it reloads from the database)");
    }
    app.db.write.close_by_ref().await.ok();
    Ok(())
}

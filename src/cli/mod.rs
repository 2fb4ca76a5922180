//! The command-line edge: clap structs that only parse, a dispatcher that calls
//! plain command functions, and rendering of results and errors.

pub mod commands;
pub mod context;
pub mod error;
mod examples;
pub mod logging;
pub mod output;
pub mod settings;

use crate::cli::context::RepoContext;
use crate::cli::error::CliError;
use crate::cli::output::{emit, emit_error, Render};
use crate::cli::settings::{GlobalFlags, Settings};
use crate::domain::bucket_name::validate_bucket_name;
use crate::domain::config::{normalize_prefix, Backend, ConfigError, S3Config};
use crate::infrastructure::datastore::{resolve_region, Direction, MigrateOptions};
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

/// swamp: runtime data for automation repos, stored on a filesystem or in S3.
#[derive(Debug, Parser)]
#[command(name = "swamp", version, about, after_help = examples::TOP)]
pub struct Cli {
    /// Print one JSON document on stdout instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    /// The repo directory (default: the current directory).
    #[arg(long, global = true, value_name = "DIR")]
    pub repo_dir: Option<PathBuf>,
    /// Use this datastore ('filesystem:/abs/path' or 's3:bucket[/prefix]'); SWAMP_DATASTORE wins over it.
    #[arg(long, global = true, value_name = "SPEC")]
    pub datastore: Option<String>,
    /// Seconds to wait for the datastore lock before giving up (exit 75).
    #[arg(long, global = true, value_name = "SECONDS", default_value_t = 60.0)]
    pub lock_timeout: f64,
    /// No normal output: only answers (data get/list/versions), warnings and errors.
    #[arg(long, short, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// More detail on stderr (-v: swamp's steps and the AWS SDK's warnings; -vv: debug).
    #[arg(long, short, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Manage the repository.
    #[command(subcommand)]
    Repo(RepoCommand),
    /// Read and write versioned data items.
    #[command(subcommand, after_help = examples::DATA)]
    Data(DataCommand),
    /// Run a command inside the datastore lock (SWAMP_DATASTORE_DIR names the datastore).
    #[command(after_help = examples::EXEC)]
    Exec {
        /// Run it on a private read-only copy instead: no lock on S3, nothing pushed.
        #[arg(long, conflicts_with = "scope")]
        read_only: bool,
        /// Lock only PATH (a datastore path such as data/app or outputs/report;
        /// repeatable): the command runs on a private copy, and only its
        /// changes under these paths are kept; changing anything else fails.
        #[arg(long, value_name = "PATH")]
        scope: Vec<String>,
        /// The command and its arguments (after `--`).
        #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<String>,
    },
    /// Inspect and configure the datastore.
    #[command(subcommand, after_help = examples::DATASTORE)]
    Datastore(DatastoreCommand),
    /// Print a shell completion script for bash, zsh, fish, elvish or powershell.
    #[command(after_help = examples::COMPLETION)]
    Completion {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

/// `swamp repo ...`
#[derive(Debug, Subcommand)]
pub enum RepoCommand {
    /// Create .swamp.yaml and .swamp/ (safe to rerun: keeps the repoId and data).
    #[command(after_help = examples::REPO_INIT)]
    Init,
}

/// `swamp data ...`
#[derive(Debug, Subcommand)]
pub enum DataCommand {
    /// Store a new version of a data item.
    #[command(after_help = examples::DATA_PUT)]
    Put {
        /// Item name, e.g. app/config.
        name: String,
        /// File to read ('-' for standard input).
        #[arg(long, short, default_value = "-")]
        file: String,
    },
    /// Print a data item (the newest version by default).
    #[command(after_help = examples::DATA_GET)]
    Get {
        /// Item name.
        name: String,
        /// Version to print.
        #[arg(long)]
        version: Option<u64>,
    },
    /// List data items with their newest version.
    #[command(after_help = examples::DATA_LIST)]
    List,
    /// List every version of a data item.
    #[command(after_help = examples::DATA_VERSIONS)]
    Versions {
        /// Item name.
        name: String,
    },
    /// Remove a data item with all its versions.
    #[command(after_help = examples::DATA_RM)]
    Rm {
        /// Item name.
        name: String,
    },
}

/// `swamp datastore ...`
#[derive(Debug, Subcommand)]
pub enum DatastoreCommand {
    /// Show the datastore in use, its health and its lock.
    #[command(after_help = examples::STATUS)]
    Status,
    /// Move the datastore to another backend.
    #[command(subcommand, after_help = examples::SETUP)]
    Setup(SetupCommand),
    /// Inspect or break the datastore lock.
    #[command(subcommand, after_help = examples::LOCK)]
    Lock(LockCommand),
    /// Rebuild an S3 datastore's index from the bucket and re-upload what
    /// this cache holds of missing or damaged files (never deletes an object).
    #[command(after_help = examples::REPAIR)]
    Repair {
        /// For files no copy here can restore, index what the bucket holds
        /// (its content, or no entry when the object is gone) instead of
        /// leaving them listed for a machine that has them.
        #[arg(long)]
        accept_bucket: bool,
    },
    /// Pull and push an S3 datastore's cache now (both by default).
    #[command(after_help = examples::SYNC)]
    Sync {
        /// Only download remote changes.
        #[arg(long, conflicts_with = "push")]
        pull: bool,
        /// Only upload local changes.
        #[arg(long)]
        push: bool,
        /// Concurrent transfers (default 64, or SWAMP_SYNC_CONCURRENCY).
        #[arg(long, value_parser = clap::value_parser!(u16).range(1..=1024))]
        concurrency: Option<u16>,
    },
}

/// `swamp datastore setup ...`
#[derive(Debug, Subcommand)]
pub enum SetupCommand {
    /// Use a directory (e.g. a shared mount) as the datastore.
    #[command(after_help = examples::SETUP_FILESYSTEM)]
    Filesystem(SetupFilesystemArgs),
    /// Use an S3 bucket (with a local cache) as the datastore.
    #[command(after_help = examples::SETUP_S3)]
    S3(SetupS3Args),
}

/// Arguments of `setup s3`.
#[derive(Debug, Args)]
pub struct SetupS3Args {
    /// Bucket name.
    #[arg(long)]
    pub bucket: String,
    /// Key prefix inside the bucket.
    #[arg(long, default_value = "")]
    pub prefix: String,
    /// Region, recorded in .swamp.yaml (default: AWS_REGION or the profile's;
    /// without --endpoint-url also the instance metadata service; else us-east-1).
    #[arg(long)]
    pub region: Option<String>,
    /// Endpoint URL of an S3-compatible store (path-style addressing).
    #[arg(long)]
    pub endpoint_url: Option<String>,
    /// Only switch .swamp.yaml; do not move data.
    #[arg(long)]
    pub skip_migration: bool,
    /// Combine with a datastore the target already holds (files at the same path must be identical).
    #[arg(long, conflicts_with = "skip_migration")]
    pub merge: bool,
}

/// Arguments of `setup filesystem`.
#[derive(Debug, Args)]
pub struct SetupFilesystemArgs {
    /// Target directory.
    #[arg(long)]
    pub path: PathBuf,
    /// Only switch .swamp.yaml; do not move data.
    #[arg(long)]
    pub skip_migration: bool,
    /// Combine with a datastore the target already holds (files at the same path must be identical).
    #[arg(long, conflicts_with = "skip_migration")]
    pub merge: bool,
}

/// `swamp datastore lock ...`
#[derive(Debug, Subcommand)]
pub enum LockCommand {
    /// Show who holds the lock.
    #[command(after_help = examples::LOCK_STATUS)]
    Status,
    /// Remove the lock whoever holds it (breakglass).
    #[command(after_help = examples::LOCK_RELEASE)]
    Release {
        /// Required: releasing a live lock lets two commands write at once.
        #[arg(long)]
        force: bool,
        /// Release the scoped locks on these paths (and above or under them)
        /// instead of the whole-datastore lock.
        #[arg(long, value_name = "PATH")]
        scope: Vec<String>,
    },
}

/// Parses the arguments, runs the command and returns the exit code.
pub async fn run() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            // A group without its subcommand (`swamp data`) prints its usage
            // on stderr and fails: it did nothing.
            let informational =
                matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion);
            if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
                eprint!("{}", e.render().ansi());
                return 2;
            }
            if !informational && std::env::args().any(|a| a == "--json") {
                // One line: clap's message and the items it lists, without usage hints.
                let text = e.to_string();
                let line = text
                    .lines()
                    .map(str::trim)
                    .take_while(|l| {
                        !l.starts_with("Usage:") && !l.starts_with("For more information")
                    })
                    .filter(|l| !l.is_empty())
                    .collect::<Vec<_>>()
                    .join(" ");
                let line = line.trim_start_matches("error: ");
                emit_error(true, &CliError::Validation(line.to_string()));
                return 2;
            }
            let _ = e.print();
            return if informational { 0 } else { 2 };
        }
    };
    let json = cli.json;
    let verbosity = logging::Verbosity::from_flags(cli.quiet, cli.verbose);
    logging::init(verbosity);
    if let Command::Completion { shell } = cli.command {
        let mut command = <Cli as clap::CommandFactory>::command();
        clap_complete::generate(shell, &mut command, "swamp", &mut std::io::stdout());
        return 0;
    }
    let quiet = verbosity == logging::Verbosity::Quiet;
    match dispatch(cli).await {
        Ok((result, code)) => match emit(json, quiet, result.as_ref()) {
            Ok(()) => code,
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => code,
            Err(e) => {
                eprintln!("error: writing output: {e}");
                1
            }
        },
        Err(error) => {
            emit_error(json, &error);
            error.exit_code()
        }
    }
}

fn settings(cli: &Cli) -> Result<Settings, CliError> {
    Settings::resolve(
        GlobalFlags {
            json: cli.json,
            quiet: cli.quiet,
            repo_dir: cli.repo_dir.as_deref(),
            datastore: cli.datastore.as_deref(),
            lock_timeout: cli.lock_timeout,
        },
        |name| std::env::var(name).ok(),
    )
}

type Outcome = (Box<dyn Render>, i32);

fn ok<R: Render + 'static>(r: R) -> Result<Outcome, CliError> {
    Ok((Box::new(r), 0))
}

async fn dispatch(cli: Cli) -> Result<Outcome, CliError> {
    use commands::*;
    let settings = settings(&cli)?;
    if let Command::Repo(RepoCommand::Init) = cli.command {
        return ok(repo::init(&settings.repo_dir)?);
    }
    let ctx = RepoContext::open(&settings).await?;
    match cli.command {
        Command::Repo(RepoCommand::Init) | Command::Completion { .. } => {
            unreachable!("handled above")
        }
        Command::Data(cmd) => match cmd {
            DataCommand::Put { name, file } => {
                let source = if file == "-" {
                    data::PutSource::Stdin
                } else {
                    data::PutSource::File(std::path::Path::new(&file))
                };
                ok(data::put(&ctx, &name, source).await?)
            }
            DataCommand::Get { name, version } => ok(data::get(&ctx, &name, version).await?),
            DataCommand::List => ok(data::list(&ctx).await?),
            DataCommand::Versions { name } => ok(data::versions(&ctx, &name).await?),
            DataCommand::Rm { name } => ok(data::remove(&ctx, &name).await?),
        },
        Command::Exec {
            read_only,
            scope,
            command,
        } => {
            let mode = match (read_only, scope.is_empty()) {
                (true, _) => exec::Mode::ReadOnly,
                (false, true) => exec::Mode::Guarded,
                (false, false) => exec::Mode::Scoped(scope),
            };
            let result = exec::exec(&ctx, &command, mode).await?;
            let code = result.exit_code;
            Ok((Box::new(result), code))
        }
        Command::Datastore(cmd) => match cmd {
            DatastoreCommand::Status => {
                // Unhealthy: the report, then exit 1.
                let result = status::status(&ctx).await?;
                let code = result.exit_code();
                Ok((Box::new(result), code))
            }
            DatastoreCommand::Setup(SetupCommand::Filesystem(args)) => {
                let target = Backend::Filesystem {
                    path: setup::absolute(&args.path)?,
                };
                let options = MigrateOptions {
                    skip_migration: args.skip_migration,
                    merge: args.merge,
                };
                ok(setup::setup(&ctx, target, options).await?)
            }
            DatastoreCommand::Setup(SetupCommand::S3(args)) => {
                validate_bucket_name(&args.bucket).map_err(ConfigError::from)?;
                let prefix = normalize_prefix(&args.prefix)
                    .map_err(|e| CliError::Validation(format!("invalid --prefix: {e}")))?;
                // Recorded in .swamp.yaml, so no later command looks it up.
                let region = match args.region {
                    Some(region) => region,
                    None => {
                        let endpoint = args
                            .endpoint_url
                            .as_ref()
                            .or(settings.aws_endpoint.as_ref());
                        resolve_region(endpoint.map(String::as_str)).await
                    }
                };
                let target = Backend::S3(S3Config {
                    bucket: args.bucket,
                    prefix,
                    region: Some(region),
                    endpoint: args.endpoint_url,
                });
                let options = MigrateOptions {
                    skip_migration: args.skip_migration,
                    merge: args.merge,
                };
                ok(setup::setup(&ctx, target, options).await?)
            }
            DatastoreCommand::Sync {
                pull,
                push,
                concurrency,
            } => {
                let direction = match (pull, push) {
                    (true, _) => Direction::Pull,
                    (_, true) => Direction::Push,
                    _ => Direction::Both,
                };
                ok(sync::sync(&ctx, direction, concurrency.map(usize::from)).await?)
            }
            DatastoreCommand::Repair { accept_bucket } => {
                // Files left unrepaired are a failure to act on: exit 1,
                // after the report that names them and the next step.
                let result = repair::repair(&ctx, accept_bucket).await?;
                let code = if result.left_unresolved() { 1 } else { 0 };
                Ok((Box::new(result), code))
            }
            DatastoreCommand::Lock(LockCommand::Status) => ok(lock::status(&ctx).await?),
            DatastoreCommand::Lock(LockCommand::Release { force, scope }) => {
                ok(lock::release(&ctx, force, &scope).await?)
            }
        },
    }
}

//! Command-line definitions (clap) and dispatch.

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "talaria",
    version,
    about = "A self-hosted AI agent for Linux servers"
)]
pub struct Cli {
    /// Log more to stderr (also: TALARIA_LOG=debug).
    #[arg(short, long, global = true)]
    pub verbose: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Talk to the agent: an interactive session, or one prompt with -q.
    Chat(ChatArgs),
    /// List, show, search, export and delete stored sessions.
    #[command(subcommand)]
    Sessions(SessionsCommand),
    /// Show and edit $TALARIA_HOME/config.toml.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Check configuration, model endpoint, store and kernel features.
    Doctor(EndpointArgs),
    /// Run commands in the sandbox a policy describes.
    #[command(subcommand)]
    Sandbox(SandboxCommand),
    /// List, check and explain sandbox policies.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Run the four units (gateway with its HTTP API, agent, scheduler, executor) in this
    /// process on a private bus, for a laptop, a container or CI.
    Serve(crate::serve::ServeArgs),
    /// Validate skills and manage the skill registry: versions, audit log, quarantine.
    #[command(subcommand)]
    Skills(crate::skills_cmd::SkillsCommand),
    /// Show memory files (per person) and approve or reject parked memory writes.
    #[command(subcommand)]
    Memory(crate::memory_cmd::MemoryCommand),
    /// Approve or reject context files (AGENTS.md) found in someone else's workspace.
    #[command(subcommand)]
    Context(crate::context_cmd::ContextCommand),
    /// Import skills, memory, SOUL.md, model settings and cron jobs from Hermes or OpenClaw.
    #[command(subcommand)]
    Migrate(crate::migrate_cmd::MigrateCommand),
    /// Grade skills by use: mark unused ones stale, archive stale ones (never deletes).
    #[command(subcommand)]
    Curator(crate::skills_cmd::CuratorCommand),
    /// Tokens and cost over recent sessions: per model, per task, per day.
    Insights(crate::insights_cmd::InsightsArgs),
    /// List models, set one for the latest session (or --global), or pick from a numbered list.
    Model(crate::model_cmd::ModelArgs),
}

#[derive(Debug, Subcommand)]
pub enum SandboxCommand {
    /// Run one command confined by a policy and exit with its status (124 on timeout, 125 when
    /// the sandbox could not be set up, 126/127 when the command cannot run or is not found).
    Run {
        /// The policy profile (see talaria policy list).
        #[arg(long, value_name = "NAME")]
        policy: String,
        /// The workspace (`${workspace}`); default: the current directory.
        #[arg(long, value_name = "DIR")]
        workspace: Option<std::path::PathBuf>,
        /// Kill the command after this many seconds (never longer than the policy allows).
        #[arg(long, value_name = "SECS")]
        timeout: Option<u64>,
        /// The command and its arguments.
        #[arg(
            required = true,
            trailing_var_arg = true,
            allow_hyphen_values = true,
            value_name = "CMD"
        )]
        command: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Every profile, where it comes from and what it allows.
    List,
    /// Load every policy (and PATH, a file or directory, if given) and report every problem.
    Check { path: Option<std::path::PathBuf> },
    /// Which profile a tool's command runs under, the approval decision, and the resolved
    /// sandbox, as JSON.
    Explain {
        #[arg(long)]
        tool: String,
        /// The workspace (`${workspace}`); default: the current directory.
        #[arg(long, value_name = "DIR")]
        workspace: Option<std::path::PathBuf>,
        #[arg(
            required = true,
            trailing_var_arg = true,
            allow_hyphen_values = true,
            value_name = "CMD"
        )]
        command: Vec<String>,
    },
}

/// Where the model is. Flags win over TALARIA_* variables, which win over OPENAI_* variables,
/// which win over the config file.
pub use talaria_agent::endpoint::EndpointArgs;

#[derive(Debug, Args)]
pub struct ChatArgs {
    #[command(flatten)]
    pub endpoint: EndpointArgs,
    /// Run one prompt, print only the final answer on stdout and exit.
    #[arg(short = 'q', long = "query", value_name = "PROMPT")]
    pub query: Option<String>,
    /// Reopen the session with this id.
    #[arg(long, value_name = "ID", conflicts_with = "continue_last")]
    pub resume: Option<String>,
    /// Reopen the most recent session.
    #[arg(short = 'c', long = "continue")]
    pub continue_last: bool,
}

#[derive(Debug, Subcommand)]
pub enum SessionsCommand {
    /// Most recent sessions first.
    List {
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// Print a session's transcript.
    Show { id: String },
    /// Find the owner's sessions by their messages: ranked sessions, one snippet each (the CLI
    /// sessions and the owner's own bus sessions, never another person's); with --around, the
    /// messages around one message. Exits 1 with no output when nothing matches.
    Search {
        #[arg(required_unless_present = "around")]
        query: Option<String>,
        #[arg(long, default_value_t = 10)]
        limit: usize,
        /// Scroll: show the messages around message SEQ of session SESSION (the `#SEQ` of a hit).
        #[arg(long, value_name = "SESSION:SEQ", conflicts_with = "query")]
        around: Option<String>,
        /// Messages shown on each side with --around.
        #[arg(long, default_value_t = 5, requires = "around")]
        window: usize,
    },
    /// Export a session.
    Export {
        id: String,
        #[arg(long, value_enum, default_value_t = ExportFormat::Jsonl)]
        format: ExportFormat,
        /// Write to this file instead of stdout.
        #[arg(long, short)]
        output: Option<std::path::PathBuf>,
    },
    /// Delete a session and its messages.
    Delete { id: String },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ExportFormat {
    /// One JSON message per line.
    Jsonl,
    /// A readable transcript.
    Markdown,
    /// Hermes' trajectory format: {"conversations":[{"from":…,"value":…}]}.
    Sharegpt,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print the effective configuration (defaults filled in, secrets redacted).
    Show,
    /// Print one key's effective value.
    Get { key: String },
    /// Set a key in the config file (validated before it is written).
    Set { key: String, value: String },
    /// Print the config file's path.
    Path,
    /// List every key with what it does.
    Keys,
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Chat(args) => crate::chat::run(args, cli.verbose).await,
        Command::Sessions(cmd) => crate::sessions_cmd::run(cmd).await,
        Command::Config(cmd) => crate::config_cmd::run(cmd),
        Command::Doctor(args) => crate::doctor::run(args).await,
        Command::Sandbox(cmd) => crate::sandbox_cmd::run(cmd).await,
        Command::Policy(cmd) => crate::policy_cmd::run(cmd),
        Command::Serve(args) => crate::serve::run(args).await,
        Command::Skills(cmd) => crate::skills_cmd::run(cmd).await,
        Command::Memory(cmd) => crate::memory_cmd::run(cmd).await,
        Command::Context(cmd) => crate::context_cmd::run(cmd),
        Command::Migrate(cmd) => crate::migrate_cmd::run(cmd).await,
        Command::Curator(cmd) => crate::skills_cmd::curator(cmd).await,
        Command::Insights(args) => crate::insights_cmd::run(args).await,
        Command::Model(args) => crate::model_cmd::run(args).await,
    }
}

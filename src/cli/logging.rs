//! Diagnostics on stderr: `tracing` events filtered by `-v`/`-q` (or
//! `SWAMP_LOG`, which wins), coloured only on a terminal and never under
//! `NO_COLOR`.
//!
//! Model: by default only swamp's own warnings show; the AWS SDK's (e.g.
//! its IMDS region probe's multi-line WARN blocks) appear from `-v` on, so a
//! user's terminal carries swamp's lines and nothing else. `-q` keeps only
//! errors.

use std::io::IsTerminal;

/// How much to tell, from the flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verbosity {
    /// `-q`: errors only.
    Quiet,
    /// Swamp's warnings.
    Normal,
    /// `-v`, `-vv`, ...
    Verbose(u8),
}

impl Verbosity {
    /// From `-q` and the number of `-v`s.
    pub fn from_flags(quiet: bool, verbose: u8) -> Self {
        match (quiet, verbose) {
            (true, _) => Verbosity::Quiet,
            (false, 0) => Verbosity::Normal,
            (false, n) => Verbosity::Verbose(n),
        }
    }

    /// The `tracing` filter directives.
    fn directives(self) -> &'static str {
        match self {
            Verbosity::Quiet => "swamp_datastore=error",
            Verbosity::Normal => "swamp_datastore=warn",
            Verbosity::Verbose(1) => "swamp_datastore=info,warn",
            Verbosity::Verbose(2) => "swamp_datastore=debug,info",
            Verbosity::Verbose(_) => "debug",
        }
    }
}

/// Whether stderr may carry colour: a terminal, and `NO_COLOR` unset or
/// empty (<https://no-color.org>).
pub fn colour_on_stderr(no_color: Option<&str>) -> bool {
    no_color.is_none_or(str::is_empty) && std::io::stderr().is_terminal()
}

/// Installs the subscriber; `SWAMP_LOG`, when set, replaces the filter.
pub fn init(verbosity: Verbosity) {
    let filter = std::env::var("SWAMP_LOG")
        .ok()
        .and_then(|spec| tracing_subscriber::EnvFilter::try_new(spec).ok())
        .unwrap_or_else(|| tracing_subscriber::EnvFilter::new(verbosity.directives()));
    let colour = colour_on_stderr(std::env::var("NO_COLOR").ok().as_deref());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour)
        .with_writer(std::io::stderr)
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_pick_the_filter() {
        let cases = [
            (true, 2, "swamp_datastore=error"),
            (false, 0, "swamp_datastore=warn"),
            (false, 1, "swamp_datastore=info,warn"),
            (false, 2, "swamp_datastore=debug,info"),
            (false, 5, "debug"),
        ];
        for (quiet, verbose, want) in cases {
            assert_eq!(Verbosity::from_flags(quiet, verbose).directives(), want);
        }
    }

    #[test]
    fn no_color_set_and_not_empty_turns_colour_off() {
        assert!(!colour_on_stderr(Some("1")));
    }
}

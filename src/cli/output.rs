//! Rendering: every command result renders as text or as one JSON document on
//! stdout; errors render as one line on stderr, or as `{"error": ...}` on
//! stdout with `--json`.

use crate::cli::error::CliError;
use serde_json::{json, Value};
use std::io::{self, Write};

/// A command result that can be shown to a person or a program.
pub trait Render {
    /// The JSON document.
    fn to_json(&self) -> Value;
    /// The human rendering.
    fn write_text(&self, out: &mut dyn Write) -> io::Result<()>;
    /// Whether the text is what was asked for (`data get`'s content, a
    /// listing), kept under `-q`, rather than a report of what was done.
    fn is_answer(&self) -> bool {
        false
    }
}

/// Writes `result` to stdout in the chosen format; under `quiet`, text
/// that only reports what was done is left out (JSON never is: it was
/// asked for).
pub fn emit(json: bool, quiet: bool, result: &dyn Render) -> io::Result<()> {
    let stdout = io::stdout();
    let mut out = stdout.lock();
    if json {
        serde_json::to_writer_pretty(&mut out, &result.to_json())?;
        writeln!(out)?;
    } else if !quiet || result.is_answer() {
        result.write_text(&mut out)?;
    }
    out.flush()
}

/// Reports `error` in the chosen format.
pub fn emit_error(json: bool, error: &CliError) {
    let message = error.to_string();
    if json {
        let doc = json!({"error": {"code": error.code(), "message": message}});
        println!("{doc}");
    } else {
        eprintln!("error: {message}");
    }
}

/// Renders a byte count for people.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_bytes_scales() {
        assert_eq!(human_bytes(12), "12 B");
        assert_eq!(human_bytes(2048), "2.0 KiB");
        assert_eq!(human_bytes(3 * 1024 * 1024), "3.0 MiB");
    }
}

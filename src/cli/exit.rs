//! How a subcommand ends: an [`Exit`] status once it ran, or a [`Refusal`] before anything
//! was changed. Every subcommand's `run` returns `Result<Exit, Refusal>`, and `cli::main`
//! turns it into the exit status and prints a refusal, once.

use super::output::Format;
use std::fmt::Display;
use std::path::Path;

/// How a subcommand that ran ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Everything done (exit 0).
    Done,
    /// The pass ran but some entries failed or it was cancelled, or a comparison found a
    /// regression (exit 1).
    Partial,
}

impl Exit {
    /// The process exit status.
    pub fn code(self) -> u8 {
        match self {
            Exit::Done => 0,
            Exit::Partial => 1,
        }
    }

    /// [`Exit::Done`] when `done`, else [`Exit::Partial`].
    pub fn done_if(done: bool) -> Exit {
        if done {
            Exit::Done
        } else {
            Exit::Partial
        }
    }
}

/// Refused before anything was changed: bad arguments, bad input or a bad root (exit 2).
///
/// Printed once, by `cli::main`, as one sentence on stderr (`volsec: ...`); when the
/// subcommand was asked for `--output json`, also as a document on stdout, so a machine
/// reading stdout learns why nothing was done: `{"outcome": "refused", "error": "..."}`
/// (`docs/schemas/refusal.json`). `cli::main` knows every subcommand's format, so no
/// refusal path can forget it.
#[derive(Debug)]
#[must_use]
pub struct Refusal {
    /// The sentence; `None` when the subcommand's own output already said why.
    message: Option<String>,
    /// Also the JSON document on stdout.
    json: bool,
}

impl Refusal {
    /// The process exit status of a refusal.
    pub const CODE: u8 = 2;

    /// A refusal saying `cause`.
    pub fn new(cause: impl Display) -> Refusal {
        Refusal {
            message: Some(cause.to_string()),
            json: false,
        }
    }

    /// A refusal naming the path it is about: `PATH: CAUSE`.
    pub fn at(path: &Path, cause: impl Display) -> Refusal {
        Refusal::new(format_args!(
            "{}: {cause}",
            volsec_core::display::path(path)
        ))
    }

    /// Exit 2 with nothing more to print: the subcommand's output already said why (the
    /// agent's refusal in a prepare result, a saved benchmark run without rows).
    pub fn reported() -> Refusal {
        Refusal {
            message: None,
            json: false,
        }
    }

    /// Printed for `format`: with JSON, also the refusal document on stdout.
    pub fn output(mut self, format: Format) -> Refusal {
        self.json = format == Format::Json;
        self
    }

    /// Prints the refusal: the document on stdout (JSON, when the subcommand's `format` or
    /// [`Refusal::output`] says so), the sentence on stderr.
    pub fn print(&self, format: Format) {
        let Some(message) = &self.message else {
            return;
        };
        if self.json || format == Format::Json {
            let doc = serde_json::json!({ "outcome": "refused", "error": message });
            println!("{}", serde_json::to_string_pretty(&doc).expect("JSON"));
        }
        eprintln!("volsec: {message}");
    }
}

/// Any error a subcommand meets before it changes anything refuses with its message, so
/// `?` refuses.
impl<E: Display> From<E> for Refusal {
    fn from(cause: E) -> Refusal {
        Refusal::new(cause)
    }
}

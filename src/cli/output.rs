//! Output shared by the subcommands: logging, the progress bar, and the pass summary.

use std::io::Write;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Mutex;
use std::time::Duration;
use volsec_core::prepare::{EntryChange, Listing, Report};
use volsec_core::walk::Progress;

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// A short summary for people.
    Text,
    /// One JSON document on stdout, for machines.
    Json,
}

/// Logs go to stderr through `tracing`; `RUST_LOG` selects them (default: warnings).
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Runs `work` while a progress bar on stderr shows inodes done and the rate. The bar is
/// hidden when stderr is not a terminal or when `quiet`, and then nothing else runs.
pub fn with_progress<T>(progress: &Progress, quiet: bool, work: impl FnOnce() -> T) -> T {
    let bar = if quiet {
        indicatif::ProgressBar::hidden()
    } else {
        indicatif::ProgressBar::new_spinner()
    };
    if bar.is_hidden() {
        return work();
    }
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} {elapsed_precise} {human_pos} inodes  {msg}",
        )
        .expect("valid template"),
    );
    // The ticker waits on this channel between redraws, so the end of the work wakes it
    // at once instead of after its last sleep.
    let (done, finished) = mpsc::channel::<()>();
    let bar = &bar;
    std::thread::scope(|s| {
        s.spawn(move || {
            let started = std::time::Instant::now();
            loop {
                let t = progress.tally();
                bar.set_position(t.visited);
                let rate = t.visited as f64 / started.elapsed().as_secs_f64().max(1e-3);
                let failed = match t.failed {
                    0 => String::new(),
                    n => format!(", {n} failed"),
                };
                let threads = match progress.concurrency() {
                    0 => String::new(),
                    n => format!(", {n} threads"),
                };
                bar.set_message(format!("{rate:.0} inodes/s{threads}{failed}"));
                if finished.recv_timeout(TICK) != Err(RecvTimeoutError::Timeout) {
                    break;
                }
            }
            bar.finish_and_clear();
        });
        let out = work();
        drop(done);
        out
    })
}

/// How often the progress bar is redrawn.
const TICK: Duration = Duration::from_millis(100);

/// Prints a pass report as text or JSON.
pub fn print_report(report: &Report, format: Format) {
    match format {
        Format::Json => println!(
            "{}",
            serde_json::to_string_pretty(report).expect("a report serializes")
        ),
        Format::Text => print!("{}", report.summary()),
    }
}

/// Prints a pass report on stderr, as text or JSON: with `--list`, stdout is the list's.
pub fn eprint_report(report: &Report, format: Format) {
    match format {
        Format::Json => eprintln!(
            "{}",
            serde_json::to_string_pretty(report).expect("a report serializes")
        ),
        Format::Text => eprint!("{}", report.summary()),
    }
}

/// Where listed entries are written: stdout, buffered, shared by the walker threads.
static LIST_OUT: Mutex<Option<std::io::BufWriter<std::io::Stdout>>> = Mutex::new(None);

/// The sink `--dry-run --list` hands each entry to: one line `CHANGES<TAB>PATH` with the
/// path escaped (`-0`: NUL-terminated, the path as its bytes are), or one JSON object per
/// line. Records are written whole, one at a time.
pub fn listing(format: Format, null: bool) -> Listing {
    *LIST_OUT.lock().expect("lock") = Some(std::io::BufWriter::new(std::io::stdout()));
    Listing::new(move |change: EntryChange| {
        let mut record = Vec::new();
        match format {
            Format::Json => {
                serde_json::to_writer(&mut record, &change).expect("an entry serializes");
                record.push(b'\n');
            }
            Format::Text => {
                use std::os::unix::ffi::OsStrExt;
                let _ = write!(record, "{change}\t");
                let name = change.path.as_os_str().as_bytes();
                if null {
                    record.extend_from_slice(name);
                    record.push(0);
                } else {
                    let _ = writeln!(record, "{}", volsec_core::display::whole_path(&change.path));
                }
            }
        }
        if let Some(out) = LIST_OUT.lock().expect("lock").as_mut() {
            // A closed stdout (`| head`) ends the process with SIGPIPE, as for any output.
            let _ = out.write_all(&record);
        }
    })
}

/// Writes out what the listing buffered.
pub fn flush_listing() {
    if let Some(out) = LIST_OUT.lock().expect("lock").as_mut() {
        let _ = out.flush();
    }
}

//! The parts of the Markdown reports both levels share: the run, the
//! machine, the daemons' command lines and the notes.

use std::fmt::Write as _;

use crate::config::Mode;
use crate::results::Meta;

/// The "Run" line (when, the command line, mode, repetitions, time) and the
/// "Machine" line, each ending in a newline.
pub fn run_and_machine(m: &Meta) -> String {
    let mode = match m.mode {
        Mode::Quick => "quick",
        Mode::Full => "full",
    };
    format!(
        "- **Run**: {} — `{}` ({mode} mode, {} repetitions, {:.0} s)\n{}\n",
        m.date,
        m.command_line,
        m.reps,
        m.seconds,
        m.machine.markdown_line()
    )
}

/// A "Daemon" line per daemon command line.
pub fn daemons(m: &Meta) -> String {
    let mut s = String::new();
    for cl in &m.daemon_command_lines {
        let _ = writeln!(s, "- **Daemon**: `{cl}`");
    }
    s
}

/// A "Note" line per note.
pub fn notes(m: &Meta) -> String {
    let mut s = String::new();
    for n in &m.notes {
        let _ = writeln!(s, "- **Note**: {n}");
    }
    s
}

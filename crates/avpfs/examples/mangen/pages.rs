//! The man pages, made from the command-line definition ([`avpfs::cli::Cli`])
//! so that every flag and subcommand is documented as it is parsed. Shared by
//! the `mangen` example and the packaging test.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use clap::CommandFactory;
use clap_mangen::roff::{bold, italic, roman, Roff};
use clap_mangen::Man;

/// The command as the pages describe it: the parsed `Cli`, without clap's
/// `help` subcommand (every page already lists `--help`).
pub fn command() -> clap::Command {
    let mut cmd = avpfs::cli::Cli::command().disable_help_subcommand(true);
    cmd.build();
    cmd
}

/// Writes `avpfs.1` and a page per visible subcommand (`avpfs-NAME.1`,
/// `avpfs-NAME-SUB.1`, ...) into `dir`; returns the files written, the
/// main page first.
pub fn write_pages(dir: &Path) -> io::Result<Vec<PathBuf>> {
    fs::create_dir_all(dir)?;
    let cmd = command();
    // Subcommands have no version of their own: every page names avpfs's.
    let source = format!("avpfs {}", cmd.get_version().unwrap_or_default());
    let main = Man::new(cmd.clone()).source(&source);
    let main_path = dir.join(main.get_filename());
    fs::write(&main_path, main_page(main)?)?;
    let mut pages = vec![main_path];
    let mut todo: Vec<clap::Command> = visible_subcommands(&cmd).cloned().collect();
    while let Some(sub) = todo.pop() {
        todo.extend(visible_subcommands(&sub).cloned());
        pages.push(Man::new(sub).source(&source).generate_to(dir)?);
    }
    pages[1..].sort();
    Ok(pages)
}

/// The subcommands that get a page (as clap_mangen lists them).
pub fn visible_subcommands(cmd: &clap::Command) -> impl Iterator<Item = &clap::Command> {
    cmd.get_subcommands().filter(|s| !s.is_hide_set())
}

/// `avpfs.1`: clap_mangen's page with ENVIRONMENT, FILES and SEE ALSO put
/// before its VERSION section (the order of man-pages(7)).
fn main_page(man: Man) -> io::Result<Vec<u8>> {
    let mut page = Vec::new();
    man.render(&mut page)?;
    let page = String::from_utf8(page).map_err(io::Error::other)?;
    let extra = extra_sections().to_roff();
    let at = page.find("\n.SH VERSION").map_or(page.len(), |i| i + 1);
    let mut out = String::with_capacity(page.len() + extra.len());
    out.push_str(&page[..at]);
    out.push_str(&extra);
    out.push_str(&page[at..]);
    Ok(out.into_bytes())
}

/// What a reader of the page needs beyond the flags.
fn extra_sections() -> Roff {
    let mut r = Roff::new();
    r.control("SH", ["ENVIRONMENT"]);
    r.control("TP", []);
    r.text([bold("AVPFS_LOG")]);
    r.text([roman(
        "Log filter in env_logger syntax (e.g. warn, or avpfs=debug) when logging to stderr; overrides --log-level and -d.",
    )]);
    r.control("SH", ["FILES"]);
    r.control("TP", []);
    r.text([italic("/etc/avpfs/NAME.toml")]);
    r.text([
        roman("The daemon configuration (--config) that the systemd unit "),
        bold("avpfs@NAME.service"),
        roman(" serves; check it with "),
        bold("avpfs check-config"),
        roman("."),
    ]);
    r.control("TP", []);
    r.text([italic("/etc/avpfs/NAME.env")]);
    r.text([
        roman("SHARED_DIR and AVPFS_OPTS for "),
        bold("avpfs-vhost@NAME.service"),
        roman(", started by "),
        bold("avpfs-vhost@NAME.socket"),
        roman(" (/run/avpfs/NAME.sock) with the listening socket as --fd 3."),
    ]);
    r.control("SH", ["SEE ALSO"]);
    r.text([
        bold("avpfs-check-config"),
        roman("(1), "),
        bold("systemd.exec"),
        roman("(5), "),
        bold("systemd.socket"),
        roman("(5), "),
        bold("qemu-system-x86_64"),
        roman("(1), "),
        bold("virtiofsd"),
        roman("(1)"),
    ]);
    r
}

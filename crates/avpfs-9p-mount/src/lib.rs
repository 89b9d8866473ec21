//! The guest side of 9P2000.L over vsock.
//!
//! Linux's 9p client has no vsock transport, but it has `trans=fd`: the
//! client speaks 9P on descriptors that a process hands it at mount time.
//! This helper opens an `AF_VSOCK` stream to the host (CID 2 unless `-c`
//! says otherwise) on PORT and calls mount(2) with
//! `trans=fd,rfdno=N,wfdno=N` plus the caller's options. The kernel takes
//! its own reference to the socket, so the helper exits once the mount is
//! made; the connection lives as long as the mount.
//!
//! Defaults, each replaced by an option of the same name given with `-o`:
//! `version=9p2000.L` (the dialect avpfs serves), `msize=65536` (the
//! largest the 6.1 kernel accepts for `trans=fd`), `uname=root` (without it
//! the kernel names the user `nobody`) and `access=user`. Generic mount
//! options (`ro`, `nosuid`, `nodev`, `noexec`, ...) become mount flags; the
//! rest go to the 9p client as they are. `trans`, `rfdno` and `wfdno` are
//! the helper's own and are refused.
//!
//! The library holds the argument parsing and the option string (pure, unit
//! tested); [`sys`] holds the two system calls.

use std::ffi::{CString, OsString};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

pub mod sys;

/// One line of usage, printed with every usage error and for `-h`.
pub const USAGE: &str = "usage: avpfs-9p-mount [-c CID] PORT MOUNTPOINT [-o OPTION[,OPTION]...]...";

/// The file-system type given to mount(2).
const FSTYPE: &str = "9p";

/// Options the helper sets when the caller does not: (name, full option).
const DEFAULTS: [(&str, &str); 4] =
    [("version", "version=9p2000.L"), ("msize", "msize=65536"), ("uname", "uname=root"), ("access", "access=user")];

/// Options that describe the transport the helper sets up itself.
const RESERVED: [&str; 3] = ["trans", "rfdno", "wfdno"];

/// Generic mount options that are flags of mount(2), not 9p data.
const FLAGS: [(&str, libc::c_ulong); 10] = [
    ("ro", libc::MS_RDONLY),
    ("rw", 0),
    ("nosuid", libc::MS_NOSUID),
    ("nodev", libc::MS_NODEV),
    ("noexec", libc::MS_NOEXEC),
    ("sync", libc::MS_SYNCHRONOUS),
    ("dirsync", libc::MS_DIRSYNC),
    ("noatime", libc::MS_NOATIME),
    ("nodiratime", libc::MS_NODIRATIME),
    ("relatime", libc::MS_RELATIME),
];

/// What went wrong; each kind has its own exit status.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The command line is wrong (exit status 2).
    #[error("{0}\n{USAGE}")]
    Usage(String),
    /// The vsock connection failed (exit status 1).
    #[error("cannot connect to vsock {cid}:{port}: {source}")]
    Connect {
        /// The context id connected to.
        cid: u32,
        /// The port connected to.
        port: u32,
        /// The error of socket(2) or connect(2).
        source: std::io::Error,
    },
    /// mount(2) failed (exit status 1).
    #[error("cannot mount on {}: {source}", .mountpoint.display())]
    Mount {
        /// The mount point.
        mountpoint: PathBuf,
        /// The error of mount(2).
        source: std::io::Error,
    },
}

impl Error {
    /// The process exit status for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Usage(_) => 2,
            Error::Connect { .. } | Error::Mount { .. } => 1,
        }
    }
}

/// A parsed command line.
#[derive(Debug, PartialEq, Eq)]
pub struct Request {
    /// Context id of the 9P server's side (2: the host).
    pub cid: u32,
    /// The vsock port the 9P server is reached on.
    pub port: u32,
    /// Where to mount.
    pub mountpoint: PathBuf,
    /// mount(2) flags from the generic options.
    pub flags: libc::c_ulong,
    /// The 9p client's options, in the order given.
    pub options: Vec<String>,
}

/// What the command line asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Command {
    /// Print the usage and exit.
    Help,
    /// Connect and mount.
    Mount(Request),
}

fn number(what: &str, arg: &OsString) -> Result<u32, Error> {
    arg.to_str()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| Error::Usage(format!("{what} must be a number, not {arg:?}")))
}

fn option_name(option: &str) -> &str {
    option.split_once('=').map_or(option, |(name, _)| name)
}

/// Parses the arguments after the program name.
pub fn parse_args(args: impl IntoIterator<Item = OsString>) -> Result<Command, Error> {
    let mut args = args.into_iter();
    let mut cid = libc::VMADDR_CID_HOST;
    let mut positional = Vec::new();
    let mut flags = 0;
    let mut options = Vec::new();
    while let Some(arg) = args.next() {
        match arg.as_bytes() {
            b"-h" | b"--help" => return Ok(Command::Help),
            b"-c" | b"-o" => {
                let value =
                    args.next().ok_or_else(|| Error::Usage(format!("{} needs a value", arg.to_string_lossy())))?;
                if arg == "-c" {
                    cid = number("CID", &value)?;
                    continue;
                }
                let value =
                    value.into_string().map_err(|v| Error::Usage(format!("options must be UTF-8, not {v:?}")))?;
                for option in value.split(',').filter(|o| !o.is_empty()) {
                    let name = option_name(option);
                    if RESERVED.contains(&name) {
                        return Err(Error::Usage(format!("{name}= is set by avpfs-9p-mount")));
                    }
                    match FLAGS.iter().find(|(flag, _)| *flag == option) {
                        Some((_, bit)) => flags |= bit,
                        None => options.push(option.to_owned()),
                    }
                }
            }
            [b'-', _, ..] => return Err(Error::Usage(format!("unknown option {}", arg.to_string_lossy()))),
            _ => positional.push(arg),
        }
    }
    let [port, mountpoint]: [OsString; 2] =
        positional.try_into().map_err(|_| Error::Usage("PORT and MOUNTPOINT are required, and nothing else".into()))?;
    Ok(Command::Mount(Request { cid, port: number("PORT", &port)?, mountpoint: mountpoint.into(), flags, options }))
}

impl Request {
    /// The 9p client's option string for a connection on descriptor `fd`:
    /// the transport, the defaults the caller did not replace, then the
    /// caller's options.
    pub fn mount_data(&self, fd: i32) -> String {
        let mut data = vec![format!("trans=fd,rfdno={fd},wfdno={fd}")];
        for (name, option) in DEFAULTS {
            if !self.options.iter().any(|o| option_name(o) == name) {
                data.push(option.to_owned());
            }
        }
        data.extend(self.options.iter().cloned());
        data.join(",")
    }

    /// The source shown in `/proc/mounts`.
    pub fn source(&self) -> String {
        format!("vsock:{}:{}", self.cid, self.port)
    }
}

fn c_string(what: &str, bytes: &[u8]) -> Result<CString, Error> {
    CString::new(bytes).map_err(|_| Error::Usage(format!("{what} contains a NUL byte")))
}

/// Parses the arguments, connects and mounts.
pub fn run(args: impl IntoIterator<Item = OsString>) -> Result<(), Error> {
    let request = match parse_args(args)? {
        Command::Help => {
            println!("{USAGE}");
            return Ok(());
        }
        Command::Mount(request) => request,
    };
    let mountpoint = c_string("MOUNTPOINT", request.mountpoint.as_os_str().as_bytes())?;
    let socket = sys::vsock_connect(request.cid, request.port).map_err(|source| Error::Connect {
        cid: request.cid,
        port: request.port,
        source,
    })?;
    let data = c_string("-o", request.mount_data(socket.as_raw_fd()).as_bytes())?;
    let source = c_string("source", request.source().as_bytes())?;
    let fstype = c_string("fstype", FSTYPE.as_bytes())?;
    sys::mount(&source, &mountpoint, &fstype, request.flags, &data)
        .map_err(|source| Error::Mount { mountpoint: request.mountpoint.clone(), source })
    // `socket` closes here; the kernel holds its own reference for the mount.
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Command, Error> {
        parse_args(args.iter().map(OsString::from))
    }

    fn request(args: &[&str]) -> Request {
        match parse(args) {
            Ok(Command::Mount(r)) => r,
            other => panic!("{args:?}: {other:?}"),
        }
    }

    fn usage_error(args: &[&str]) -> String {
        match parse(args) {
            Err(Error::Usage(message)) => message,
            other => panic!("{args:?}: {other:?}"),
        }
    }

    #[test]
    fn port_and_mountpoint_with_defaults() {
        let r = request(&["564", "/mnt"]);
        assert_eq!(r, Request { cid: 2, port: 564, mountpoint: "/mnt".into(), flags: 0, options: vec![] });
        assert_eq!(r.mount_data(3), "trans=fd,rfdno=3,wfdno=3,version=9p2000.L,msize=65536,uname=root,access=user");
        assert_eq!(r.source(), "vsock:2:564");
    }

    #[test]
    fn options_anywhere_replace_defaults_and_keep_their_order() {
        let r = request(&["-o", "msize=8192,aname=/srv/a", "564", "-c", "5", "/mnt", "-o", "cache=loose"]);
        assert_eq!(r.cid, 5);
        assert_eq!(r.options, ["msize=8192", "aname=/srv/a", "cache=loose"]);
        assert_eq!(
            r.mount_data(7),
            "trans=fd,rfdno=7,wfdno=7,version=9p2000.L,uname=root,access=user,msize=8192,aname=/srv/a,cache=loose"
        );
    }

    #[test]
    fn generic_options_become_flags() {
        let r = request(&["564", "/mnt", "-o", "ro,nosuid,,nodev,rw,access=client"]);
        assert_eq!(r.flags, libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV);
        assert_eq!(r.options, ["access=client"]);
    }

    #[test]
    fn transport_options_are_refused() {
        for option in ["trans=tcp", "rfdno=0", "wfdno"] {
            let message = usage_error(&["564", "/mnt", "-o", option]);
            assert!(message.contains("is set by avpfs-9p-mount"), "{message}");
        }
    }

    #[test]
    fn bad_command_lines() {
        assert!(usage_error(&[]).contains("required"));
        assert!(usage_error(&["564"]).contains("required"));
        assert!(usage_error(&["564", "/mnt", "extra"]).contains("required"));
        assert!(usage_error(&["port", "/mnt"]).contains("PORT must be a number"));
        assert!(usage_error(&["-c", "host", "564", "/mnt"]).contains("CID must be a number"));
        assert!(usage_error(&["564", "/mnt", "-o"]).contains("-o needs a value"));
        assert!(usage_error(&["-x", "564", "/mnt"]).contains("unknown option -x"));
        assert_eq!(parse(&["564", "-h"]).unwrap(), Command::Help);
        assert_eq!(Error::Usage(String::new()).exit_code(), 2);
    }
}

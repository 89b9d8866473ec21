//! The observation log a case builds: an ordered list of `(step, value)`.
//!
//! Values are strings so that two runs (baseline and candidate) compare
//! with `==`. A successful result is recorded as `ok:<Debug of the value>`,
//! a failed one as `err:<ERRNO NAME>`. Only values that must be identical on
//! every correct file system are recorded: never inode numbers, device
//! numbers, block counts or timestamps the case did not set itself.

use std::fmt::Debug;
use std::io;

/// Returned by [`Outcome::need`] when a step the case depends on failed;
/// the case stops there (the failure is already in the log).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stop;

/// What a case body returns: `Ok(())` or an early [`Stop`].
pub type Flow = Result<(), Stop>;

/// The ordered log of one case.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    /// `(step name, observed value)` in the order the case made them.
    pub steps: Vec<(String, String)>,
    /// Absolute expectations that did not hold (see [`Outcome::expect`]).
    /// Each one is also visible as a step, so [`crate::compare`] sees it.
    pub violations: Vec<String>,
}

impl Outcome {
    /// An empty log.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a raw `(step, value)` pair.
    pub fn raw(&mut self, step: impl Into<String>, value: impl Into<String>) {
        self.steps.push((step.into(), value.into()));
    }

    /// Records `res` as `ok:<value:?>` or `err:<ERRNO>` and gives back the
    /// success value, if any.
    pub fn step<T: Debug>(&mut self, step: &str, res: io::Result<T>) -> Option<T> {
        match res {
            Ok(v) => {
                self.raw(step, format!("ok:{v:?}"));
                Some(v)
            }
            Err(e) => {
                self.raw(step, format!("err:{}", error_name(&e)));
                None
            }
        }
    }

    /// Records `res` like [`Outcome::step`] but without the success value
    /// (`ok`): for results whose value is not deterministic (a file
    /// descriptor, a pid).
    pub fn step_ok<T>(&mut self, step: &str, res: io::Result<T>) -> Option<T> {
        match res {
            Ok(v) => {
                self.raw(step, "ok");
                Some(v)
            }
            Err(e) => {
                self.raw(step, format!("err:{}", error_name(&e)));
                None
            }
        }
    }

    /// Like [`Outcome::step_ok`], but a failure stops the case: use it for
    /// setup steps the rest of the case depends on (`o.need(..)?`).
    pub fn need<T>(&mut self, step: &str, res: io::Result<T>) -> Result<T, Stop> {
        self.step_ok(step, res).ok_or(Stop)
    }

    /// Like [`Outcome::step`] (records the value), but a failure stops the
    /// case.
    pub fn need_val<T: Debug>(&mut self, step: &str, res: io::Result<T>) -> Result<T, Stop> {
        self.step(step, res).ok_or(Stop)
    }

    /// Records a plain value as `<v:?>`.
    pub fn val<T: Debug>(&mut self, step: &str, v: T) {
        self.raw(step, format!("{v:?}"));
    }

    /// Records the bytes of a read as a short deterministic string: the
    /// length and, for short data, the bytes themselves, else a checksum.
    pub fn bytes(&mut self, step: &str, res: io::Result<Vec<u8>>) -> Option<Vec<u8>> {
        match res {
            Ok(v) => {
                self.raw(step, format!("ok:{}", describe_bytes(&v)));
                Some(v)
            }
            Err(e) => {
                self.raw(step, format!("err:{}", error_name(&e)));
                None
            }
        }
    }

    /// Records `observed` and, when it is not `expected`, a violation: an
    /// absolute expectation that must hold on every correct file system.
    pub fn expect<T: Debug + PartialEq>(&mut self, step: &str, observed: T, expected: T) {
        if observed != expected {
            self.violations.push(format!("{step}: observed {observed:?}, expected {expected:?}"));
        }
        self.val(step, observed);
    }

    /// Appends another log (a child process's) with `prefix` before each
    /// step name.
    pub fn merge(&mut self, prefix: &str, other: Outcome) {
        for (s, v) in other.steps {
            self.steps.push((format!("{prefix}{s}"), v));
        }
        for v in other.violations {
            self.violations.push(format!("{prefix}{v}"));
        }
    }

    /// Serialises the log to text, one line a step (for the pipe from a
    /// child process).
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = String::new();
        for (s, v) in &self.steps {
            out.push_str("S\t");
            out.push_str(&escape(s));
            out.push('\t');
            out.push_str(&escape(v));
            out.push('\n');
        }
        for v in &self.violations {
            out.push_str("V\t");
            out.push_str(&escape(v));
            out.push('\n');
        }
        out.into_bytes()
    }

    /// The inverse of [`Outcome::encode`]; unknown lines are kept as steps
    /// so that nothing is silently lost.
    pub(crate) fn decode(data: &[u8]) -> Outcome {
        let text = String::from_utf8_lossy(data);
        let mut o = Outcome::new();
        for line in text.lines() {
            let mut parts = line.splitn(3, '\t');
            match (parts.next(), parts.next(), parts.next()) {
                (Some("S"), Some(s), Some(v)) => o.raw(unescape(s), unescape(v)),
                (Some("V"), Some(v), None) => o.violations.push(unescape(v)),
                _ => o.raw("undecodable line", line),
            }
        }
        o
    }
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out
}

fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut it = s.chars();
    while let Some(c) = it.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match it.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some(c) => out.push(c),
            None => out.push('\\'),
        }
    }
    out
}

/// A short deterministic description of a byte string.
pub fn describe_bytes(v: &[u8]) -> String {
    if v.len() <= 64 {
        format!("len={} {:?}", v.len(), String::from_utf8_lossy(v))
    } else {
        format!("len={} fnv={:016x}", v.len(), fnv1a(v))
    }
}

/// FNV-1a 64: a small checksum for recording large contents.
pub fn fnv1a(v: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in v {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The name of an I/O error: the errno name for OS errors, else the kind.
pub fn error_name(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(n) => errno_name(n),
        None => format!("io:{:?}", e.kind()),
    }
}

/// The symbolic name of an errno value (`ENOENT`), or `E<number>`.
///
/// Aliases are reported under one name: `EWOULDBLOCK` as `EAGAIN`,
/// `ENOTSUP` as `EOPNOTSUPP`, `EDEADLOCK` as `EDEADLK`, and `ENOATTR`
/// (the xattr name for it) as `ENODATA`.
pub fn errno_name(n: i32) -> String {
    let name = match n {
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        libc::ESRCH => "ESRCH",
        libc::EINTR => "EINTR",
        libc::EIO => "EIO",
        libc::ENXIO => "ENXIO",
        libc::E2BIG => "E2BIG",
        libc::ENOEXEC => "ENOEXEC",
        libc::EBADF => "EBADF",
        libc::ECHILD => "ECHILD",
        libc::EAGAIN => "EAGAIN",
        libc::ENOMEM => "ENOMEM",
        libc::EACCES => "EACCES",
        libc::EFAULT => "EFAULT",
        libc::EBUSY => "EBUSY",
        libc::EEXIST => "EEXIST",
        libc::EXDEV => "EXDEV",
        libc::ENODEV => "ENODEV",
        libc::ENOTDIR => "ENOTDIR",
        libc::EISDIR => "EISDIR",
        libc::EINVAL => "EINVAL",
        libc::ENFILE => "ENFILE",
        libc::EMFILE => "EMFILE",
        libc::ENOTTY => "ENOTTY",
        libc::ETXTBSY => "ETXTBSY",
        libc::EFBIG => "EFBIG",
        libc::ENOSPC => "ENOSPC",
        libc::ESPIPE => "ESPIPE",
        libc::EROFS => "EROFS",
        libc::EMLINK => "EMLINK",
        libc::EPIPE => "EPIPE",
        libc::EDOM => "EDOM",
        libc::ERANGE => "ERANGE",
        libc::EDEADLK => "EDEADLK",
        libc::ENAMETOOLONG => "ENAMETOOLONG",
        libc::ENOLCK => "ENOLCK",
        libc::ENOSYS => "ENOSYS",
        libc::ENOTEMPTY => "ENOTEMPTY",
        libc::ELOOP => "ELOOP",
        libc::ENODATA => "ENODATA",
        libc::EOVERFLOW => "EOVERFLOW",
        libc::EBADFD => "EBADFD",
        libc::EOPNOTSUPP => "EOPNOTSUPP",
        libc::ESTALE => "ESTALE",
        libc::EDQUOT => "EDQUOT",
        libc::ENOTCONN => "ENOTCONN",
        libc::ECONNREFUSED => "ECONNREFUSED",
        libc::ETIMEDOUT => "ETIMEDOUT",
        libc::ECANCELED => "ECANCELED",
        libc::EOWNERDEAD => "EOWNERDEAD",
        libc::EPROTO => "EPROTO",
        libc::EUCLEAN => "EUCLEAN",
        _ => return format!("E{n}"),
    };
    name.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_ok_and_err() {
        let mut o = Outcome::new();
        assert_eq!(o.step("a", Ok::<_, io::Error>(5)), Some(5));
        assert_eq!(o.step::<()>("b", Err(io::Error::from_raw_os_error(libc::ENOENT))), None);
        assert_eq!(o.need::<()>("c", Err(io::Error::from_raw_os_error(11))), Err(Stop));
        assert_eq!(
            o.steps,
            vec![("a".into(), "ok:5".into()), ("b".into(), "err:ENOENT".into()), ("c".into(), "err:EAGAIN".into()),]
        );
    }

    #[test]
    fn encode_round_trip() {
        let mut o = Outcome::new();
        o.raw("we\tird\nstep\\", "val\\ue\n");
        o.expect("x", 1, 2);
        let back = Outcome::decode(&o.encode());
        assert_eq!(back, o);
    }

    #[test]
    fn errno_names() {
        assert_eq!(errno_name(libc::EWOULDBLOCK), "EAGAIN");
        assert_eq!(errno_name(libc::ENOTSUP), "EOPNOTSUPP");
        assert_eq!(errno_name(9999), "E9999");
    }
}

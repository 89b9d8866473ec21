//! dax-probe: a small static program for the DAX tests (issue 21). It runs
//! inside the test guest (a static binary in the busybox initramfs, see
//! scripts/guest/build-guest-workload.sh dax-probe) on a virtio-fs share mounted with
//! `-o dax=always`, and on the host, where it prints the same lines, so that a
//! test can compare the two sides. It uses std and libc only (no argument
//! parser): `dax-probe COMMAND ARGS...`, numbers in decimal, one line on
//! stdout unless said otherwise.
//!
//! - `sum FILE`: read(2) the whole file; prints `<fnv1a64> <size>`, the
//!   FNV-1a 64-bit hash of its bytes in 16 hex digits and its size in bytes.
//! - `mmap-sum FILE`: the same line, the bytes read through a read-only
//!   `MAP_SHARED` mapping of the whole file (an empty file is not mapped).
//! - `mmap-fill FILE OFFSET LEN BYTE`: maps the pages covering
//!   OFFSET..OFFSET+LEN read-write `MAP_SHARED` (the range must lie inside the
//!   file), sets those LEN bytes to BYTE (0 to 255), msync(MS_SYNC)s; `ok`.
//! - `pong FILE ROUNDS TIMEOUT_MS` and `ping FILE ROUNDS TIMEOUT_MS`: a
//!   ping-pong through the first 4096 bytes of FILE (which must hold that
//!   many), mapped read-write `MAP_SHARED`, between two processes or two
//!   guests: the little-endian u64 at 0 is the ping slot, the one at 64 the
//!   pong slot, and the caller zeroes them first. `pong` prints `pong ready`
//!   (flushed), then for round i = 1..=ROUNDS spins until the ping slot holds
//!   i and stores i in the pong slot, and prints `pong ok ROUNDS`. `ping`
//!   stores i in the ping slot and spins until the pong slot holds i, timing
//!   each round trip, and prints
//!   `ping ROUNDS rounds: min_us=<n> median_us=<n> max_us=<n> min_ns=<n> median_ns=<n>`. Either gives
//!   up (exit status 1, the round on stderr) when one wait exceeds TIMEOUT_MS;
//!   pong's first wait includes the time ping takes to start.
//! - `watch FILE OFFSET VALUE TIMEOUT_MS`: maps the page holding OFFSET
//!   (8-aligned) read-only `MAP_SHARED`, spins until the u64 there equals
//!   VALUE; `seen after <us> us`, or exit status 1 on a timeout.
//! - `store FILE OFFSET VALUE`: maps that page read-write `MAP_SHARED` and
//!   stores the u64, with no msync (the point: another guest sees the store
//!   without a file system request); `stored`.
//! - `rand-read FILE COUNT SEED`: maps the whole file read-only and reads
//!   the u64 at the start of COUNT pages (4 KiB) picked by xorshift64 seeded
//!   with SEED (0 stands for a fixed non-zero seed);
//!   `rand-read COUNT reads in <us> us, <n> per s, xor <hex>`.
//! - `seq-read FILE BUFSIZE`: read(2)s the file from start to end with a
//!   BUFSIZE-byte buffer; `seq-read <bytes> bytes in <us> us, <x.y> MiB/s`.
//! - `exec-time RUNS PROGRAM [ARGS...]`: runs PROGRAM RUNS times, one after
//!   the other (output discarded), timing each from the fork to the wait:
//!   `exec-time RUNS runs: first_us=<n> rest_mean_us=<n>` (the first run
//!   starts cold, the others find what it loaded).
//! - `help`: this usage on stdout.
//!
//! Times are CLOCK_MONOTONIC (`std::time::Instant`), in whole microseconds.
//! The slots and watched values are read and written with volatile
//! accesses, aligned, so each is one load or store. Exit status: 0 done,
//! 1 a wait timed out, 2 bad arguments or any other error, with
//! `dax-probe: <error>` on stderr. A file truncated under a mapping makes
//! the process die of SIGBUS, as any program touching such pages would.

use std::ffi::{OsStr, OsString};
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::ptr::NonNull;
use std::time::{Duration, Instant};

const USAGE: &str = "\
usage: dax-probe COMMAND ARGS...   (numbers are decimal)
  sum FILE                            read(2) FILE: <fnv1a64> <size>
  mmap-sum FILE                       the same through a shared mapping: <fnv1a64> <size>
  mmap-fill FILE OFFSET LEN BYTE      set LEN bytes at OFFSET to BYTE through a shared mapping, msync: ok
  pong FILE ROUNDS TIMEOUT_MS         answer ROUNDS pings (u64 at 0) with pongs (u64 at 64): pong ready, pong ok ROUNDS
  ping FILE ROUNDS TIMEOUT_MS         send ROUNDS pings, time the round trips: ping ROUNDS rounds: min_us= median_us= max_us= min_ns= median_ns=
  watch FILE OFFSET VALUE TIMEOUT_MS  spin until the u64 at OFFSET equals VALUE: seen after <us> us
  store FILE OFFSET VALUE             store the u64 at OFFSET through a shared mapping, no msync: stored
  rand-read FILE COUNT SEED           COUNT u64 reads at random 4 KiB pages of a shared mapping
  seq-read FILE BUFSIZE               read(2) FILE with a BUFSIZE-byte buffer, timed
  exec-time RUNS PROGRAM [ARGS...]    run PROGRAM RUNS times, waiting for each: exec-time RUNS runs: first_us= rest_mean_us=
exit status: 0 done, 1 a wait timed out, 2 bad arguments or an error";

/// The ping-pong area: the first 4096 bytes, the ping slot at 0 and the
/// pong slot at 64 (another cache line).
const PINGPONG_BYTES: usize = 4096;
const PING_SLOT: usize = 0;
const PONG_SLOT: usize = 64;

/// The stride of rand-read.
const RAND_PAGE: u64 = 4096;

/// The buffer of `sum`.
const SUM_CHUNK: usize = 1 << 20;

/// Why the probe stopped.
#[derive(Debug)]
enum Failure {
    /// A malformed command line: the message, then the usage (status 2).
    Usage(String),
    /// Bad input or a failed system call (status 2).
    Error(String),
    /// A wait took longer than its timeout (status 1).
    Timeout(String),
}

impl Failure {
    /// The same failure with `path: ` in front of its message.
    fn about(self, path: &Path) -> Failure {
        match self {
            Failure::Error(m) => Failure::Error(format!("{}: {m}", path.display())),
            Failure::Timeout(m) => Failure::Timeout(format!("{}: {m}", path.display())),
            usage => usage,
        }
    }
}

type Res<T> = Result<T, Failure>;

fn error(message: impl Into<String>) -> Failure {
    Failure::Error(message.into())
}

fn os_error(what: &str, e: io::Error) -> Failure {
    Failure::Error(format!("{what}: {e}"))
}

/// A `MAP_SHARED` mapping of a byte range of a file, starting on a page
/// boundary and lying inside the file's size when it was made; unmapped on
/// drop. All of the probe's unsafe code is here.
struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
    writable: bool,
}

impl Mapping {
    /// The system's page size.
    fn page_size() -> u64 {
        // SAFETY: sysconf only reads a configuration value.
        let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        u64::try_from(n).ok().filter(|n| n.is_power_of_two()).unwrap_or(4096)
    }

    /// Maps `len` bytes of `file` from `start` (a multiple of the page
    /// size), read-only or read-write; the range must lie inside the file.
    fn new(file: &File, start: u64, len: usize, writable: bool) -> Res<Mapping> {
        let size = file.metadata().map_err(|e| os_error("fstat", e))?.len();
        let end = u64::try_from(len).ok().and_then(|l| start.checked_add(l));
        if len == 0 || end.is_none_or(|end| end > size) {
            return Err(error(format!("cannot map {len} bytes at {start}: the file holds {size} bytes")));
        }
        if !start.is_multiple_of(Self::page_size()) {
            return Err(error(format!("cannot map at {start}: not on a page boundary")));
        }
        let offset = libc::off_t::try_from(start).map_err(|_| error(format!("offset {start} is too large")))?;
        let prot = if writable { libc::PROT_READ | libc::PROT_WRITE } else { libc::PROT_READ };
        // SAFETY: a new mapping at an address the kernel picks (no hint, no
        // MAP_FIXED), so it replaces nothing; the kernel checks the
        // descriptor, the protection against its open mode, and the offset.
        let ptr = unsafe { libc::mmap(std::ptr::null_mut(), len, prot, libc::MAP_SHARED, file.as_raw_fd(), offset) };
        if ptr == libc::MAP_FAILED {
            return Err(os_error("mmap", io::Error::last_os_error()));
        }
        let ptr = NonNull::new(ptr.cast::<u8>()).ok_or_else(|| error("mmap returned a null address"))?;
        Ok(Mapping { ptr, len, writable })
    }

    /// The first mapped byte (page-aligned).
    fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// The mapped bytes, for plain reads of a file nobody writes meanwhile
    /// (the hashes); the slots that change go through [`Mapping::load`].
    fn as_slice(&self) -> &[u8] {
        // SAFETY: `ptr..ptr + len` is one readable mapping that lives as
        // long as `self` (unmapped only by drop), within the file's size, and
        // every byte value is a valid u8. Another process could change the
        // bytes under the slice; the probe's callers do not while it reads.
        unsafe { std::slice::from_raw_parts(self.as_ptr(), self.len) }
    }

    /// Where the u64 at `offset` is: inside the mapping and 8-aligned.
    fn u64_at(&self, offset: usize) -> Res<*mut u64> {
        if !offset.is_multiple_of(8) || offset.checked_add(8).is_none_or(|end| end > self.len) {
            return Err(error(format!("no aligned u64 at {offset} of a {}-byte mapping", self.len)));
        }
        Ok(self.as_ptr().wrapping_add(offset).cast::<u64>())
    }

    /// A volatile load of the little-endian u64 at `offset`.
    fn load(&self, offset: usize) -> Res<u64> {
        let p = self.u64_at(offset)?;
        // SAFETY: `p` is inside the live, readable mapping and 8-aligned (the
        // mapping starts on a page); volatile, as another process or guest
        // may store there at any time.
        Ok(u64::from_le(unsafe { std::ptr::read_volatile(p) }))
    }

    /// A volatile store of `value` as the little-endian u64 at `offset`.
    fn store(&self, offset: usize, value: u64) -> Res<()> {
        if !self.writable {
            return Err(error("the mapping is read-only"));
        }
        let p = self.u64_at(offset)?;
        // SAFETY: `p` is inside the live mapping, which is writable, and
        // 8-aligned; no Rust reference covers these bytes while the probe
        // stores (as_slice is not used on a writable mapping).
        unsafe { std::ptr::write_volatile(p, value.to_le()) };
        Ok(())
    }

    /// Sets `len` bytes from `offset` to `byte`.
    fn fill(&self, offset: usize, len: usize, byte: u8) -> Res<()> {
        if !self.writable {
            return Err(error("the mapping is read-only"));
        }
        if offset.checked_add(len).is_none_or(|end| end > self.len) {
            return Err(error(format!("{len} bytes at {offset} overrun a {}-byte mapping", self.len)));
        }
        // SAFETY: `offset..offset + len` is inside the live, writable
        // mapping, and no Rust reference covers it.
        unsafe { std::ptr::write_bytes(self.as_ptr().add(offset), byte, len) };
        Ok(())
    }

    /// msync(MS_SYNC) of the whole mapping.
    fn sync(&self) -> Res<()> {
        // SAFETY: the range is exactly this live mapping, page-aligned.
        if unsafe { libc::msync(self.as_ptr().cast(), self.len, libc::MS_SYNC) } != 0 {
            return Err(os_error("msync", io::Error::last_os_error()));
        }
        Ok(())
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: the range is exactly the mapping `new` made; nothing
        // borrows it any more (borrows of `self` have ended).
        unsafe { libc::munmap(self.as_ptr().cast(), self.len) };
    }
}

/// FNV-1a, 64 bits.
struct Fnv1a64(u64);

impl Fnv1a64 {
    fn new() -> Self {
        Fnv1a64(0xcbf2_9ce4_8422_2325)
    }

    fn update(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}

/// xorshift64 (13, 7, 17).
struct XorShift64(u64);

impl XorShift64 {
    fn new(seed: u64) -> Self {
        // Zero is xorshift's fixed point.
        XorShift64(if seed == 0 { 0x9e37_79b9_7f4a_7c15 } else { seed })
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Prints one line on stdout and flushes it.
fn say(line: &str) -> Res<()> {
    let mut out = io::stdout().lock();
    writeln!(out, "{line}").and_then(|()| out.flush()).map_err(|e| os_error("stdout", e))
}

fn open(path: &Path, write: bool) -> Res<File> {
    OpenOptions::new().read(true).write(write).open(path).map_err(|e| os_error("open", e))
}

fn file_size(file: &File) -> Res<u64> {
    Ok(file.metadata().map_err(|e| os_error("fstat", e))?.len())
}

/// A zero-filled buffer of `n` bytes, or an error if there is no memory.
fn buffer(n: usize) -> Res<Vec<u8>> {
    let mut buf = Vec::new();
    buf.try_reserve_exact(n).map_err(|_| error(format!("cannot allocate {n} bytes")))?;
    buf.resize(n, 0);
    Ok(buf)
}

/// Reads `file` to its end with `buf`, handing each chunk to `f`; the bytes read.
fn read_all(file: &mut File, buf: &mut [u8], mut f: impl FnMut(&[u8])) -> Res<u64> {
    let mut total = 0u64;
    loop {
        match file.read(buf) {
            Ok(0) => return Ok(total),
            Ok(n) => {
                f(&buf[..n]);
                total += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(os_error("read", e)),
        }
    }
}

/// Spins until the u64 at `offset` of `map` equals `want`: the time it
/// took, or `Err(seen)`, the last value, after `timeout`.
fn wait_for(map: &Mapping, offset: usize, want: u64, timeout: Duration) -> Res<Result<Duration, u64>> {
    let start = Instant::now();
    let mut spins = 0u32;
    loop {
        let seen = map.load(offset)?;
        if seen == want {
            return Ok(Ok(start.elapsed()));
        }
        std::hint::spin_loop();
        spins = spins.wrapping_add(1);
        if spins.is_multiple_of(64) && start.elapsed() > timeout {
            return Ok(Err(seen));
        }
    }
}

fn sum(path: &Path) -> Res<()> {
    let mut file = open(path, false)?;
    let mut buf = buffer(SUM_CHUNK)?;
    let mut h = Fnv1a64::new();
    let size = read_all(&mut file, &mut buf, |chunk| h.update(chunk))?;
    say(&format!("{:016x} {size}", h.0))
}

fn mmap_sum(path: &Path) -> Res<()> {
    let file = open(path, false)?;
    let size = file_size(&file)?;
    let mut h = Fnv1a64::new();
    if size > 0 {
        let len = usize::try_from(size).map_err(|_| error(format!("{size} bytes do not fit in memory")))?;
        h.update(Mapping::new(&file, 0, len, false)?.as_slice());
    }
    say(&format!("{:016x} {size}", h.0))
}

fn mmap_fill(path: &Path, offset: u64, len: u64, byte: u64) -> Res<()> {
    let byte = u8::try_from(byte).map_err(|_| error(format!("BYTE {byte} is not in 0 to 255")))?;
    if len == 0 {
        return Err(error("LEN must be at least 1"));
    }
    let file = open(path, true)?;
    let size = file_size(&file)?;
    let end = offset.checked_add(len).filter(|&end| end <= size);
    let Some(end) = end else {
        return Err(error(format!("{len} bytes at {offset} do not lie inside the file's {size} bytes")));
    };
    let start = offset - offset % Mapping::page_size();
    let too_big = |_| error(format!("{len} bytes at {offset} do not fit in memory"));
    let map = Mapping::new(&file, start, usize::try_from(end - start).map_err(too_big)?, true)?;
    map.fill(usize::try_from(offset - start).map_err(too_big)?, usize::try_from(len).map_err(too_big)?, byte)?;
    map.sync()?;
    say("ok")
}

/// The ping-pong area of `path`, mapped read-write.
fn pingpong_area(path: &Path) -> Res<Mapping> {
    let file = open(path, true)?;
    let size = file_size(&file)?;
    if size < PINGPONG_BYTES as u64 {
        return Err(error(format!("holds {size} bytes; ping and pong need {PINGPONG_BYTES}")));
    }
    Mapping::new(&file, 0, PINGPONG_BYTES, true)
}

fn rounds_of(rounds: u64) -> Res<u64> {
    if rounds == 0 {
        return Err(error("ROUNDS must be at least 1"));
    }
    Ok(rounds)
}

fn pong(path: &Path, rounds: u64, timeout_ms: u64) -> Res<()> {
    let rounds = rounds_of(rounds)?;
    let map = pingpong_area(path)?;
    let timeout = Duration::from_millis(timeout_ms);
    say("pong ready")?;
    for i in 1..=rounds {
        if let Err(seen) = wait_for(&map, PING_SLOT, i, timeout)? {
            return Err(Failure::Timeout(format!(
                "pong: round {i} of {rounds}: no ping {i} within {timeout_ms} ms (the ping slot holds {seen})"
            )));
        }
        map.store(PONG_SLOT, i)?;
    }
    say(&format!("pong ok {rounds}"))
}

fn ping(path: &Path, rounds: u64, timeout_ms: u64) -> Res<()> {
    let rounds = rounds_of(rounds)?;
    let map = pingpong_area(path)?;
    let timeout = Duration::from_millis(timeout_ms);
    let n = usize::try_from(rounds).map_err(|_| error(format!("ROUNDS {rounds} is too large")))?;
    let mut trips = Vec::new();
    trips.try_reserve_exact(n).map_err(|_| error(format!("cannot keep {rounds} round-trip times")))?;
    for i in 1..=rounds {
        let start = Instant::now();
        map.store(PING_SLOT, i)?;
        if let Err(seen) = wait_for(&map, PONG_SLOT, i, timeout)? {
            return Err(Failure::Timeout(format!(
                "ping: round {i} of {rounds}: no pong {i} within {timeout_ms} ms (the pong slot holds {seen})"
            )));
        }
        trips.push(start.elapsed());
    }
    trips.sort_unstable();
    let median = if n % 2 == 1 { trips[n / 2] } else { (trips[n / 2 - 1] + trips[n / 2]) / 2 };
    say(&format!(
        "ping {rounds} rounds: min_us={} median_us={} max_us={} min_ns={} median_ns={}",
        trips[0].as_micros(),
        median.as_micros(),
        trips[n - 1].as_micros(),
        trips[0].as_nanos(),
        median.as_nanos()
    ))
}

/// The page of `path` holding the u64 at `offset`, and where in it the u64 is.
fn page_of(path: &Path, offset: u64, writable: bool) -> Res<(Mapping, usize)> {
    if !offset.is_multiple_of(8) {
        return Err(error(format!("OFFSET {offset} is not a multiple of 8")));
    }
    let file = open(path, writable)?;
    let size = file_size(&file)?;
    if offset.checked_add(8).is_none_or(|end| end > size) {
        return Err(error(format!("no u64 at {offset}: the file holds {size} bytes")));
    }
    let page = Mapping::page_size();
    let start = offset - offset % page;
    let len = (size - start).min(page) as usize;
    Ok((Mapping::new(&file, start, len, writable)?, (offset - start) as usize))
}

fn watch(path: &Path, offset: u64, value: u64, timeout_ms: u64) -> Res<()> {
    let (map, at) = page_of(path, offset, false)?;
    match wait_for(&map, at, value, Duration::from_millis(timeout_ms))? {
        Ok(waited) => say(&format!("seen after {} us", waited.as_micros())),
        Err(seen) => {
            Err(Failure::Timeout(format!("watch: the u64 at {offset} is {seen}, not {value}, after {timeout_ms} ms")))
        }
    }
}

fn store(path: &Path, offset: u64, value: u64) -> Res<()> {
    let (map, at) = page_of(path, offset, true)?;
    map.store(at, value)?;
    say("stored")
}

fn rand_read(path: &Path, count: u64, seed: u64) -> Res<()> {
    let file = open(path, false)?;
    let size = file_size(&file)?;
    if size < 8 {
        return Err(error(format!("holds {size} bytes; rand-read needs at least 8")));
    }
    let len = usize::try_from(size).map_err(|_| error(format!("{size} bytes do not fit in memory")))?;
    let map = Mapping::new(&file, 0, len, false)?;
    // The pages whose first 8 bytes lie inside the file.
    let pages = (size - 8) / RAND_PAGE + 1;
    let mut rng = XorShift64::new(seed);
    let mut xor = 0u64;
    let start = Instant::now();
    for _ in 0..count {
        xor ^= map.load(((rng.next() % pages) * RAND_PAGE) as usize)?;
    }
    let took = start.elapsed();
    let rate = (count as f64 / took.as_secs_f64().max(1e-9)).round() as u64;
    say(&format!("rand-read {count} reads in {} us, {rate} per s, xor {xor:016x}", took.as_micros()))
}

fn seq_read(path: &Path, bufsize: u64) -> Res<()> {
    let n = usize::try_from(bufsize).ok().filter(|&n| n > 0);
    let n = n.ok_or_else(|| error(format!("BUFSIZE {bufsize} must be at least 1 and fit in memory")))?;
    let mut buf = buffer(n)?;
    let mut file = open(path, false)?;
    let start = Instant::now();
    let bytes = read_all(&mut file, &mut buf, |_| {})?;
    let took = start.elapsed();
    let mib_s = bytes as f64 / (1 << 20) as f64 / took.as_secs_f64().max(1e-9);
    say(&format!("seq-read {bytes} bytes in {} us, {mib_s:.1} MiB/s", took.as_micros()))
}

/// Runs `program` `runs` times, one after the other, and times each run
/// from the fork to the end of the wait (its output is discarded).
fn exec_time(runs: u64, program: &OsStr, args: &[OsString]) -> Res<()> {
    if runs == 0 {
        return Err(error("RUNS must be at least 1"));
    }
    let mut times = Vec::new();
    for _ in 0..runs {
        let start = Instant::now();
        let status = std::process::Command::new(program)
            .args(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .map_err(|e| error(format!("cannot run {program:?}: {e}")))?;
        times.push(start.elapsed());
        if status.code().is_none() {
            return Err(error(format!("{program:?} died: {status}")));
        }
    }
    let rest = &times[1..];
    let rest_us =
        if rest.is_empty() { 0 } else { rest.iter().map(|t| t.as_micros()).sum::<u128>() / rest.len() as u128 };
    say(&format!("exec-time {runs} runs: first_us={} rest_mean_us={rest_us}", times[0].as_micros()))
}

/// A decimal argument.
fn number(arg: &OsStr, name: &str) -> Res<u64> {
    let digits = arg.to_str().filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()));
    let Some(digits) = digits else {
        return Err(error(format!("{name} must be a decimal number, not {arg:?}")));
    };
    digits.parse().map_err(|_| error(format!("{name} {digits} is too large")))
}

/// The arguments of a command that takes `N`, or its usage line.
fn take<'a, const N: usize>(rest: &'a [OsString], synopsis: &str) -> Res<&'a [OsString; N]> {
    rest.try_into().map_err(|_| Failure::Usage(format!("wrong number of arguments: dax-probe {synopsis}")))
}

fn run(args: &[OsString]) -> Res<()> {
    let Some((command, rest)) = args.split_first() else {
        return Err(Failure::Usage("no command".into()));
    };
    let command = command.to_str().unwrap_or("");
    let (path, result) = match command {
        "help" | "-h" | "--help" => return say(USAGE),
        "sum" | "mmap-sum" => {
            let [file] = take(rest, &format!("{command} FILE"))?;
            let path = Path::new(file);
            (path, if command == "sum" { sum(path) } else { mmap_sum(path) })
        }
        "mmap-fill" => {
            let [file, offset, len, byte] = take(rest, "mmap-fill FILE OFFSET LEN BYTE")?;
            let (offset, len, byte) = (number(offset, "OFFSET")?, number(len, "LEN")?, number(byte, "BYTE")?);
            (Path::new(file), mmap_fill(Path::new(file), offset, len, byte))
        }
        "pong" | "ping" => {
            let [file, rounds, timeout] = take(rest, &format!("{command} FILE ROUNDS TIMEOUT_MS"))?;
            let (rounds, timeout) = (number(rounds, "ROUNDS")?, number(timeout, "TIMEOUT_MS")?);
            let path = Path::new(file);
            (path, if command == "pong" { pong(path, rounds, timeout) } else { ping(path, rounds, timeout) })
        }
        "watch" => {
            let [file, offset, value, timeout] = take(rest, "watch FILE OFFSET VALUE TIMEOUT_MS")?;
            let (offset, value) = (number(offset, "OFFSET")?, number(value, "VALUE")?);
            let timeout = number(timeout, "TIMEOUT_MS")?;
            (Path::new(file), watch(Path::new(file), offset, value, timeout))
        }
        "store" => {
            let [file, offset, value] = take(rest, "store FILE OFFSET VALUE")?;
            let (offset, value) = (number(offset, "OFFSET")?, number(value, "VALUE")?);
            (Path::new(file), store(Path::new(file), offset, value))
        }
        "rand-read" => {
            let [file, count, seed] = take(rest, "rand-read FILE COUNT SEED")?;
            let (count, seed) = (number(count, "COUNT")?, number(seed, "SEED")?);
            (Path::new(file), rand_read(Path::new(file), count, seed))
        }
        "seq-read" => {
            let [file, bufsize] = take(rest, "seq-read FILE BUFSIZE")?;
            let bufsize = number(bufsize, "BUFSIZE")?;
            (Path::new(file), seq_read(Path::new(file), bufsize))
        }
        "exec-time" => {
            let Some((runs, cmd)) = rest.split_first() else {
                return Err(Failure::Usage(
                    "wrong number of arguments: dax-probe exec-time RUNS PROGRAM [ARGS...]".into(),
                ));
            };
            let Some((program, program_args)) = cmd.split_first() else {
                return Err(Failure::Usage(
                    "wrong number of arguments: dax-probe exec-time RUNS PROGRAM [ARGS...]".into(),
                ));
            };
            let runs = number(runs, "RUNS")?;
            (Path::new(program), exec_time(runs, program, program_args))
        }
        _ => return Err(Failure::Usage(format!("unknown command {:?}", args[0]))),
    };
    result.map_err(|f| f.about(path))
}

fn main() {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    let status = match run(&args) {
        Ok(()) => 0,
        Err(Failure::Usage(message)) => {
            eprintln!("dax-probe: {message}\n{USAGE}");
            2
        }
        Err(Failure::Error(message)) => {
            eprintln!("dax-probe: {message}");
            2
        }
        Err(Failure::Timeout(message)) => {
            eprintln!("dax-probe: {message}");
            1
        }
    };
    std::process::exit(status);
}

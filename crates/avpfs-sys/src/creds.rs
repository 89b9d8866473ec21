//! Per-thread credentials: effective uid/gid and supplementary groups,
//! effective capabilities, and the umask.
//!
//! glibc's `setresuid`/`setgroups` change the credentials of *every* thread
//! of the process (they broadcast a signal); the raw system calls change
//! only the calling thread's, which is what a multi-threaded server that
//! acts for different callers at once needs. These functions use the raw
//! system calls.
//!
//! Capabilities follow the switch by themselves: when the effective uid goes
//! from 0 to another value the kernel clears the effective capability set, so
//! the switched thread has no `CAP_DAC_OVERRIDE`, `CAP_FOWNER` or
//! `CAP_FSETID` and the host kernel checks permissions as the caller; when
//! the effective uid returns to 0 the permitted set is copied back into the
//! effective set (capabilities(7), "Effect of user ID changes on
//! capabilities"). The tests below check both directions.

use std::cell::Cell;
use std::cell::RefCell;
use std::io;
use std::marker::PhantomData;

use crate::util::{cvt, err};

/// The process's effective user id.
pub fn geteuid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// The calling thread's effective group id.
pub fn getegid() -> u32 {
    // SAFETY: getegid has no preconditions and cannot fail.
    unsafe { libc::getegid() }
}

/// The calling thread's supplementary groups.
pub fn getgroups() -> io::Result<Vec<u32>> {
    // SAFETY: a size of 0 asks for the count only; no buffer is written.
    let n = cvt(unsafe { libc::getgroups(0, core::ptr::null_mut()) })?;
    let mut v = vec![0u32; n as usize];
    // SAFETY: `v` has room for `n` gids; the groups cannot change between the
    // two calls since only this thread changes its own credentials.
    let n = cvt(unsafe { libc::getgroups(n, v.as_mut_ptr()) })?;
    v.truncate(n as usize);
    Ok(v)
}

/// What this thread's credentials are, as last set through this module.
///
/// Only the raw system calls below change a worker thread's credentials, so
/// after one query they are known without asking the kernel again: a
/// creating request then costs no getgroups/getegid/geteuid calls.
#[derive(Debug)]
struct ThreadCreds {
    euid: u32,
    egid: u32,
    groups: Vec<u32>,
}

thread_local! {
    static THREAD_CREDS: RefCell<Option<ThreadCreds>> = const { RefCell::new(None) };
}

/// Runs `f` on this thread's known credentials (queried once per thread).
fn with_thread_creds<T>(f: impl FnOnce(&mut ThreadCreds) -> T) -> io::Result<T> {
    let known = THREAD_CREDS.with_borrow(|c| c.is_some());
    if !known {
        let c = ThreadCreds { euid: geteuid(), egid: getegid(), groups: getgroups()? };
        THREAD_CREDS.with_borrow_mut(|slot| *slot = Some(c));
    }
    THREAD_CREDS.with_borrow_mut(|c| match c.as_mut() {
        Some(c) => Ok(f(c)),
        None => Err(io::Error::other("thread credentials unknown")),
    })
}

fn setresuid_thread(euid: u32) -> io::Result<()> {
    let keep = libc::uid_t::MAX; // -1: leave unchanged
                                 // SAFETY: the raw system call takes three uid_t values and changes only
                                 // the calling thread's credentials; no memory is passed.
    cvt(unsafe { libc::syscall(libc::SYS_setresuid, keep, euid, keep) })?;
    with_thread_creds(|c| c.euid = euid)
}

fn setresgid_thread(egid: u32) -> io::Result<()> {
    let keep = libc::gid_t::MAX; // -1: leave unchanged
                                 // SAFETY: as for setresuid: three gid_t values, calling thread only.
    cvt(unsafe { libc::syscall(libc::SYS_setresgid, keep, egid, keep) })?;
    with_thread_creds(|c| c.egid = egid)
}

fn setgroups_thread(groups: &[u32]) -> io::Result<()> {
    // SAFETY: `groups` is a readable array of `len` gid_t that outlives the
    // call; the raw system call changes only the calling thread.
    cvt(unsafe { libc::syscall(libc::SYS_setgroups, groups.len(), groups.as_ptr()) })?;
    with_thread_creds(|c| {
        c.groups.clear();
        c.groups.extend_from_slice(groups);
    })
}

/// Acts as another user for the life of the guard, on the calling thread only.
///
/// [`ScopedCreds::switch`] sets the supplementary groups, then the effective
/// gid, then the effective uid; dropping the guard restores them in reverse
/// order. The real and saved ids stay 0, which is what allows the way back.
/// The guard is neither `Send` nor `Sync`: it must be dropped on the thread
/// that made it. A thread spawned while the guard lives inherits the
/// switched credentials: never spawn threads under a guard.
#[derive(Debug)]
#[must_use = "the credentials are restored when the guard is dropped"]
pub struct ScopedCreds {
    old_euid: Option<u32>,
    old_egid: Option<u32>,
    old_groups: Option<Vec<u32>>,
    _not_send: PhantomData<*const ()>,
}

impl ScopedCreds {
    /// Switches the calling thread to effective uid `uid`, effective gid
    /// `gid` and supplementary `groups` (`None`: no supplementary groups, or
    /// unchanged when `uid` is 0 — root needs none).
    ///
    /// Must be called with effective uid 0 (or with CAP_SETUID/CAP_SETGID).
    /// On failure nothing is left changed.
    pub fn switch(uid: u32, gid: u32, groups: Option<&[u32]>) -> io::Result<Self> {
        let mut guard = ScopedCreds { old_euid: None, old_egid: None, old_groups: None, _not_send: PhantomData };
        let new_groups: Option<&[u32]> = match groups {
            Some(g) => Some(g),
            None if uid != 0 => Some(&[]),
            None => None,
        };
        let (euid, egid, old_groups) =
            with_thread_creds(|c| (c.euid, c.egid, new_groups.filter(|g| c.groups != *g).map(|_| c.groups.clone())))?;
        if let (Some(g), Some(old)) = (new_groups, old_groups) {
            setgroups_thread(g)?;
            guard.old_groups = Some(old);
        }
        if egid != gid {
            setresgid_thread(gid)?; // on error the guard's drop undoes the groups
            guard.old_egid = Some(egid);
        }
        if euid != uid {
            setresuid_thread(uid)?;
            guard.old_euid = Some(euid);
        }
        Ok(guard)
    }

    /// Whether the guard changed anything.
    pub fn is_switched(&self) -> bool {
        self.old_euid.is_some() || self.old_egid.is_some() || self.old_groups.is_some()
    }
}

impl Drop for ScopedCreds {
    fn drop(&mut self) {
        // Failing to restore would leave this worker thread acting as another
        // user for every later request: stop the process instead.
        let fatal = |what: &str, e: io::Error| -> ! {
            log::error!("cannot restore the {what} of a worker thread: {e}");
            std::process::abort()
        };
        if let Some(uid) = self.old_euid.take() {
            if let Err(e) = setresuid_thread(uid) {
                fatal("effective uid", e);
            }
        }
        if let Some(gid) = self.old_egid.take() {
            if let Err(e) = setresgid_thread(gid) {
                fatal("effective gid", e);
            }
        }
        if let Some(groups) = self.old_groups.take() {
            if let Err(e) = setgroups_thread(&groups) {
                fatal("supplementary groups", e);
            }
        }
    }
}

/// `struct __user_cap_header_struct`.
#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

/// `struct __user_cap_data_struct`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

fn capget() -> io::Result<[CapData; 2]> {
    let mut hdr = CapHeader { version: LINUX_CAPABILITY_VERSION_3, pid: 0 };
    let mut data = [CapData::default(); 2];
    // SAFETY: version 3 takes a header and two data structs, both writable
    // and live for the call; pid 0 is the calling thread.
    cvt(unsafe { libc::syscall(libc::SYS_capget, &mut hdr as *mut CapHeader, data.as_mut_ptr()) })?;
    Ok(data)
}

fn capset(data: &[CapData; 2]) -> io::Result<()> {
    let mut hdr = CapHeader { version: LINUX_CAPABILITY_VERSION_3, pid: 0 };
    // SAFETY: as for capget; the kernel only reads `data`; pid 0 changes the
    // calling thread's capabilities only.
    cvt(unsafe { libc::syscall(libc::SYS_capset, &mut hdr as *mut CapHeader, data.as_ptr()) })?;
    Ok(())
}

fn cap_bit(cap: u32) -> io::Result<(usize, u32)> {
    if cap >= 64 {
        return Err(err(libc::EINVAL));
    }
    Ok(((cap / 32) as usize, 1u32 << (cap % 32)))
}

/// The calling thread's effective capability set, as a 64-bit mask.
pub fn effective_caps() -> io::Result<u64> {
    let d = capget()?;
    Ok(u64::from(d[0].effective) | (u64::from(d[1].effective) << 32))
}

/// Whether the calling thread has capability `cap` (`libc::CAP_*`-style
/// number, e.g. 2 for CAP_DAC_READ_SEARCH) in its effective set.
pub fn has_effective_cap(cap: u32) -> io::Result<bool> {
    let (i, bit) = cap_bit(cap)?;
    Ok(capget()?[i].effective & bit != 0)
}

/// `CAP_DAC_READ_SEARCH`, needed by `open_by_handle_at`.
pub const CAP_DAC_READ_SEARCH: u32 = 2;
/// `CAP_FSETID`: keep setuid/setgid bits on write and chown.
pub const CAP_FSETID: u32 = 4;

/// Removes one capability from the calling thread's effective set for the
/// life of the guard (e.g. `CAP_FSETID` so that a write by root clears the
/// setuid bit as it would for anyone else).
#[derive(Debug)]
#[must_use = "the capability is restored when the guard is dropped"]
pub struct DropEffectiveCap {
    restore: Option<[CapData; 2]>,
    _not_send: PhantomData<*const ()>,
}

impl DropEffectiveCap {
    /// Drops `cap` from the effective set if it is there.
    pub fn new(cap: u32) -> io::Result<Self> {
        let (i, bit) = cap_bit(cap)?;
        let old = capget()?;
        if old[i].effective & bit == 0 {
            return Ok(DropEffectiveCap { restore: None, _not_send: PhantomData });
        }
        let mut new = old;
        new[i].effective &= !bit;
        capset(&new)?;
        Ok(DropEffectiveCap { restore: Some(old), _not_send: PhantomData })
    }
}

impl Drop for DropEffectiveCap {
    fn drop(&mut self) {
        if let Some(old) = self.restore.take() {
            if let Err(e) = capset(&old) {
                log::error!("cannot restore the capabilities of a worker thread: {e}");
                std::process::abort();
            }
        }
    }
}

thread_local! {
    /// The umask of this thread once it has its own `fs_struct`, else `None`.
    static THREAD_UMASK: Cell<Option<u32>> = const { Cell::new(None) };
}

/// Sets the calling thread's umask, giving the thread its own umask first
/// (`unshare(CLONE_FS)`; the umask is otherwise shared by all threads).
/// Cheap when the umask is already `mask`. Note that the thread's working
/// directory and root also become its own from then on.
pub fn set_thread_umask(mask: u32) -> io::Result<()> {
    let mask = mask & 0o777;
    THREAD_UMASK.with(|cur| {
        match cur.get() {
            Some(m) if m == mask => return Ok(()),
            Some(_) => {}
            None => {
                // SAFETY: unshare(CLONE_FS) only gives the calling thread a
                // private copy of its cwd/root/umask; no memory is passed.
                cvt(unsafe { libc::unshare(libc::CLONE_FS) })?;
            }
        }
        // SAFETY: umask cannot fail; after the unshare it affects only this thread.
        unsafe { libc::umask(mask) };
        cur.set(Some(mask));
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn in_thread<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        std::thread::spawn(f).join().unwrap()
    }

    #[test]
    fn switching_is_per_thread_and_restores_root() {
        if geteuid() != 0 {
            eprintln!("skipped: needs root");
            return;
        }
        let t = tempfile::tempdir().unwrap();
        let secret = t.path().join("secret");
        std::fs::write(&secret, b"x").unwrap();
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
        let caps_before = effective_caps().unwrap();
        assert_ne!(caps_before, 0);
        let path = secret.clone();
        in_thread(move || {
            let caps_root = effective_caps().unwrap();
            // A thread that exists before the switch keeps its credentials
            // (one created while switched would inherit the switched ones).
            let (ask, asked) = std::sync::mpsc::channel::<()>();
            let (tell, told) = std::sync::mpsc::channel();
            let other = std::thread::spawn(move || {
                asked.recv().unwrap();
                tell.send(geteuid()).unwrap();
            });
            {
                let g = ScopedCreds::switch(1000, 1000, Some(&[1001])).unwrap();
                assert!(g.is_switched());
                assert_eq!(geteuid(), 1000);
                assert_eq!(getegid(), 1000);
                assert_eq!(getgroups().unwrap(), vec![1001]);
                // The kernel cleared the effective capabilities: no DAC override.
                assert_eq!(effective_caps().unwrap(), 0);
                let e = std::fs::read(&path).unwrap_err();
                assert_eq!(e.raw_os_error(), Some(libc::EACCES));
                // Another thread is not affected.
                ask.send(()).unwrap();
                assert_eq!(told.recv().unwrap(), 0);
                other.join().unwrap();
                // New files get the caller as owner.
                let p2 = path.with_file_name("made");
                assert!(std::fs::write(&p2, b"").is_err(), "dir is root's 0755");
            }
            assert_eq!(geteuid(), 0);
            assert_eq!(getegid(), 0);
            assert_eq!(effective_caps().unwrap(), caps_root, "capabilities come back with euid 0");
            std::fs::read(&path).unwrap();
        });
        assert_eq!(effective_caps().unwrap(), caps_before);
    }

    #[test]
    fn new_files_get_the_callers_owner() {
        if geteuid() != 0 {
            return;
        }
        let t = tempfile::tempdir().unwrap();
        std::fs::set_permissions(t.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let p = t.path().join("made");
        let p2 = p.clone();
        in_thread(move || {
            let _g = ScopedCreds::switch(1234, 4321, None).unwrap();
            std::fs::write(&p2, b"").unwrap();
        });
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(&p).unwrap();
        assert_eq!((m.uid(), m.gid()), (1234, 4321));
    }

    #[test]
    fn root_switch_is_a_no_op() {
        let uid = geteuid();
        let g = ScopedCreds::switch(uid, getegid(), None).unwrap();
        if uid == 0 {
            assert!(!g.is_switched());
        }
    }

    #[test]
    fn drop_fsetid_and_restore() {
        if geteuid() != 0 {
            return;
        }
        in_thread(|| {
            assert!(has_effective_cap(CAP_FSETID).unwrap());
            {
                let _g = DropEffectiveCap::new(CAP_FSETID).unwrap();
                assert!(!has_effective_cap(CAP_FSETID).unwrap());
            }
            assert!(has_effective_cap(CAP_FSETID).unwrap());
        });
    }

    #[test]
    fn thread_umask_is_private() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path().to_owned();
        in_thread(move || {
            set_thread_umask(0o077).unwrap();
            std::fs::create_dir(d.join("a")).unwrap();
            let m = std::fs::metadata(d.join("a")).unwrap().permissions().mode();
            assert_eq!(m & 0o777, 0o700);
            set_thread_umask(0).unwrap();
            std::fs::create_dir(d.join("b")).unwrap();
            let m = std::fs::metadata(d.join("b")).unwrap().permissions().mode();
            assert_eq!(m & 0o777, 0o777);
        });
    }
}

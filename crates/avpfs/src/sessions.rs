//! What the control socket and the metrics see of the running daemon: its
//! shares and sessions, each session's counters and holdings, and how to put
//! new policies in force (`reload`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Instant;

use avpfs_policy::{Policy, PolicyFs};
use avpfs_server::{FileSystem, Server, StatsSnapshot, Usage};

/// A session's server, seen without its file system's type.
pub trait ServerView: Send + Sync {
    /// Its request counters.
    fn stats(&self) -> StatsSnapshot;
    /// What its client holds.
    fn usage(&self) -> Usage;
    /// The FUSE minor version negotiated (0: no FUSE_INIT yet).
    fn fuse_minor(&self) -> u32;
    /// The mappings its DAX window holds now (0 without a window).
    fn dax_mappings(&self) -> usize;
    /// Puts `policy` in force; `None` when the session has no policy layer.
    fn policy_layer(&self) -> Option<&dyn PolicyLayer>;
}

/// A session served behind [`PolicyFs`].
pub trait PolicyLayer {
    /// Puts `policy` in force for the session's next requests.
    fn set_policy(&self, policy: Policy);
    /// The policy in force.
    fn policy(&self) -> Arc<Policy>;
}

impl<F: FileSystem> PolicyLayer for PolicyFs<F> {
    fn set_policy(&self, policy: Policy) {
        PolicyFs::set_policy(self, policy)
    }

    fn policy(&self) -> Arc<Policy> {
        PolicyFs::policy(self)
    }
}

/// A file system that may be a policy layer.
pub trait MaybePolicy {
    /// The policy layer, if this is one.
    fn as_policy_layer(&self) -> Option<&dyn PolicyLayer>;
}

impl<F: FileSystem> MaybePolicy for PolicyFs<F> {
    fn as_policy_layer(&self) -> Option<&dyn PolicyLayer> {
        Some(self)
    }
}

impl MaybePolicy for avpfs_passthrough::PassthroughFs {
    fn as_policy_layer(&self) -> Option<&dyn PolicyLayer> {
        None
    }
}

impl<F: FileSystem + MaybePolicy> ServerView for Server<F> {
    fn stats(&self) -> StatsSnapshot {
        Server::stats(self).snapshot()
    }

    fn usage(&self) -> Usage {
        self.fs().usage()
    }

    fn fuse_minor(&self) -> u32 {
        self.negotiated_minor()
    }

    fn dax_mappings(&self) -> usize {
        Server::dax_mappings(self)
    }

    fn policy_layer(&self) -> Option<&dyn PolicyLayer> {
        self.fs().as_policy_layer()
    }
}

/// Where a session is served, for status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    /// vhost-user-fs on a socket (path, or `fd N`).
    VhostUser {
        /// The socket.
        socket: String,
        /// The mount tag.
        tag: String,
        /// Request queues offered.
        request_queues: usize,
    },
    /// The host's /dev/fuse mount.
    FuseMount(PathBuf),
}

/// One session of the running daemon.
pub struct SessionEntry {
    /// The guest's name.
    pub name: String,
    /// The index of its share.
    pub share: usize,
    /// Where it is served.
    pub transport: Transport,
    /// Its server.
    pub server: Arc<dyn ServerView>,
    /// Whether a client is connected now.
    pub connected: Box<dyn Fn() -> bool + Send + Sync>,
}

/// One share of the running daemon.
#[derive(Debug, Clone)]
pub struct ShareEntry {
    /// Its name.
    pub name: String,
    /// The host directory (as given, outside any sandbox).
    pub shared_dir: PathBuf,
    /// Its cache policy, as a word.
    pub cache: String,
}

use crate::config::ReloadSource;

/// A 9P listener of the running daemon. Each connection is a session of
/// its own behind a `PolicyFs`; the listener keeps the policy new
/// connections start with and a weak reference to each live connection's
/// policy layer, so that a reload reaches the connections already open.
pub struct P9Entry {
    /// The index of its share.
    pub share: usize,
    /// The address it listens on, as `--9p-listen` spells it.
    pub addr: String,
    state: Mutex<P9State>,
    accepted: AtomicU64,
}

/// A 9P listener's policy and its open connections' policy layers, under
/// one lock so that a reload and a new connection cannot miss each other.
struct P9State {
    policy: Arc<Policy>,
    live: Vec<Weak<dyn PolicyLayer + Send + Sync>>,
}

impl P9Entry {
    /// A listener of share `share` on `addr`, its connections under `policy`.
    pub fn new(share: usize, addr: String, policy: Policy) -> Self {
        let state = P9State { policy: Arc::new(policy), live: Vec::new() };
        P9Entry { share, addr, state: Mutex::new(state), accepted: AtomicU64::new(0) }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, P9State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The policy a new connection starts with.
    pub fn policy(&self) -> Arc<Policy> {
        self.state().policy.clone()
    }

    /// Counts a new connection and keeps a weak reference to its policy
    /// layer (dropped connections are forgotten here). A reload that came
    /// between [`P9Entry::policy`] and this call is applied to it now.
    pub fn track(&self, layer: &Arc<dyn PolicyLayer + Send + Sync>) {
        self.accepted.fetch_add(1, Ordering::Relaxed);
        let mut state = self.state();
        state.live.retain(|w| w.strong_count() > 0);
        state.live.push(Arc::downgrade(layer));
        if layer.policy() != state.policy {
            layer.set_policy((*state.policy).clone());
        }
    }

    /// Connections open now.
    pub fn connections(&self) -> usize {
        self.state().live.iter().filter(|w| w.strong_count() > 0).count()
    }

    /// Connections accepted since the start.
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }

    /// Puts `policy` in force for new connections and for every open one
    /// (under the lock [`P9Entry::track`] takes, so no connection is missed).
    fn set_policy(&self, policy: Policy) {
        let mut state = self.state();
        state.policy = Arc::new(policy.clone());
        for layer in state.live.iter().filter_map(Weak::upgrade) {
            layer.set_policy(policy.clone());
        }
    }
}

/// The running daemon, as the control socket and the metrics see it.
pub struct Registry {
    /// Its shares.
    pub shares: Vec<ShareEntry>,
    /// Its sessions.
    pub sessions: Vec<SessionEntry>,
    /// Its 9P listeners.
    pub p9: Vec<Arc<P9Entry>>,
    /// When it started.
    pub started: Instant,
    reload: Option<ReloadSource>,
    /// Reloads are one at a time.
    reload_lock: Mutex<()>,
}

impl Registry {
    /// A registry of `shares` and `sessions`; `reload` is where a reload
    /// reads the policies again (none: nothing to reload).
    pub fn new(
        shares: Vec<ShareEntry>,
        sessions: Vec<SessionEntry>,
        p9: Vec<Arc<P9Entry>>,
        reload: Option<ReloadSource>,
    ) -> Self {
        Registry { shares, sessions, p9, started: Instant::now(), reload, reload_lock: Mutex::new(()) }
    }

    /// The file a reload reads first (the configuration, or the `--policy`
    /// file), and whether it is a daemon configuration.
    pub fn reload_file(&self) -> Option<(&Path, bool)> {
        let source = self.reload.as_ref()?;
        Some((source.main_file()?, matches!(source, ReloadSource::ConfigFile { .. })))
    }

    /// Re-reads the configuration and puts each session's new policy in
    /// force. The files are read from `files` when given (their texts, sent
    /// by a client outside the sandbox), else from disk. All or nothing: an
    /// invalid file, or a policy a session cannot take (one served without
    /// a policy layer), changes nothing. Returns the names of the sessions
    /// whose policy changed, and `9p ADDR` for each 9P listener whose
    /// policy changed (with every connection it has open).
    pub fn reload(&self, files: Option<&HashMap<PathBuf, String>>) -> Result<Vec<String>, String> {
        let _one = self.reload_lock.lock().unwrap_or_else(|e| e.into_inner());
        let source = self.reload.as_ref().ok_or("nothing to reload: no --config and no --policy file")?;
        let read = |p: &Path| -> std::io::Result<String> {
            match files {
                Some(f) => f.get(p).cloned().ok_or_else(|| {
                    std::io::Error::new(std::io::ErrorKind::NotFound, "not sent with the reload request")
                }),
                None => std::fs::read_to_string(p),
            }
        };
        let reloaded = source.policies(&read)?;
        let mut policies = reloaded.guests;
        if matches!(source, ReloadSource::CommandLine(_)) {
            // The command line's one policy, for its session if it has one.
            policies.truncate(self.sessions.len());
        }
        let p9: Vec<String> = self.p9.iter().map(|l| l.addr.clone()).collect();
        let p9_now: Vec<String> = reloaded.p9.iter().map(|(a, _)| a.clone()).collect();
        if p9 != p9_now {
            return Err(format!("the 9P listeners would change from {p9:?} to {p9_now:?}: that needs a restart"));
        }
        if policies.len() != self.sessions.len() {
            return Err(format!(
                "the configuration now has {} guests where {} run: adding or removing guests needs a restart",
                policies.len(),
                self.sessions.len()
            ));
        }
        for (s, p) in self.sessions.iter().zip(&policies) {
            if s.server.policy_layer().is_none() && !p.is_permissive() {
                return Err(format!(
                    "guest {:?} is served without a policy layer: restart to give it a policy",
                    s.name
                ));
            }
        }
        let mut changed = Vec::new();
        for (s, p) in self.sessions.iter().zip(policies) {
            if let Some(layer) = s.server.policy_layer() {
                if *layer.policy() != p {
                    layer.set_policy(p);
                    changed.push(s.name.clone());
                }
            }
        }
        for (l, (_, p)) in self.p9.iter().zip(reloaded.p9) {
            if *l.policy() != p {
                l.set_policy(p);
                changed.push(format!("9p {}", l.addr));
            }
        }
        Ok(changed)
    }
}

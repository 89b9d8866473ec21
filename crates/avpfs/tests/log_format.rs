//! `--log-format json`: one JSON object per line, each session's events
//! (the policy layer's audit lines included) naming the guest and the share,
//! and nothing per request at the info level.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use vhost_harness::fuse::FuseClient;
use vhost_harness::Harness;

#[test]
fn json_lines_name_the_guest_and_share_and_requests_are_not_logged() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    std::fs::create_dir(p("share")).unwrap();
    std::fs::write(p("share/a"), "x").unwrap();
    std::fs::write(p("ro.toml"), "[share]\nreadonly = true\naudit = true\n").unwrap();
    std::fs::write(
        p("avpfs.toml"),
        "[[share]]\nname = \"data\"\nshared_dir = \"share\"\n\n\
         [[guest]]\nname = \"vm1\"\nsocket_path = \"vm1.sock\"\nshare = \"data\"\npolicy = \"ro.toml\"\n",
    )
    .unwrap();
    let log = std::fs::File::create(p("log")).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_avpfs"))
        .arg("--config")
        .arg(p("avpfs.toml"))
        .args(["--log-format", "json", "--log-level", "info"])
        .env_remove("AVPFS_LOG")
        .stdin(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !p("vm1.sock").exists() {
        assert!(Instant::now() < deadline && child.try_wait().unwrap().is_none(), "avpfs did not listen");
        std::thread::sleep(Duration::from_millis(20));
    }
    {
        let h = Harness::start(p("vm1.sock"), 2).unwrap();
        let c = FuseClient::new(&h, 1);
        c.init().unwrap();
        for _ in 0..200 {
            c.lookup(1, "a").unwrap();
        }
        // Denied by the guest's read-only policy: one audit line.
        assert!(c.mkdir(1, "d", 0o755).is_err());
    }
    std::thread::sleep(Duration::from_millis(300));
    avpfs_sys::process::kill(child.id() as i32, libc::SIGTERM).unwrap();
    child.wait().unwrap();

    let text = std::fs::read_to_string(p("log")).unwrap();
    let events: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}")))
        .collect();
    assert!(events.iter().all(|e| e["ts"].is_string() && e["level"].is_string() && e["msg"].is_string()));
    let of_guest: Vec<&Value> = events.iter().filter(|e| e["guest"] == "vm1" && e["share"] == "data").collect();
    assert!(of_guest.iter().any(|e| e["msg"].as_str().unwrap().contains("front end connected")), "{text}");
    let audit: Vec<&&Value> = of_guest.iter().filter(|e| e["target"] == "avpfs::audit").collect();
    assert_eq!(audit.len(), 1, "{text}");
    assert!(audit[0]["msg"].as_str().unwrap().contains("denied"), "{text}");
    assert!(events.len() < 40, "{} lines for 200 requests: something logs per request\n{text}", events.len());
}

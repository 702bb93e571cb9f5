//! The hub's REST API under schemathesis: `scripts/api-fuzz.sh --no-setup` starts the debug
//! `hub` with its managed `chp-proxy` and fuzzes every operation of
//! `docs/reference/hub-openapi.yaml` (no 5xx, only documented statuses, content types and
//! bodies). The venv with schemathesis comes from `scripts/test-deps.sh`; this test installs
//! nothing and fails, naming that script, when it is missing.

use std::io::Read as _;
use std::os::unix::process::CommandExt as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use workspace_tests::bins;

/// The script's own run takes well under a minute; a hub that hangs must not hold the suite.
const WITHIN: Duration = Duration::from_secs(240);

#[test]
fn schemathesis_finds_no_failure() {
    let script = bins::workspace_root().join("scripts").join("api-fuzz.sh");
    // Its progress lines (stderr) and schemathesis' report (stdout), in one stream.
    let mut child = Command::new("bash")
        .arg("-c")
        .arg(r#"exec bash "$0" --no-setup 2>&1"#)
        .arg(&script)
        .env("HUB_BIN", bins::hub())
        .env("CHP_PROXY_BIN", bins::chp_proxy())
        .env("JHRS_CACHE", bins::jhrs_cache())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .expect("bash runs scripts/api-fuzz.sh");
    // Read on a thread, so that the pipe never fills.
    let mut stdout = child.stdout.take().expect("a piped stdout");
    let reader = std::thread::spawn(move || {
        let mut out = String::new();
        let _ = stdout.read_to_string(&mut out);
        out
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for the script") {
            break Some(status);
        }
        if started.elapsed() > WITHIN {
            let group = Pid::from_raw(i32::try_from(child.id()).expect("a pid"));
            let _ = killpg(group, Signal::SIGTERM);
            std::thread::sleep(Duration::from_secs(5));
            let _ = killpg(group, Signal::SIGKILL);
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let output = reader.join().unwrap_or_default();
    match status {
        Some(status) => assert!(
            status.success(),
            "scripts/api-fuzz.sh failed ({status}):\n{output}"
        ),
        None => panic!("scripts/api-fuzz.sh did not finish within {WITHIN:?}:\n{output}"),
    }
}

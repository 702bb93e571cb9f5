//! Start, poll, stop and port identity with real processes. The servers run as `nobody` (the
//! tests run as root, so the spawner runs each server as the account named like the user; the
//! superuser's own account is refused).

#![allow(clippy::unwrap_used, reason = "test helpers panic with a line number")]

mod common;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use hub_plugin::{PollStatus, SpawnError, Spawner};
use serde_json::json;

#[tokio::test]
async fn start_poll_answer_stop() {
    let s = spawner(http_server_cmd());
    let (ctx, mut events) = ctx("nobody", "life");
    let started = s.start(&ctx).await.unwrap();
    let st = state_of(&started.state);
    assert_eq!(st.pgid, Some(st.pid));
    assert_eq!(st.start_time, Some(start_time(st.pid)));
    let port = st.port.unwrap();
    assert_eq!(started.url, format!("http://127.0.0.1:{port}"));
    assert_eq!(events.try_recv().unwrap().message, "Spawning server...");

    assert_eq!(
        s.poll(&ctx.server, &started.state).await.unwrap(),
        PollStatus::Running
    );
    let url = format!("{}{}", started.url, ctx.prefix);
    assert_eq!(
        wait_http(&url, Duration::from_secs(10)).await,
        "nobody/life"
    );
    assert!(
        s.confirm_listening(&ctx.server, &started.state, &format!("{url}api"))
            .await
            .unwrap()
    );

    let began = Instant::now();
    s.stop(&ctx.server, &started.state, false).await.unwrap();
    // Python stops on SIGINT: no escalation needed.
    assert!(
        began.elapsed() < Duration::from_secs(1),
        "{:?}",
        began.elapsed()
    );
    assert!(!group_exists(st.pgid()));
    assert!(matches!(
        s.poll(&ctx.server, &started.state).await.unwrap(),
        PollStatus::Stopped(_)
    ));
    assert!(http_get(&url).await.is_none());
    assert!(
        !s.confirm_listening(&ctx.server, &started.state, &url)
            .await
            .unwrap()
    );
    // Stopping again is fine.
    s.stop(&ctx.server, &started.state, false).await.unwrap();
}

#[tokio::test]
async fn exit_status_of_a_server_that_ends() {
    let s = spawner(sh("exit 3"));
    let (ctx, _events) = ctx("nobody", "ends");
    let started = s.start(&ctx).await.unwrap();
    let status = wait_stopped(&s, &ctx.server, &started.state, Duration::from_secs(5)).await;
    assert_eq!(status, Some(3));
}

#[tokio::test]
async fn missing_program_is_a_clear_refusal() {
    let s = spawner(vec!["/nonexistent/jupyterhub-singleuser".into()]);
    let (ctx, _events) = ctx("nobody", "missing");
    match s.start(&ctx).await {
        Err(SpawnError::Refused { message, status }) => {
            assert_eq!(status, 500);
            assert!(
                message.contains("/nonexistent/jupyterhub-singleuser"),
                "{message}"
            );
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn stubborn_server_is_killed_without_blocking_another_stop() {
    // Ignores SIGINT and SIGTERM, and so do the `sleep`s it starts.
    let stubborn = Arc::new(spawner(sh("trap '' INT TERM; while :; do sleep 0.2; done")));
    let polite = Arc::new(spawner(http_server_cmd()));
    let (ctx_a, _ea) = ctx("nobody", "stubborn");
    let (ctx_b, _eb) = ctx("nobody", "polite");
    let a = stubborn.start(&ctx_a).await.unwrap();
    let b = polite.start(&ctx_b).await.unwrap();
    wait_http(
        &format!("{}{}", b.url, ctx_b.prefix),
        Duration::from_secs(10),
    )
    .await;
    // Let the shell install its traps.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let began = Instant::now();
    let stop_a = {
        let (s, server, state) = (stubborn.clone(), ctx_a.server.clone(), a.state.clone());
        tokio::spawn(async move {
            s.stop(&server, &state, false).await.unwrap();
            began.elapsed()
        })
    };
    let stop_b = {
        let (s, server, state) = (polite.clone(), ctx_b.server.clone(), b.state.clone());
        tokio::spawn(async move {
            s.stop(&server, &state, false).await.unwrap();
            began.elapsed()
        })
    };
    let (took_a, took_b) = (stop_a.await.unwrap(), stop_b.await.unwrap());
    assert!(
        took_b < Duration::from_secs(1),
        "the polite stop took {took_b:?}"
    );
    // SIGINT (1 s) and SIGTERM (1 s) are ignored; SIGKILL ends it at once.
    assert!(took_a >= Duration::from_secs(2), "{took_a:?}");
    assert!(took_a < Duration::from_secs(4), "{took_a:?}");
    assert!(!group_exists(state_of(&a.state).pgid()));
    assert!(!group_exists(state_of(&b.state).pgid()));
    assert_eq!(
        stubborn.poll(&ctx_a.server, &a.state).await.unwrap(),
        PollStatus::Stopped(Some(-9))
    );
}

#[tokio::test]
async fn stop_now_skips_the_interrupt() {
    let s = spawner(sh("trap '' INT; while :; do sleep 0.2; done"));
    let (ctx, _events) = ctx("nobody", "now");
    let started = s.start(&ctx).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let began = Instant::now();
    s.stop(&ctx.server, &started.state, true).await.unwrap();
    assert!(
        began.elapsed() < Duration::from_secs(1),
        "{:?}",
        began.elapsed()
    );
    assert!(!group_exists(state_of(&started.state).pgid()));
}

#[tokio::test]
async fn leftover_group_members_are_stopped_too() {
    // The main process exits at once and leaves a background child in its group.
    let s = spawner(sh("sleep 30 & exit 0"));
    let (ctx, _events) = ctx("nobody", "orphans");
    let started = s.start(&ctx).await.unwrap();
    let pgid = state_of(&started.state).pgid();
    wait_stopped(&s, &ctx.server, &started.state, Duration::from_secs(5)).await;
    assert!(group_exists(pgid));
    s.stop(&ctx.server, &started.state, false).await.unwrap();
    assert!(!group_exists(pgid));
}

#[tokio::test]
async fn reused_pid_is_never_taken_for_the_server() {
    let s = spawner(http_server_cmd());
    let server = server("nobody", "reused");
    // A process that is not the server, holding a pid a saved state names.
    let mut stranger = std::process::Command::new("/bin/sleep")
        .arg("30")
        .spawn()
        .unwrap();
    let pid = i32::try_from(stranger.id()).unwrap();
    let real = start_time(pid);
    let wrong = json!({"pid": pid, "start_time": real + 1, "port": 1, "pgid": pid});
    let legacy = json!({"pid": pid});
    for state in [&wrong, &legacy] {
        assert_eq!(
            s.poll(&server, state).await.unwrap(),
            PollStatus::Stopped(None),
            "{state}"
        );
        let began = Instant::now();
        s.stop(&server, state, false).await.unwrap();
        assert!(began.elapsed() < Duration::from_millis(500));
        assert!(
            !s.confirm_listening(&server, state, "http://127.0.0.1:1/")
                .await
                .unwrap()
        );
    }
    // A state naming the hub's own process, even with its true start time, is not a server.
    let me = i32::try_from(std::process::id()).unwrap();
    let hub = json!({"pid": me, "start_time": start_time(me), "pgid": me});
    assert_eq!(
        s.poll(&server, &hub).await.unwrap(),
        PollStatus::Stopped(None)
    );
    s.stop(&server, &hub, true).await.unwrap();
    // Never signalled: still running.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(stranger.try_wait().unwrap().is_none());
    // The same process with its real start time is taken for the server.
    let right = json!({"pid": pid, "start_time": real, "port": 1, "pgid": pid});
    assert_eq!(s.poll(&server, &right).await.unwrap(), PollStatus::Running);
    stranger.kill().unwrap();
    stranger.wait().unwrap();
}

#[tokio::test]
async fn a_stranger_on_the_servers_port_is_not_confirmed() {
    // The server never listens; another process holds the port it was given (the race the
    // check exists for: someone else bound it first).
    let s = spawner(sh("exec sleep 30"));
    let (ctx, _events) = ctx("nobody", "squatted");
    let started = s.start(&ctx).await.unwrap();
    let port = state_of(&started.state).port.unwrap();
    let squatter = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    assert!(
        !s.confirm_listening(&ctx.server, &started.state, &started.url)
            .await
            .unwrap()
    );
    drop(squatter);
    // Nobody listening: not confirmed either.
    assert!(
        !s.confirm_listening(&ctx.server, &started.state, &started.url)
            .await
            .unwrap()
    );
    s.stop(&ctx.server, &started.state, true).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_starts_get_distinct_ports() {
    const N: usize = 50;
    let s = Arc::new(spawner(http_server_cmd()));
    let mut starts = tokio::task::JoinSet::new();
    for i in 0..N {
        let s = s.clone();
        starts.spawn(async move {
            let (ctx, _events) = ctx("nobody", &format!("c{i}"));
            let started = s.start(&ctx).await.unwrap();
            (i, ctx, started)
        });
    }
    let mut servers = Vec::new();
    while let Some(done) = starts.join_next().await {
        servers.push(done.unwrap());
    }
    servers.sort_by_key(|(i, _, _)| *i);
    let ports: HashSet<u16> = servers
        .iter()
        .map(|(_, _, st)| state_of(&st.state).port.unwrap())
        .collect();
    assert_eq!(ports.len(), N, "ports handed out twice");

    // Every server answers as itself.
    let mut checks = tokio::task::JoinSet::new();
    for (i, ctx, started) in &servers {
        let url = format!("{}{}", started.url, ctx.prefix);
        let i = *i;
        checks.spawn(async move { (i, wait_http(&url, Duration::from_secs(30)).await) });
    }
    while let Some(done) = checks.join_next().await {
        let (i, body) = done.unwrap();
        assert_eq!(body, format!("nobody/c{i}"));
    }

    for (i, (_, ctx, started)) in servers.iter().enumerate() {
        assert!(
            s.confirm_listening(&ctx.server, &started.state, &started.url)
                .await
                .unwrap(),
            "server {i} not confirmed on its own port"
        );
        let (_, _, other) = &servers[(i + 1) % N];
        assert!(
            !s.confirm_listening(&ctx.server, &started.state, &other.url)
                .await
                .unwrap(),
            "server {i} confirmed on another server's port"
        );
    }

    let mut stops = tokio::task::JoinSet::new();
    for (_, ctx, started) in servers {
        let s = s.clone();
        stops.spawn(async move {
            s.stop(&ctx.server, &started.state, false).await.unwrap();
            state_of(&started.state).pgid()
        });
    }
    while let Some(done) = stops.join_next().await {
        assert!(!group_exists(done.unwrap()));
    }
}

/// Captures log lines written while the test runs on this thread.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn server_output_goes_to_the_hub_log_with_a_prefix() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    // A current-thread runtime: the forwarding tasks run on this thread, under this subscriber.
    let _guard = tracing::subscriber::set_default(subscriber);
    let s = spawner(sh("echo hello-out; echo hello-err >&2; exec sleep 30"));
    let (ctx, _events) = ctx("nobody", "logs");
    let started = s.start(&ctx).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let text = String::from_utf8_lossy(&captured.0.lock().unwrap()).into_owned();
        if text.contains("[nobody/logs] hello-out") && text.contains("[nobody/logs] hello-err") {
            assert!(text.contains("spawner_local::server"), "{text}");
            break;
        }
        assert!(Instant::now() < deadline, "not logged: {text}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    s.stop(&ctx.server, &started.state, true).await.unwrap();
}

#[tokio::test]
async fn server_output_goes_to_a_log_file_when_configured() {
    use std::os::unix::fs::PermissionsExt;

    let dir = tempfile::tempdir().unwrap();
    let mut config = config(sh("echo to-file; echo err-file >&2; exec sleep 30"));
    config.log_dir = Some(dir.path().to_path_buf());
    let s = spawner_local::LocalProcessSpawner::new(config);
    let (ctx, _events) = ctx("nobody", "filed");
    let started = s.start(&ctx).await.unwrap();
    let path = dir.path().join("nobody-filed.log");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        if text.contains("to-file\n") && text.contains("err-file\n") {
            break;
        }
        assert!(Instant::now() < deadline, "not written: {text:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    s.stop(&ctx.server, &started.state, true).await.unwrap();
}

#[tokio::test]
async fn a_command_from_the_hub_replaces_the_configured_one() {
    // The configured command would fail at once; the hub's (a profile's) is used instead.
    let s = spawner(vec!["/bin/false".into()]);
    let (mut ctx, _events) = ctx("nobody", "profiled");
    ctx.command = Some(http_server_cmd());
    let started = s.start(&ctx).await.unwrap();
    let url = format!("{}{}", started.url, ctx.prefix);
    assert_eq!(
        wait_http(&url, Duration::from_secs(10)).await,
        "nobody/profiled"
    );
    s.stop(&ctx.server, &started.state, true).await.unwrap();
}

//! Servers run as their users' system accounts (the tests run as root). Each test makes its
//! own throwaway accounts and removes them at the end.

#![allow(clippy::unwrap_used, reason = "test helpers panic with a line number")]

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::*;
use hub_plugin::{SpawnError, Spawner};
use nix::unistd::{Group, User};
use spawner_local::LocalProcessSpawner;

/// A name unique to this test run.
fn unique(tag: &str) -> String {
    format!("jhrs{tag}{}", std::process::id())
}

/// Waits until `path` has at least `lines` lines; its text.
async fn wait_file(path: &std::path::Path, lines: usize) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(text) = std::fs::read_to_string(path)
            && text.lines().count() >= lines
        {
            return text;
        }
        assert!(Instant::now() < deadline, "{} not written", path.display());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn runs_as_the_users_account_with_its_groups_and_environment() {
    let name = unique("u");
    let group = unique("g");
    let _account = TempUser::create(&name, Some(&group));
    let user = User::from_name(&name).unwrap().unwrap();
    let extra = Group::from_name(&group).unwrap().unwrap();

    let mut config = config(sh(
        "{ id -u; id -g; id -G; pwd; } > ids.txt; env > env.txt; exec sleep 30",
    ));
    config
        .environment
        .insert("GREETING".into(), "hello {username}".into());
    let s = LocalProcessSpawner::new(config);
    let (mut ctx, _events) = ctx(&name, "");
    // Something of the hub's own that is not meant for servers.
    ctx.env.remove("JUPYTERHUB_API_TOKEN");
    let started = s.start(&ctx).await.unwrap();
    let st = state_of(&started.state);
    assert_eq!(uid_of(st.pid), user.uid.as_raw());

    let ids = wait_file(&user.dir.join("ids.txt"), 4).await;
    let lines: Vec<&str> = ids.lines().collect();
    assert_eq!(lines[0], user.uid.to_string());
    assert_eq!(lines[1], user.gid.to_string());
    let groups: Vec<u32> = lines[2]
        .split_whitespace()
        .map(|g| g.parse().unwrap())
        .collect();
    assert!(groups.contains(&user.gid.as_raw()), "{groups:?}");
    assert!(groups.contains(&extra.gid.as_raw()), "{groups:?}");
    assert!(!groups.contains(&0), "root's group kept: {groups:?}");
    assert_eq!(std::path::Path::new(lines[3]), user.dir);

    let env_text = wait_file(&user.dir.join("env.txt"), 5).await;
    let env: HashMap<&str, &str> = env_text.lines().filter_map(|l| l.split_once('=')).collect();
    assert_eq!(env["USER"], name);
    assert_eq!(std::path::Path::new(env["HOME"]), user.dir);
    assert_eq!(std::path::Path::new(env["SHELL"]), user.shell);
    assert_eq!(env["GREETING"], format!("hello {name}"));
    assert_eq!(
        env["JUPYTERHUB_SERVICE_URL"],
        format!("http://127.0.0.1:{}/user/{name}/", st.port.unwrap())
    );
    assert_eq!(env["JUPYTERHUB_USER"], name);
    assert!(env.contains_key("PATH"), "env_keep passes PATH on");
    assert!(!env.contains_key("JUPYTERHUB_API_TOKEN"));
    assert!(
        !env.keys().any(|k| k.starts_with("CARGO")),
        "the hub's environment leaked"
    );

    s.stop(&ctx.server, &started.state, false).await.unwrap();
    assert!(!group_exists(st.pgid()));
}

#[tokio::test]
async fn missing_accounts_are_refused_or_created() {
    // Without create_system_users: a clear refusal.
    let missing = unique("m");
    let s = spawner(sh("exec sleep 30"));
    let (ctx_missing, _e) = ctx(&missing, "");
    match s.start(&ctx_missing).await {
        Err(SpawnError::Refused { message, .. }) => {
            assert!(message.contains("no system account"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    assert!(User::from_name(&missing).unwrap().is_none());

    // With it: created with a home directory, and the server runs as it.
    let mut config = config(sh("exec sleep 30"));
    config.create_system_users = true;
    let s = LocalProcessSpawner::new(config);
    let created = unique("c");
    let _cleanup = TempUser::adopt(&created);
    let (ctx, mut events) = ctx(&created, "");
    let started = s.start(&ctx).await.unwrap();
    let user = User::from_name(&created).unwrap().expect("account created");
    assert!(user.dir.is_dir());
    assert_eq!(uid_of(state_of(&started.state).pid), user.uid.as_raw());
    let mut messages = Vec::new();
    while let Ok(event) = events.try_recv() {
        messages.push(event.message);
    }
    assert!(
        messages
            .iter()
            .any(|m| m.contains("Creating the system account")),
        "{messages:?}"
    );
    s.stop(&ctx.server, &started.state, true).await.unwrap();

    // Hub names that are not system user names never reach useradd.
    for bad in ["Bad.Name", "someone@example.org", "-rf"] {
        let (bad_ctx, _e) = common::ctx(bad, "");
        match s.start(&bad_ctx).await {
            Err(SpawnError::Refused { message, .. }) => {
                assert!(
                    message.contains("not a valid system user name"),
                    "{message}"
                );
            }
            other => panic!("{bad}: {other:?}"),
        }
        assert!(User::from_name(bad).unwrap().is_none());
    }
}

#[tokio::test]
async fn the_superuser_never_gets_a_server() {
    let marker = std::env::temp_dir().join(unique("root-ran"));
    let s = spawner(sh(&format!("touch {} && exec sleep 30", marker.display())));
    let (ctx, _e) = ctx("root", "");
    match s.start(&ctx).await {
        Err(SpawnError::Refused { message, status }) => {
            assert_eq!(status, 403);
            assert!(message.contains("superuser"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    assert!(!marker.exists(), "the command ran");
}

//! The Slurm preset against a real single-node Slurm (`scripts/slurm-test-cluster.sh`, started
//! on first use): jobs run as their users, servers report their ports, jobs are polled,
//! cancelled, resumed by a new spawner, and failures say why. Run as root (accounts are
//! created and removed; commands switch to them).

#![allow(clippy::unwrap_used, reason = "test code panics with a line number")]

mod common;

use std::time::{Duration, Instant};

use common::*;
use hub_plugin::{PollStatus, ServerReport, SpawnError, Spawner};
use serde_json::{Value, json};
use spawner_slurm::{BatchSpawner, JobRecord};

fn refusal(result: Result<hub_plugin::Started, SpawnError>) -> String {
    match result {
        Err(SpawnError::Refused { message, .. }) => message,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn a_job_runs_as_its_user_reports_its_port_and_stop_cancels_it() {
    cluster();
    let user = TempUser::create("run");
    let spawner = BatchSpawner::new(slurm_config()).unwrap();
    assert_eq!(spawner.kind(), "slurm");
    let hub = ReportEndpoint::start(spawner.clone()).await;
    let (ctx, mut events) = hub.ctx(&user.name, "");
    let began = Instant::now();
    let started = spawner.start(&ctx).await.unwrap();
    eprintln!("started in {:?}", began.elapsed());

    let record = JobRecord::from_value(&started.state).unwrap();
    let node = run("hostname", &["-s"]).trim().to_owned();
    assert_eq!(record.host.as_deref(), Some(node.as_str()));
    let port = record.port.unwrap();
    assert_eq!(started.url, format!("http://{node}:{port}"));

    // The server answers where the spawner says, from inside the job, as the user.
    let answer = http_get(&format!("{}/user/{}/api", started.url, user.name))
        .await
        .unwrap();
    assert_eq!(answer["user"], json!(user.name));
    assert_eq!(answer["uid"], json!(user.uid()));
    assert_eq!(answer["job"], json!(record.job_id));
    // Slurm has it as the user's job, named after the server.
    let info = scontrol(&record.job_id);
    assert!(
        info.contains(&format!("UserId={}({})", user.name, user.uid())),
        "{info}"
    );
    assert!(
        info.contains(&format!("JobName=jupyterhub-{}", user.name)),
        "{info}"
    );
    assert!(info.contains("JobState=RUNNING"), "{info}");

    let seen = messages(&mut events);
    assert!(
        seen.iter()
            .any(|m| m == &format!("Job {} submitted", record.job_id)),
        "{seen:?}"
    );
    assert!(
        seen.iter()
            .any(|m| m.starts_with(&format!("Job {} is running on {node}", record.job_id))),
        "{seen:?}"
    );

    assert_eq!(
        spawner.poll(&ctx.server, &started.state).await.unwrap(),
        PollStatus::Running
    );
    // A report for a server that is not starting is refused.
    match spawner
        .server_reported(&ctx.server, &ServerReport { port: 1234 })
        .await
    {
        Err(SpawnError::Refused { status: 409, .. }) => {}
        other => panic!("{other:?}"),
    }

    spawner
        .stop(&ctx.server, &started.state, false)
        .await
        .unwrap();
    // `stop` returns once Slurm no longer runs the job.
    assert_eq!(job_state(&record.job_id), "CANCELLED");
    assert_eq!(
        spawner.poll(&ctx.server, &started.state).await.unwrap(),
        PollStatus::Stopped(None)
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while http_get(&format!("{}/", started.url)).await.is_some() {
        assert!(Instant::now() < deadline, "the server still answers");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Stopping again is not an error.
    spawner
        .stop(&ctx.server, &started.state, true)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_new_spawner_resumes_from_the_saved_state() {
    cluster();
    let user = TempUser::create("res");
    let first = BatchSpawner::new(slurm_config()).unwrap();
    let hub = ReportEndpoint::start(first.clone()).await;
    let (ctx, _events) = hub.ctx(&user.name, "gpu");
    let started = first.start(&ctx).await.unwrap();
    let record = JobRecord::from_value(&started.state).unwrap();
    assert!(scontrol(&record.job_id).contains(&format!("JobName=jupyterhub-{}-gpu", user.name)));
    drop(hub);
    drop(first);

    // What a restarted hub does: a new spawner, the state from the database.
    let state: Value = serde_json::from_str(&started.state.to_string()).unwrap();
    let second = BatchSpawner::new(slurm_config()).unwrap();
    assert_eq!(
        second.poll(&ctx.server, &state).await.unwrap(),
        PollStatus::Running
    );
    let answer = http_get(&format!("{}/", started.url)).await.unwrap();
    assert_eq!(answer["server"], json!("gpu"));
    second.stop(&ctx.server, &state, false).await.unwrap();
    assert_eq!(job_state(&record.job_id), "CANCELLED");
    wait_stopped(&second, &ctx.server, &state, Duration::from_secs(10)).await;
}

#[tokio::test]
async fn a_failing_job_shows_the_schedulers_reason() {
    cluster();
    let user = TempUser::create("fail");
    let mut config = slurm_config();
    config.cmd = vec![
        "/bin/sh".into(),
        "-c".into(),
        "echo 'no such module' >&2; exit 3".into(),
    ];
    let spawner = BatchSpawner::new(config).unwrap();
    let hub = ReportEndpoint::start(spawner.clone()).await;
    let (ctx, _events) = hub.ctx(&user.name, "");
    let message = refusal(spawner.start(&ctx).await);
    let id = job_id_in(&message).unwrap_or_else(|| panic!("{message}"));
    assert!(
        message.starts_with(&format!("Job {id} ended before the server started (")),
        "{message}"
    );
    assert!(message.contains("state FAILED"), "{message}");
    assert!(message.contains("reason NonZeroExitCode"), "{message}");
    assert!(message.contains("exit code 3:0"), "{message}");
    let log = user.home().join(format!(".jupyterhub-slurm-{id}.log"));
    assert!(
        message.contains(&format!("output {}", log.display())),
        "{message}"
    );
    // The output file is the user's, with what the server said.
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("no such module"), "{text}");
    assert!(active_jobs(&user.name).is_empty());
}

#[tokio::test]
async fn a_job_that_never_starts_times_out_and_is_cancelled() {
    cluster();
    let user = TempUser::create("wait");
    let mut config = slurm_config();
    config.start_timeout = Duration::from_secs(4);
    let spawner = BatchSpawner::new(config).unwrap();
    let hub = ReportEndpoint::start(spawner.clone()).await;
    let (mut ctx, mut events) = hub.ctx(&user.name, "");
    // The `closed` partition takes jobs and never runs them.
    ctx.user_options = spawner
        .validate_options(json!({"partition": ["closed"]}))
        .unwrap();
    let began = Instant::now();
    let message = refusal(spawner.start(&ctx).await);
    let took = began.elapsed();
    assert!(
        took >= Duration::from_secs(4) && took < Duration::from_secs(20),
        "{took:?}"
    );
    let id = job_id_in(&message).unwrap_or_else(|| panic!("{message}"));
    assert!(
        message.starts_with(&format!(
            "Job {id} did not start within 4 s: still state PENDING, reason PartitionDown"
        )),
        "{message}"
    );
    assert!(message.ends_with("; it was cancelled."), "{message}");
    assert_eq!(job_state(&id), "CANCELLED");
    let seen = messages(&mut events);
    assert!(
        seen.iter().any(|m| m.starts_with(&format!(
            "Job {id} is queued (state PENDING, reason PartitionDown"
        ))),
        "{seen:?}"
    );
}

#[tokio::test]
async fn a_refused_submission_shows_the_schedulers_message() {
    cluster();
    let user = TempUser::create("ref");
    let mut config = slurm_config();
    config
        .variables
        .insert("constraint".into(), "no-such-feature".into());
    let spawner = BatchSpawner::new(config).unwrap();
    let hub = ReportEndpoint::start(spawner.clone()).await;
    let (ctx, _events) = hub.ctx(&user.name, "");
    let message = refusal(spawner.start(&ctx).await);
    assert!(
        message.starts_with("The batch system refused the job: sbatch: error:"),
        "{message}"
    );
    assert!(
        message.contains("Invalid feature specification"),
        "{message}"
    );
    // Options the operator did not allow never reach the script.
    match spawner.validate_options(json!({"partition": "debug\n#SBATCH --uid=0"})) {
        Err(SpawnError::Refused { status: 400, .. }) => {}
        other => panic!("{other:?}"),
    }
    match spawner.validate_options(json!({"qos": "high"})) {
        Err(SpawnError::Refused { message, .. }) => {
            assert!(
                message.contains("Unknown server option \"qos\""),
                "{message}"
            );
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn an_abandoned_start_cancels_its_job_and_stop_finds_it() {
    cluster();
    let user = TempUser::create("drop");
    let spawner = BatchSpawner::new(slurm_config()).unwrap();
    let hub = ReportEndpoint::start(spawner.clone()).await;
    let (mut ctx, mut events) = hub.ctx(&user.name, "");
    ctx.user_options = json!({"partition": "closed"});
    // The hub drops a start at its own timeout (or when a stop cancels the spawn).
    let mut id = None;
    let mut start = Box::pin(spawner.start(&ctx));
    let deadline = Instant::now() + Duration::from_secs(30);
    while id.is_none() {
        tokio::select! {
            result = &mut start => panic!("the start ended: {result:?}"),
            () = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
        id = messages(&mut events).iter().find_map(|m| job_id_in(m));
        assert!(Instant::now() < deadline, "no job submitted");
    }
    let first = id.unwrap();
    assert_eq!(job_state(&first), "PENDING");
    // While the start runs, the server counts as running although no state was saved yet.
    assert_eq!(
        spawner.poll(&ctx.server, &json!({})).await.unwrap(),
        PollStatus::Running
    );
    drop(start);
    // The dropped start cancels its job by itself.
    wait_job_state(&first, "CANCELLED", Duration::from_secs(10)).await;
    // The hub then stops the server with the state it has (none); that is not an error.
    spawner.stop(&ctx.server, &json!({}), false).await.unwrap();
    assert!(active_jobs(&user.name).is_empty());

    // A stop while the start still runs (the hub cancels the spawn and stops at once) finds
    // the job although no state was saved.
    let _ = messages(&mut events);
    let mut start = Box::pin(spawner.start(&ctx));
    let mut id = None;
    let deadline = Instant::now() + Duration::from_secs(30);
    while id.is_none() {
        tokio::select! {
            result = &mut start => panic!("the start ended: {result:?}"),
            () = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
        id = messages(&mut events).iter().find_map(|m| job_id_in(m));
        assert!(Instant::now() < deadline, "no job submitted");
    }
    let second = id.unwrap();
    assert_ne!(second, first);
    spawner.stop(&ctx.server, &json!({}), false).await.unwrap();
    assert_eq!(job_state(&second), "CANCELLED");
    drop(start);
}

#[tokio::test]
async fn stop_without_a_job_id_cancels_the_servers_jobs_by_name() {
    cluster();
    let user = TempUser::create("name");
    // A job queued by a hub that restarted before it learnt the job id.
    let job_name = format!("--job-name=jupyterhub-{}", user.name);
    let id = run(
        "runuser",
        &[
            "-u",
            &user.name,
            "--",
            "sbatch",
            "--parsable",
            "--partition=closed",
            &job_name,
            "--chdir=/tmp",
            "--output=/dev/null",
            "--wrap=sleep 60",
        ],
    )
    .trim()
    .to_owned();
    // And one of another server of the same user, which must stay.
    let other_name = format!("--job-name=jupyterhub-{}-other", user.name);
    let other = run(
        "runuser",
        &[
            "-u",
            &user.name,
            "--",
            "sbatch",
            "--parsable",
            "--partition=closed",
            &other_name,
            "--chdir=/tmp",
            "--output=/dev/null",
            "--wrap=sleep 60",
        ],
    )
    .trim()
    .to_owned();
    let spawner = BatchSpawner::new(slurm_config()).unwrap();
    let server = server(&user.name, "");
    assert_eq!(
        spawner.poll(&server, &json!({})).await.unwrap(),
        PollStatus::Stopped(None)
    );
    spawner.stop(&server, &json!({}), true).await.unwrap();
    wait_job_state(&id, "CANCELLED", Duration::from_secs(10)).await;
    assert_eq!(job_state(&other), "PENDING");
}

#[tokio::test]
async fn a_fixed_port_needs_no_report() {
    cluster();
    let user = TempUser::create("port");
    let port = {
        let probe = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let mut config = slurm_config();
    config.port = port;
    let spawner = BatchSpawner::new(config).unwrap();
    let hub = ReportEndpoint::start(spawner.clone()).await;
    let (ctx, _events) = hub.ctx(&user.name, "");
    let started = spawner.start(&ctx).await.unwrap();
    assert!(
        started.url.ends_with(&format!(":{port}")),
        "{}",
        started.url
    );
    // Running does not mean listening yet: the hub's readiness check waits for that.
    let deadline = Instant::now() + Duration::from_secs(20);
    let answer = loop {
        if let Some(answer) = http_get(&format!("{}/", started.url)).await {
            break answer;
        }
        assert!(Instant::now() < deadline, "nothing listens on {port}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(answer["uid"], json!(user.uid()));
    spawner
        .stop(&ctx.server, &started.state, true)
        .await
        .unwrap();
    let record = JobRecord::from_value(&started.state).unwrap();
    wait_job_state(&record.job_id, "CANCELLED", Duration::from_secs(10)).await;
}

#[tokio::test]
async fn users_without_an_account_or_with_uid_0_are_refused() {
    cluster();
    let spawner = BatchSpawner::new(slurm_config()).unwrap();
    let hub = ReportEndpoint::start(spawner.clone()).await;
    let (ctx, _events) = hub.ctx("jhsl-no-such-account", "");
    let message = refusal(spawner.start(&ctx).await);
    assert!(message.contains("no system account named"), "{message}");
    let (ctx, _events) = hub.ctx("root", "");
    let message = refusal(spawner.start(&ctx).await);
    assert!(message.contains("never run as the superuser"), "{message}");
}

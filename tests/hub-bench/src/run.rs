//! `hub-bench run`: the measurement sequence, the same for both hubs, then the report.
//!
//! For each hub: start it (with its own proxy and a fresh database), create users one by one
//! and in bulk, load `GET /user` and `GET /users` pages from N keep-alive connections, start
//! and stop servers one after another, and read its resident memory.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use hyper::StatusCode;
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::client::{Client, Req};
use crate::load::{self, MakeReq};
use crate::procs::{self, Snapshot};
use crate::report::{self, Figures, Load, Ops};
use crate::subjects::{Kind, ProxyProgram, Setup, Subject, start_upstream};

/// Which proxy the hubs talk to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ProxyChoice {
    /// Our `chp-proxy` (release build next to this program, or `--chp-proxy`).
    ChpProxy,
    /// configurable-http-proxy 5.3.0 from npm (`scripts/test-deps.sh` installs it).
    Chp,
}

/// Options of `hub-bench run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Users to create: the first half one by one, the rest in bulk.
    #[arg(long, default_value_t = 1000)]
    pub users: usize,
    /// Users per bulk `POST /users` request.
    #[arg(long, default_value_t = 100)]
    pub bulk: usize,
    /// Servers to start and stop, one after another.
    #[arg(long, default_value_t = 100)]
    pub servers: usize,
    /// Seconds of each measured load run.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Seconds of unrecorded load before each measured load run.
    #[arg(long, default_value_t = 2.0)]
    pub warmup: f64,
    /// Concurrent keep-alive connections of the load runs.
    #[arg(long, default_value_t = 10)]
    pub connections: usize,
    /// Hubs to measure, from `jupyterhub,ours`.
    #[arg(long, value_delimiter = ',', default_value = "jupyterhub,ours")]
    pub only: Vec<String>,
    /// The venv holding `jupyterhub` 6.1.1 (default: the one `scripts/python-test-env.sh`
    /// makes, `${JHRS_CACHE:-~/.cache/jupyterhub-rs}/venv`).
    #[arg(long)]
    pub venv: Option<PathBuf>,
    /// The proxy both hubs use.
    #[arg(long, value_enum, default_value_t = ProxyChoice::ChpProxy)]
    pub proxy: ProxyChoice,
    /// The `chp-proxy` binary (default: next to this program).
    #[arg(long)]
    pub chp_proxy: Option<PathBuf>,
    /// configurable-http-proxy's script (default: the npm install in the cache).
    #[arg(long)]
    pub chp_script: Option<PathBuf>,
    /// Core the hub runs on.
    #[arg(long, default_value_t = 0)]
    pub hub_core: u32,
    /// Core this program (the load) and the proxy run on.
    #[arg(long, default_value_t = 1)]
    pub load_core: u32,
    /// Do not pin anything to cores.
    #[arg(long)]
    pub no_pin: bool,
    /// Before each measured step, wait up to this many seconds for other processes to leave
    /// the CPUs alone (under 10% of a core).
    #[arg(long, default_value_t = 0.0)]
    pub wait_idle: f64,
    /// Also write the figures as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Keep each hub's folder (config, database, logs) under this folder.
    #[arg(long)]
    pub keep_logs: Option<PathBuf>,
    /// Exit with status 1 when a target is missed.
    #[arg(long)]
    pub fail_on_miss: bool,
}

fn cache_dir() -> PathBuf {
    std::env::var_os("JHRS_CACHE").map_or_else(
        || {
            let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
            PathBuf::from(home).join(".cache/jupyterhub-rs")
        },
        PathBuf::from,
    )
}

/// Runs the benchmark; the report goes to stdout, progress to stderr.
pub fn main(args: &RunArgs) -> Result<bool> {
    let pin = !args.no_pin && procs::online_cpus() > args.hub_core.max(args.load_core) as usize;
    if pin {
        // Before the runtime exists, so every thread it starts inherits the core.
        procs::pin_current_thread(args.load_core)?;
    } else if !args.no_pin {
        eprintln!("hub-bench: fewer CPUs than the cores asked for; nothing is pinned");
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(run(args, pin))
}

async fn run(args: &RunArgs, pin: bool) -> Result<bool> {
    for name in &args.only {
        if !["jupyterhub", "ours"].contains(&name.as_str()) {
            bail!("--only: unknown hub {name:?} (expected jupyterhub, ours)");
        }
    }
    if args.users < 2 || args.bulk == 0 || args.servers > args.users {
        bail!("need --users ≥ 2, --bulk ≥ 1 and --servers ≤ --users");
    }
    let self_exe = std::env::current_exe().context("locating this program")?;
    let proxy = match args.proxy {
        ProxyChoice::ChpProxy => {
            let bin = args.chp_proxy.clone().unwrap_or_else(|| {
                self_exe
                    .parent()
                    .map_or_else(|| PathBuf::from("chp-proxy"), |d| d.join("chp-proxy"))
            });
            if !bin.exists() {
                bail!(
                    "{} is missing: build it with `cargo build --release -p chp-proxy` or pass \
                     --chp-proxy",
                    bin.display()
                );
            }
            ProxyProgram::ChpProxy(bin)
        }
        ProxyChoice::Chp => {
            let script = args.chp_script.clone().unwrap_or_else(|| {
                cache_dir()
                    .join("node/node_modules/configurable-http-proxy/bin/configurable-http-proxy")
            });
            if !script.exists() {
                bail!(
                    "{} is missing: run scripts/test-deps.sh or pass --chp-script",
                    script.display()
                );
            }
            ProxyProgram::Chp(script)
        }
    };
    let upstream = start_upstream().await?;
    let setup = Setup {
        venv: args
            .venv
            .clone()
            .unwrap_or_else(|| cache_dir().join("venv")),
        proxy,
        self_exe,
        hub_core: pin.then_some(args.hub_core),
        load_core: pin.then_some(args.load_core),
        upstream,
        keep_logs: args.keep_logs.clone(),
    };
    let load_before = procs::load_average();
    eprintln!(
        "hub-bench: {}; load average {}",
        procs::cpu_description(),
        load_before.map_or_else(|| "?".into(), |l| format!("{l:.2}"))
    );

    let mut jh = None;
    let mut ours = None;
    let mut failures = Vec::new();
    for kind in [Kind::JupyterHub, Kind::Ours] {
        let name = match kind {
            Kind::JupyterHub => "jupyterhub",
            Kind::Ours => "ours",
        };
        if !args.only.iter().any(|o| o == name) {
            continue;
        }
        eprintln!("hub-bench: == {} ==", kind.label());
        match measure(kind, &setup, args).await {
            Ok(figures) => match kind {
                Kind::JupyterHub => jh = Some(figures),
                Kind::Ours => ours = Some(figures),
            },
            Err(e) => {
                eprintln!("hub-bench: {} failed: {e:#}", kind.label());
                failures.push(format!("{}: {e:#}", kind.label()));
            }
        }
    }

    let ctx = report::Context {
        connections: args.connections,
        users: args.users,
        bulk: args.bulk,
        servers: args.servers,
    };
    let (table, met) = report::table(&ctx, jh.as_ref(), ours.as_ref());
    println!("{table}");
    let load_after = procs::load_average();
    let all: Vec<&Figures> = jh.iter().chain(ours.iter()).collect();
    let mut notes = report::notes(&all);
    notes.extend(failures.iter().cloned());
    notes.push(format!(
        "Machine: {}; load average {} before, {} after; hub on core {}, load and proxy on core \
         {}; {}-second load runs after {}-second warm-ups; proxy: {}.",
        procs::cpu_description(),
        load_before.map_or_else(|| "?".into(), |l| format!("{l:.2}")),
        load_after.map_or_else(|| "?".into(), |l| format!("{l:.2}")),
        setup
            .hub_core
            .map_or_else(|| "any".into(), |c| c.to_string()),
        setup
            .load_core
            .map_or_else(|| "any".into(), |c| c.to_string()),
        args.duration,
        args.warmup,
        match args.proxy {
            ProxyChoice::ChpProxy => "chp-proxy",
            ProxyChoice::Chp => "configurable-http-proxy",
        }
    ));
    for note in &notes {
        println!("- {note}");
    }
    if let Some(path) = &args.json {
        let doc = json!({
            "machine": procs::cpu_description(),
            "load_average_before": load_before,
            "load_average_after": load_after,
            "settings": {
                "users": args.users, "bulk": args.bulk, "servers": args.servers,
                "connections": args.connections, "duration_s": args.duration,
                "warmup_s": args.warmup, "pinned": pin,
            },
            "jupyterhub": jh.as_ref().map(Figures::to_json),
            "ours": ours.as_ref().map(Figures::to_json),
            "targets_met": met,
            "notes": notes,
        });
        std::fs::write(path, serde_json::to_string_pretty(&doc)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(failures.is_empty() && (met || !args.fail_on_miss))
}

/// Snapshots around a sequence of operations: wall time, hub CPU, others' CPU.
struct Meter {
    started: Instant,
    hub_ticks: u64,
    own_ticks: u64,
    snapshot: Snapshot,
}

/// What a [`Meter`] saw.
struct Metered {
    secs: f64,
    hub_cpu_ms: f64,
    /// This process (the client) in percent of a core.
    client_pct: f64,
    /// Other processes in percent of a core.
    others_pct: f64,
}

impl Meter {
    fn start(subject: &Subject) -> Result<Self> {
        Ok(Self {
            snapshot: Snapshot::take(&[&subject.hub, &subject.proxy])?,
            hub_ticks: subject.hub.cpu_ticks()?,
            own_ticks: procs::own_ticks()?,
            started: Instant::now(),
        })
    }

    fn finish(&self, subject: &Subject) -> Result<Metered> {
        let secs = self.started.elapsed().as_secs_f64();
        let ms = |ticks: u64| ticks as f64 * 1000.0 / procs::clock_ticks_per_sec() as f64;
        let hub = subject.hub.cpu_ticks()?.saturating_sub(self.hub_ticks);
        let own = procs::own_ticks()?.saturating_sub(self.own_ticks);
        let later = Snapshot::take(&[&subject.hub, &subject.proxy])?;
        Ok(Metered {
            secs,
            hub_cpu_ms: ms(hub),
            client_pct: ms(own) / secs / 10.0,
            others_pct: self.snapshot.others_percent(&later, secs),
        })
    }

    fn ops(&self, subject: &Subject, times_ms: Vec<f64>, items_per_op: usize) -> Result<Ops> {
        let m = self.finish(subject)?;
        Ok(Ops {
            items_per_op,
            times_ms,
            total_s: m.secs,
            hub_cpu_ms: m.hub_cpu_ms,
            others_pct: m.others_pct,
        })
    }
}

/// Waits up to `--wait-idle` seconds for other processes to use under 10% of a core.
async fn wait_idle(subject: &Subject, args: &RunArgs) -> Result<()> {
    if args.wait_idle <= 0.0 {
        return Ok(());
    }
    let deadline = Instant::now() + Duration::from_secs_f64(args.wait_idle);
    loop {
        let before = Snapshot::take(&[&subject.hub, &subject.proxy])?;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let after = Snapshot::take(&[&subject.hub, &subject.proxy])?;
        let others = before.others_percent(&after, 1.0);
        if others < 10.0 {
            return Ok(());
        }
        if Instant::now() > deadline {
            eprintln!(
                "hub-bench: other processes still use {others:.0}% of a core; measuring anyway"
            );
            return Ok(());
        }
    }
}

fn user_name(i: usize) -> String {
    format!("u{i:05}")
}

async fn measure(kind: Kind, setup: &Setup, args: &RunArgs) -> Result<Figures> {
    let mut subject = Subject::start(kind, setup).await?;
    let result = measure_subject(&mut subject, args).await;
    let stopped = subject.stop(setup.keep_logs.as_deref()).await;
    let figures = result?;
    stopped?;
    Ok(figures)
}

async fn measure_subject(subject: &mut Subject, args: &RunArgs) -> Result<Figures> {
    let mut figs = Figures {
        label: subject.kind.label().to_owned(),
        version: subject.version.clone(),
        ..Figures::default()
    };
    eprintln!("hub-bench: {} {} is up", figs.label, figs.version);
    // Let startup work (route sync, first polls) settle before reading memory.
    tokio::time::sleep(Duration::from_secs(2)).await;
    figs.rss_start_kib = Some(subject.hub.memory_kib()?.0);
    let admin = subject.admin_token.clone();
    let mut client = Client::new(subject.addr);
    let names: Vec<String> = (0..args.users).map(user_name).collect();
    let one_by_one = args.users - args.users / 2;

    // Users, one by one.
    wait_idle(subject, args).await?;
    eprintln!("hub-bench: creating {one_by_one} users one by one");
    let meter = Meter::start(subject)?;
    let mut times = Vec::with_capacity(one_by_one);
    for name in &names[..one_by_one] {
        let req = Req::post(format!("/hub/api/users/{name}"), &json!({})).token(&admin);
        let t = Instant::now();
        client
            .send(&req)
            .await?
            .expect(StatusCode::CREATED, &req.describe())?;
        times.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    figs.create_one = meter.ops(subject, times, 1)?;
    subject.hub.ensure_running()?;

    // Users, in bulk.
    wait_idle(subject, args).await?;
    eprintln!(
        "hub-bench: creating {} users, {} per request",
        args.users - one_by_one,
        args.bulk
    );
    let meter = Meter::start(subject)?;
    let mut times = Vec::new();
    for chunk in names[one_by_one..].chunks(args.bulk) {
        let req = Req::post("/hub/api/users", &json!({ "usernames": chunk })).token(&admin);
        let t = Instant::now();
        let reply = client
            .send(&req)
            .await?
            .expect(StatusCode::CREATED, &req.describe())?;
        times.push(t.elapsed().as_secs_f64() * 1000.0);
        let created = reply.json().as_array().map_or(0, Vec::len);
        if created != chunk.len() {
            bail!(
                "POST /hub/api/users created {created} of {} users",
                chunk.len()
            );
        }
    }
    figs.create_bulk = meter.ops(subject, times, args.bulk)?;
    let reply = client
        .send(&Req::get("/hub/api/users?limit=1").token(&admin).paginated())
        .await?
        .expect(StatusCode::OK, "GET /hub/api/users?limit=1")?;
    let total = reply.json()["_pagination"]["total"].as_u64().unwrap_or(0);
    if total < args.users as u64 {
        bail!(
            "the hub lists {total} users, expected at least {}",
            args.users
        );
    }

    // GET /user with a user's token.
    let req = Req::post(
        format!("/hub/api/users/{}/tokens", names[0]),
        &json!({"note": "hub-bench"}),
    )
    .token(&admin);
    let reply = client
        .send(&req)
        .await?
        .expect(StatusCode::CREATED, &req.describe())?;
    let user_token = reply.json()["token"]
        .as_str()
        .context("no token in the reply to POST /users/{name}/tokens")?
        .to_owned();
    let reply = client
        .send(&Req::get("/hub/api/user").token(&user_token))
        .await?
        .expect(StatusCode::OK, "GET /hub/api/user")?;
    if reply.json()["name"] != names[0].as_str() {
        bail!("GET /hub/api/user answered {}", reply.json());
    }
    let make: MakeReq = Arc::new(move |_| Req::get("/hub/api/user").token(&user_token));
    figs.get_user = load_run(subject, args, "GET /hub/api/user", make).await?;

    // GET /users, full pages of 200.
    let pages = (args.users / 200).max(1);
    let reply = client
        .send(
            &Req::get("/hub/api/users?offset=0&limit=200")
                .token(&admin)
                .paginated(),
        )
        .await?
        .expect(StatusCode::OK, "GET /hub/api/users?limit=200")?;
    let items = reply.json()["items"].as_array().map_or(0, Vec::len);
    if items != 200.min(args.users) {
        bail!("GET /hub/api/users?limit=200 returned {items} items");
    }
    let admin_for_load = admin.clone();
    let make: MakeReq = Arc::new(move |i| {
        let offset = (i as usize % pages) * 200;
        Req::get(format!("/hub/api/users?offset={offset}&limit=200"))
            .token(&admin_for_load)
            .paginated()
    });
    figs.list_users = load_run(subject, args, "GET /hub/api/users?limit=200", make).await?;

    // Servers: start them all, then stop them all.
    wait_idle(subject, args).await?;
    eprintln!("hub-bench: starting {} servers", args.servers);
    let meter = Meter::start(subject)?;
    let mut times = Vec::with_capacity(args.servers);
    for name in &names[..args.servers] {
        let t = Instant::now();
        start_server(&mut client, &admin, name).await?;
        times.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    figs.start = meter.ops(subject, times, 1)?;
    wait_idle(subject, args).await?;
    eprintln!("hub-bench: stopping {} servers", args.servers);
    let meter = Meter::start(subject)?;
    let mut times = Vec::with_capacity(args.servers);
    for name in &names[..args.servers] {
        let t = Instant::now();
        stop_server(&mut client, &admin, name).await?;
        times.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    figs.stop = meter.ops(subject, times, 1)?;

    subject.hub.ensure_running()?;
    let (rss, hwm) = subject.hub.memory_kib()?;
    figs.rss_end_kib = Some(rss);
    figs.hwm_kib = Some(hwm);
    Ok(figs)
}

async fn load_run(
    subject: &mut Subject,
    args: &RunArgs,
    what: &str,
    make: MakeReq,
) -> Result<Load> {
    wait_idle(subject, args).await?;
    eprintln!(
        "hub-bench: {what}: {}s warm-up, {}s measured, {} connections",
        args.warmup, args.duration, args.connections
    );
    if args.warmup > 0.0 {
        load::run(
            subject.addr,
            args.connections,
            Duration::from_secs_f64(args.warmup),
            make.clone(),
        )
        .await;
    }
    let meter = Meter::start(subject)?;
    let result = load::run(
        subject.addr,
        args.connections,
        Duration::from_secs_f64(args.duration),
        make,
    )
    .await;
    let m = meter.finish(subject)?;
    subject.hub.ensure_running()?;
    if result.ok == 0 {
        bail!(
            "{what}: no request succeeded; first error: {}",
            result.first_error.as_deref().unwrap_or("?")
        );
    }
    let load = Load {
        result,
        hub_cpu_ms: m.hub_cpu_ms,
        hub_pct: m.hub_cpu_ms / m.secs / 10.0,
        client_pct: m.client_pct,
        others_pct: m.others_pct,
    };
    eprintln!(
        "hub-bench: {what}: {:.0} req/s, {} errors; CPU in percent of a core: hub {:.0}%, \
         client {:.0}%, others {:.0}%",
        load.result.rps(),
        load.result.errors,
        load.hub_pct,
        load.client_pct,
        load.others_pct
    );
    Ok(load)
}

/// The default server's entry in the user model, if listed.
async fn default_server(client: &mut Client, admin: &str, name: &str) -> Result<Option<Value>> {
    let reply = client
        .send(&Req::get(format!("/hub/api/users/{name}")).token(admin))
        .await?
        .expect(StatusCode::OK, &format!("GET /hub/api/users/{name}"))?;
    Ok(reply.json()["servers"].get("").cloned())
}

/// How long a start or stop may take before the benchmark gives up.
const SERVER_TIMEOUT: Duration = Duration::from_secs(60);

/// `POST /users/{name}/server`; on 202, polls the user model until the server is ready.
async fn start_server(client: &mut Client, admin: &str, name: &str) -> Result<()> {
    let req = Req::post(format!("/hub/api/users/{name}/server"), &json!({})).token(admin);
    let reply = client.send(&req).await?;
    match reply.status {
        StatusCode::CREATED => return Ok(()),
        StatusCode::ACCEPTED => {}
        _ => {
            reply.expect(StatusCode::CREATED, &req.describe())?;
        }
    }
    let deadline = Instant::now() + SERVER_TIMEOUT;
    loop {
        if let Some(server) = default_server(client, admin, name).await?
            && server["ready"] == true
            && server["pending"].is_null()
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{name}'s server not ready after {SERVER_TIMEOUT:?}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// `DELETE /users/{name}/server`; on 202, polls the user model until the server is gone.
async fn stop_server(client: &mut Client, admin: &str, name: &str) -> Result<()> {
    let req = Req::delete(format!("/hub/api/users/{name}/server")).token(admin);
    let reply = client.send(&req).await?;
    match reply.status {
        StatusCode::NO_CONTENT => return Ok(()),
        StatusCode::ACCEPTED => {}
        _ => {
            reply.expect(StatusCode::NO_CONTENT, &req.describe())?;
        }
    }
    let deadline = Instant::now() + SERVER_TIMEOUT;
    loop {
        if default_server(client, admin, name).await?.is_none() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{name}'s server still listed {SERVER_TIMEOUT:?} after DELETE");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

//! Managed services: started with the service environment, shown with `command` and `pid`,
//! restarted when they die, stopped with the hub.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::Persona;
use hub::services::ManagedServices;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value, json};

/// Writes its environment and working directory to `$OUT_FILE`, then sleeps.
const SCRIPT: &str = "{ env; echo \"CWD=$(pwd)\"; } > \"$OUT_FILE.tmp\" && mv \"$OUT_FILE.tmp\" \"$OUT_FILE\"; exec sleep 600";

fn config() -> String {
    let dir = std::env::temp_dir().join(format!("jhrs-svc-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let out = |name: &str| dir.join(name).display().to_string();
    format!(
        "[[services]]\nname = \"envdump\"\nurl = \"http://127.0.0.1:10102\"\napi_token = \"envdump-token-123456\"\ncommand = [\"sh\", \"-c\", {script}]\ncwd = \"{cwd}\"\n[services.environment]\nOUT_FILE = \"{a}\"\nJUPYTERHUB_BASE_URL = \"/overridden/\"\n[[services]]\nname = \"gen\"\ncommand = [\"sh\", \"-c\", {script}]\n[services.environment]\nOUT_FILE = \"{b}\"\n",
        script = json!(SCRIPT),
        cwd = dir.display(),
        a = out("envdump.env"),
        b = out("gen.env"),
    )
}

async fn wait_for<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn out_file(hub: &common::TestHub, service: &str) -> String {
    hub.state
        .config
        .services
        .iter()
        .find(|s| s.name == service)
        .and_then(|s| s.environment.get("OUT_FILE").cloned())
        .expect("OUT_FILE")
}

async fn read_env(path: &str) -> BTreeMap<String, String> {
    let path = path.to_owned();
    wait_for("the service's environment file", || {
        let path = path.clone();
        async move {
            let text = std::fs::read_to_string(&path).ok()?;
            Some(
                text.lines()
                    .filter_map(|l| l.split_once('='))
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    .collect(),
            )
        }
    })
    .await
}

fn alive(pid: u32) -> bool {
    kill(Pid::from_raw(i32::try_from(pid).expect("pid")), None).is_ok()
}

hub_test!(
    managed_service_lifecycle,
    config = &config(),
    |hub| async move {
        let admin = hub.user("admin", true).await;
        let managed = ManagedServices::start(&hub.state)
            .await
            .expect("start managed services");
        assert_eq!(managed.len(), 2);

        // The environment of a service with a URL.
        let env = read_env(&out_file(hub, "envdump")).await;
        assert_eq!(env["JUPYTERHUB_SERVICE_NAME"], "envdump");
        assert_eq!(env["JUPYTERHUB_API_TOKEN"], "envdump-token-123456");
        let api_url = env["JUPYTERHUB_API_URL"].clone();
        assert!(
            api_url.starts_with("http://") && api_url.ends_with("/hub/api"),
            "{api_url}"
        );
        // The configured environment comes last.
        assert_eq!(env["JUPYTERHUB_BASE_URL"], "/overridden/");
        assert_eq!(env["JUPYTERHUB_SERVICE_URL"], "http://127.0.0.1:10102/");
        assert_eq!(env["JUPYTERHUB_SERVICE_PREFIX"], "/services/envdump/");
        assert_eq!(env["JUPYTERHUB_CLIENT_ID"], "service-envdump");
        assert_eq!(
            env["JUPYTERHUB_OAUTH_CALLBACK_URL"],
            "/services/envdump/oauth_callback"
        );
        assert_eq!(
            env["JUPYTERHUB_OAUTH_SCOPES"],
            r#"["access:services!service=envdump"]"#
        );
        assert_eq!(
            env["JUPYTERHUB_OAUTH_ACCESS_SCOPES"],
            env["JUPYTERHUB_OAUTH_SCOPES"]
        );
        let dir = std::path::Path::new(&out_file(hub, "envdump"))
            .parent()
            .expect("dir")
            .canonicalize()
            .expect("canonical dir");
        assert_eq!(env["CWD"], dir.display().to_string());
        assert!(!env.contains_key("CARGO_MANIFEST_DIR"), "hub env leaked");

        // A service without a URL gets no OAuth variables, and a generated token that works.
        let gen_env = read_env(&out_file(hub, "gen")).await;
        assert_eq!(gen_env["JUPYTERHUB_BASE_URL"], "/");
        assert!(!gen_env.contains_key("JUPYTERHUB_SERVICE_PREFIX"));
        assert!(!gen_env.contains_key("JUPYTERHUB_CLIENT_ID"));
        let gen_token = Persona {
            name: "gen".into(),
            token: gen_env["JUPYTERHUB_API_TOKEN"].clone(),
        };
        let (status, me) = hub.get("/user", Some(&gen_token)).await;
        assert_eq!(status, 200, "{me}");
        assert_eq!(me["kind"], "service");
        assert_eq!(me["name"], "gen");

        // The service model shows the command and the pid.
        let (status, model) = hub.get("/services/envdump", Some(&admin)).await;
        assert_eq!(status, 200, "{model}");
        assert_eq!(model["command"], json!(["sh", "-c", SCRIPT]));
        let pid = u32::try_from(model["pid"].as_u64().expect("pid")).expect("u32");
        assert!(pid > 0 && alive(pid), "{model}");
        let (_, list) = hub.get("/services", Some(&admin)).await;
        assert_eq!(list["gen"]["pid"].as_u64().map(|p| p > 0), Some(true));

        // Killed: restarted with a new pid.
        std::fs::remove_file(out_file(hub, "envdump")).expect("remove env file");
        kill(
            Pid::from_raw(i32::try_from(pid).expect("pid")),
            Signal::SIGKILL,
        )
        .expect("kill");
        let new_pid = wait_for("the restarted service", || async {
            let (_, model) = hub.get("/services/envdump", Some(&admin)).await;
            model["pid"]
                .as_u64()
                .filter(|&p| p != 0 && p != u64::from(pid))
        })
        .await;
        let new_pid = u32::try_from(new_pid).expect("u32");
        assert!(alive(new_pid));
        let again = read_env(&out_file(hub, "envdump")).await;
        assert_eq!(again["JUPYTERHUB_SERVICE_NAME"], "envdump");

        // Shutdown stops every service.
        let gen_pid = hub.state.services.pid("gen");
        assert!(gen_pid > 0);
        managed.stop().await;
        assert!(!alive(new_pid), "envdump still running");
        assert!(!alive(gen_pid), "gen still running");
        let (_, model) = hub.get("/services/envdump", Some(&admin)).await;
        assert_eq!(model["pid"], 0);
        assert_eq!(model["command"], json!(["sh", "-c", SCRIPT]));
        let _ = std::fs::remove_dir_all(&dir);
    }
);

hub_test!(
    unmanaged_service_has_no_command,
    config = "[[services]]\nname = \"ext\"\nurl = \"http://127.0.0.1:10103\"\n",
    |hub| async move {
        let admin = hub.user("admin", true).await;
        let managed = ManagedServices::start(&hub.state).await.expect("start");
        assert!(managed.is_empty());
        let (status, model) = hub.get("/services/ext", Some(&admin)).await;
        assert_eq!(status, 200);
        assert_eq!(model["command"], Value::Null);
        assert_eq!(model["pid"], 0);
        managed.stop().await;
    }
);

hub_test!(
    foreign_user_refused_without_root,
    config = "[[services]]\nname = \"other\"\ncommand = [\"sleep\", \"60\"]\nuser = \"nobody\"\n",
    |hub| async move {
        if nix::unistd::geteuid().is_root() {
            return;
        }
        let err = ManagedServices::start(&hub.state)
            .await
            .expect_err("refused");
        assert!(
            err.to_string().contains("needs the hub to run as root"),
            "{err}"
        );
        assert_eq!(hub.state.services.pid("other"), 0);
    }
);

fn as_nobody_config() -> String {
    let dir = std::env::temp_dir().join(format!("jhrs-svc-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    }
    format!(
        "[[services]]\nname = \"asnobody\"\nuser = \"nobody\"\ncommand = [\"sh\", \"-c\", {script}]\ncwd = \"{cwd}\"\n[services.environment]\nOUT_FILE = \"{out}\"\n",
        script = json!(SCRIPT),
        cwd = dir.display(),
        out = dir.join("nobody.env").display(),
    )
}

hub_test!(
    runs_as_configured_user_when_root,
    config = &as_nobody_config(),
    |hub| async move {
        if !nix::unistd::geteuid().is_root() {
            return;
        }
        let nobody = nix::unistd::User::from_name("nobody")
            .expect("lookup")
            .expect("nobody exists");
        let managed = ManagedServices::start(&hub.state).await.expect("start");
        let env = read_env(&out_file(hub, "asnobody")).await;
        assert_eq!(env["USER"], "nobody");
        assert_eq!(env["HOME"], nobody.dir.display().to_string());
        let pid = hub.state.services.pid("asnobody");
        assert!(pid > 0);
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
        let uid_line = status
            .lines()
            .find(|l| l.starts_with("Uid:"))
            .expect("Uid line");
        assert!(
            uid_line.split_whitespace().nth(1) == Some(&nobody.uid.to_string()),
            "{uid_line}"
        );
        managed.stop().await;
        assert!(!alive(pid));
    }
);

//! The system account a server runs as: looked up (and, when allowed, created) in the parent,
//! with its supplementary groups computed there too, so that the child only has to make the
//! raw `setgroups`/`setgid`/`setuid` calls.

use std::ffi::CString;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use hub_plugin::SpawnError;
use nix::unistd::{Gid, Uid, User, getgrouplist};

/// How long `useradd` may take.
const USERADD_TIMEOUT: Duration = Duration::from_secs(30);

/// A system account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Account {
    /// The login name.
    pub name: String,
    /// The user id.
    pub uid: Uid,
    /// The primary group.
    pub gid: Gid,
    /// All groups, the primary one included (as `getgrouplist` gives them).
    pub groups: Vec<Gid>,
    /// The home directory.
    pub home: PathBuf,
    /// The login shell.
    pub shell: PathBuf,
}

fn from_user(user: User) -> anyhow::Result<Account> {
    let cname = CString::new(user.name.as_bytes()).context("account name with a NUL byte")?;
    let groups = getgrouplist(&cname, user.gid)
        .with_context(|| format!("supplementary groups of {}", user.name))?;
    Ok(Account {
        name: user.name,
        uid: user.uid,
        gid: user.gid,
        groups,
        home: user.dir,
        shell: user.shell,
    })
}

/// The account named `name`, if there is one. Name service lookups may block (LDAP, NIS), so
/// they run on the blocking pool.
///
/// # Errors
/// When the lookup itself fails.
pub(crate) async fn lookup(name: &str) -> anyhow::Result<Option<Account>> {
    let name = name.to_owned();
    tokio::task::spawn_blocking(move || {
        User::from_name(&name)
            .with_context(|| format!("looking up the system account {name}"))?
            .map(from_user)
            .transpose()
    })
    .await
    .context("account lookup task")?
}

/// The account this process runs as.
///
/// # Errors
/// When it has no passwd entry or the lookup fails.
pub(crate) async fn current() -> anyhow::Result<Account> {
    tokio::task::spawn_blocking(|| {
        let uid = nix::unistd::geteuid();
        let user = User::from_uid(uid)
            .context("looking up the hub's own account")?
            .with_context(|| format!("the hub's user id {uid} has no passwd entry"))?;
        from_user(user)
    })
    .await
    .context("account lookup task")?
}

/// Whether `name` is a portable system user name: 1 to 32 characters of lowercase ASCII
/// letters, digits, `_` and `-`, not starting with a digit or `-` (and not all digits), with
/// an optional final `$`. Hub user names are much freer (e-mail addresses, capitals, dots),
/// and those must never reach `useradd`.
pub(crate) fn valid_system_name(name: &str) -> bool {
    let body = name.strip_suffix('$').unwrap_or(name);
    let mut chars = body.chars();
    let Some(first) = chars.next() else {
        return false;
    };
    name.len() <= 32
        && (first.is_ascii_lowercase() || first == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

/// Creates the account `name` with a home directory (`useradd -m`). Creations are serialised
/// so two spawns of one new user do not race each other.
///
/// # Errors
/// A refusal for names that are not valid system user names; a failure when `useradd` fails.
pub(crate) async fn create(name: &str) -> Result<(), SpawnError> {
    static CREATING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    if !valid_system_name(name) {
        return Err(SpawnError::Refused {
            message: format!(
                "Cannot create a system account for {name:?}: it is not a valid system user \
                 name (1 to 32 lowercase letters, digits, '_' or '-', starting with a letter \
                 or '_'). An administrator must create the account, or map the name."
            ),
            status: 500,
        });
    }
    let _one_at_a_time = CREATING.lock().await;
    if lookup(name).await?.is_some() {
        return Ok(());
    }
    tracing::info!(user = name, "creating the system account with useradd -m");
    let run = tokio::process::Command::new("useradd")
        .args(["-m", "--", name])
        .stdin(std::process::Stdio::null())
        // A cancelled start must not interrupt useradd half-way through an account.
        .kill_on_drop(false)
        .output();
    let output = tokio::time::timeout(USERADD_TIMEOUT, run)
        .await
        .map_err(|_| {
            anyhow::anyhow!(
                "useradd did not finish within {} s",
                USERADD_TIMEOUT.as_secs()
            )
        })?
        .context("running useradd")?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Err(anyhow::anyhow!(
            "useradd -m {name} failed ({}): {}",
            output.status,
            stderr.trim()
        )
        .into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_names() {
        for good in ["alice", "_svc", "a-b_c9", "machine$", &"a".repeat(32)] {
            assert!(valid_system_name(good), "{good}");
        }
        for bad in [
            "",
            "$",
            "Alice",
            "9lives",
            "-rf",
            "a.b",
            "a@example.org",
            "a b",
            "ä",
            "a/b",
            "a$b",
            &"a".repeat(33),
        ] {
            assert!(!valid_system_name(bad), "{bad}");
        }
    }

    #[tokio::test]
    async fn root_and_self() {
        let root = lookup("root").await.unwrap().unwrap();
        assert!(root.uid.is_root());
        assert!(root.groups.contains(&root.gid));
        assert!(lookup("no-such-account-hopefully").await.unwrap().is_none());
        let me = current().await.unwrap();
        assert_eq!(me.uid, nix::unistd::geteuid());
    }

    #[tokio::test]
    async fn invalid_names_are_refused_before_useradd() {
        match create("Bad.Name").await {
            Err(SpawnError::Refused { message, .. }) => {
                assert!(
                    message.contains("not a valid system user name"),
                    "{message}"
                );
            }
            other => panic!("{other:?}"),
        }
    }
}

//! The system account a user's batch commands run as. Looked up in the hub's process (name
//! service lookups may block, so on the blocking pool), with the supplementary groups computed
//! there too, so that a forked child only makes raw system calls before `exec`.

use std::ffi::CString;
use std::path::PathBuf;

use anyhow::Context as _;
use nix::unistd::{Gid, Uid, User, getgrouplist};

/// A system account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Account {
    /// The login name.
    pub name: String,
    /// The user id.
    pub uid: Uid,
    /// The primary group.
    pub gid: Gid,
    /// Every group of the account, the primary one included.
    pub groups: Vec<Gid>,
    /// The home directory.
    pub home: PathBuf,
    /// The login shell.
    pub shell: PathBuf,
}

impl Account {
    fn from_user(user: User) -> anyhow::Result<Account> {
        let name = CString::new(user.name.as_bytes()).context("account name with a NUL byte")?;
        let groups = getgrouplist(&name, user.gid)
            .with_context(|| format!("the groups of the system account {}", user.name))?;
        Ok(Account {
            name: user.name,
            uid: user.uid,
            gid: user.gid,
            groups,
            home: user.dir,
            shell: user.shell,
        })
    }
}

/// The account named `name`, if there is one.
///
/// # Errors
/// When the lookup itself fails (not when there is no such account).
pub(crate) async fn lookup(name: &str) -> anyhow::Result<Option<Account>> {
    let name = name.to_owned();
    tokio::task::spawn_blocking(move || {
        User::from_name(&name)
            .with_context(|| format!("looking up the system account {name:?}"))?
            .map(Account::from_user)
            .transpose()
    })
    .await
    .context("account lookup task")?
}

/// The account the hub runs as.
///
/// # Errors
/// When it has no passwd entry or the lookup fails.
pub(crate) async fn current() -> anyhow::Result<Account> {
    tokio::task::spawn_blocking(|| {
        let uid = nix::unistd::geteuid();
        let user = User::from_uid(uid)
            .context("looking up the hub's own account")?
            .with_context(|| format!("the hub's user id {uid} has no passwd entry"))?;
        Account::from_user(user)
    })
    .await
    .context("account lookup task")?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn lookups() {
        let root = lookup("root").await.unwrap().unwrap();
        assert!(root.uid.is_root());
        assert!(root.groups.contains(&root.gid));
        assert!(lookup("no-such-account-here").await.unwrap().is_none());
        assert_eq!(current().await.unwrap().uid, nix::unistd::geteuid());
    }
}

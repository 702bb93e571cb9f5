//! The user and server models serialised straight from the loaded facts, without building
//! `serde_json::Value` trees first. List endpoints reply with hundreds of models per request;
//! this path writes the same JSON as [`models::user_model`] (same keys, same order, same
//! values) with a fraction of the allocations. Tests hold the two to the same output.

use std::collections::BTreeSet;

use chrono::NaiveDateTime;
use serde::ser::{Serialize, SerializeMap, Serializer};

use super::models::{self, UserFacts};
use crate::db::models::spawners::{ServerPhase, Spawner};
use crate::rbac::fields::{
    include_servers_key, server_state_visible, server_visible, user_model_keys,
};
use crate::rbac::{ScopeSet, UserGroups};
use crate::state::AppState;

/// A timestamp written as `models::iso_text` does, or `null`.
struct Iso(Option<NaiveDateTime>);

impl Serialize for Iso {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Some(t) => s.serialize_str(&models::iso_text(t)),
            None => s.serialize_none(),
        }
    }
}

/// `pending` of a phase.
fn pending(phase: ServerPhase) -> Option<&'static str> {
    match phase {
        ServerPhase::Spawning => Some("spawn"),
        ServerPhase::Stopping => Some("stop"),
        ServerPhase::Stopped | ServerPhase::Running => None,
    }
}

/// The server model of [`models::server_model`].
#[derive(Debug)]
pub struct ServerView<'a> {
    state: &'a AppState,
    user: &'a str,
    spawner: &'a Spawner,
    with_state: bool,
}

impl Serialize for ServerView<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let sp = self.spawner;
        let user_url = models::url_name(self.user);
        let prefix = self.state.config.hub.hub_prefix();
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("name", &sp.name)?;
        m.serialize_entry("display_name", &sp.display_name)?;
        m.serialize_entry("full_name", &format!("{}/{}", self.user, sp.name))?;
        m.serialize_entry("last_activity", &Iso(sp.last_activity))?;
        m.serialize_entry("started", &Iso(sp.started))?;
        m.serialize_entry("pending", &pending(sp.phase))?;
        m.serialize_entry("ready", &(sp.phase == ServerPhase::Running))?;
        m.serialize_entry("stopped", &!sp.phase.is_active())?;
        m.serialize_entry("url", &models::server_url(self.state, self.user, &sp.name))?;
        m.serialize_entry("user_options", &sp.user_options)?;
        let progress = if sp.name.is_empty() {
            format!("{prefix}api/users/{user_url}/server/progress")
        } else {
            format!(
                "{prefix}api/users/{user_url}/servers/{}/progress",
                models::url_name(&sp.name)
            )
        };
        m.serialize_entry("progress_url", &progress)?;
        m.serialize_entry("full_url", &None::<()>)?;
        m.serialize_entry("full_progress_url", &None::<()>)?;
        if self.with_state {
            m.serialize_entry("state", &sp.state)?;
        }
        m.end()
    }
}

/// The user model of [`models::user_model`], or nothing when `scopes` may see no key of it.
#[derive(Debug)]
pub struct UserView<'a> {
    state: &'a AppState,
    facts: &'a UserFacts,
    keys: BTreeSet<&'static str>,
    servers: Vec<ServerView<'a>>,
}

impl<'a> UserView<'a> {
    /// The view of `facts` for `scopes`; `None` when the user is invisible to them (a list
    /// leaves such users out).
    pub fn new(
        state: &'a AppState,
        scopes: &ScopeSet,
        facts: &'a UserFacts,
        include_stopped: bool,
    ) -> Option<Self> {
        let user = &facts.user;
        let membership = UserGroups {
            user: &user.name,
            groups: &facts.groups,
        };
        let mut keys = user_model_keys(scopes, &user.name, &membership);
        let servers: Vec<ServerView<'a>> = facts
            .spawners
            .iter()
            .filter(|s| {
                (include_stopped || s.phase.is_active())
                    && server_visible(scopes, &user.name, &s.name, &membership)
            })
            .map(|s| ServerView {
                state,
                user: &user.name,
                spawner: s,
                with_state: server_state_visible(scopes, &user.name, &s.name, &membership),
            })
            .collect();
        if include_servers_key(&keys, servers.len()) {
            keys.insert("servers");
        }
        if keys.is_empty() {
            return None;
        }
        Some(Self {
            state,
            facts,
            keys,
            servers,
        })
    }
}

/// The `servers` dict: name → model, in the order the facts list them (as `Map` keeps it).
struct ServersView<'v, 'a>(&'v [ServerView<'a>]);

impl Serialize for ServersView<'_, '_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for server in self.0 {
            m.serialize_entry(&server.spawner.name, server)?;
        }
        m.end()
    }
}

impl Serialize for UserView<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let user = &self.facts.user;
        let has = |key: &str| self.keys.contains(key);
        let mut m = s.serialize_map(None)?;
        if has("kind") {
            m.serialize_entry("kind", "user")?;
        }
        if has("name") {
            m.serialize_entry("name", &user.name)?;
        }
        if has("admin") {
            m.serialize_entry("admin", &user.admin)?;
        }
        if has("roles") {
            let mut roles: Vec<&str> = self.facts.roles.iter().map(String::as_str).collect();
            roles.push("user");
            if user.admin {
                roles.push("admin");
            }
            roles.sort_unstable();
            roles.dedup();
            m.serialize_entry("roles", &roles)?;
        }
        if has("groups") {
            m.serialize_entry("groups", &self.facts.groups)?;
        }
        let default = self.facts.spawners.iter().find(|s| s.name.is_empty());
        if has("server") {
            match default {
                Some(s) if s.phase == ServerPhase::Running => {
                    m.serialize_entry("server", &models::user_url(self.state, &user.name))?;
                }
                _ => m.serialize_entry("server", &None::<()>)?,
            }
        }
        if has("pending") {
            m.serialize_entry("pending", &default.and_then(|s| pending(s.phase)))?;
        }
        if has("created") {
            m.serialize_entry("created", &Iso(Some(user.created)))?;
        }
        if has("last_activity") {
            m.serialize_entry("last_activity", &Iso(user.last_activity))?;
        }
        if has("user_info") {
            m.serialize_entry("user_info", &None::<()>)?;
        }
        if has("auth_state") {
            m.serialize_entry("auth_state", &None::<()>)?;
        }
        if has("servers") {
            m.serialize_entry("servers", &ServersView(&self.servers))?;
        }
        m.end()
    }
}

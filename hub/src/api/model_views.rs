//! The user and server models (hub-protocol §1.2), serialised straight from the loaded facts.
//! List endpoints write them without building `serde_json::Value` trees first (hundreds of
//! models per request); [`models::user_model`] and [`models::server_model`] turn the same
//! views into values for the handlers that edit a model before replying.

use std::sync::OnceLock;

use chrono::NaiveDateTime;
use serde::ser::{Serialize, SerializeMap, Serializer};

use super::models::{self, UserFacts};
use crate::db::models::spawners::{ServerPhase, Spawner};
use crate::rbac::fields::{USER_MODEL_ACCESS, server_state_visible, server_visible};
use crate::rbac::{ScopeSet, Target, UserGroups};
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

/// The server model (all keys; `state` only when `with_state`).
#[derive(Debug)]
pub struct ServerView<'a> {
    state: &'a AppState,
    user: &'a str,
    spawner: &'a Spawner,
    with_state: bool,
}

impl<'a> ServerView<'a> {
    /// The model of `user`'s server `spawner`.
    pub fn new(state: &'a AppState, user: &'a str, spawner: &'a Spawner, with_state: bool) -> Self {
        Self {
            state,
            user,
            spawner,
            with_state,
        }
    }
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

/// Every key of the user model, in the order it is written.
const USER_KEYS: [&str; 12] = [
    "kind",
    "name",
    "admin",
    "roles",
    "groups",
    "server",
    "pending",
    "created",
    "last_activity",
    "user_info",
    "auth_state",
    "servers",
];

const KIND: u16 = 1;
const NAME: u16 = 1 << 1;
const ADMIN: u16 = 1 << 2;
const ROLES: u16 = 1 << 3;
const GROUPS: u16 = 1 << 4;
const SERVER: u16 = 1 << 5;
const PENDING: u16 = 1 << 6;
const CREATED: u16 = 1 << 7;
const LAST_ACTIVITY: u16 = 1 << 8;
const USER_INFO: u16 = 1 << 9;
const AUTH_STATE: u16 = 1 << 10;
const SERVERS: u16 = 1 << 11;

/// The bit of `key` in a key mask.
fn bit(key: &str) -> u16 {
    USER_KEYS
        .iter()
        .position(|k| *k == key)
        .map_or(0, |i| 1 << i)
}

/// For each entry of [`USER_MODEL_ACCESS`], the mask of the keys it unlocks.
fn access_masks() -> &'static [u16] {
    static MASKS: OnceLock<Vec<u16>> = OnceLock::new();
    MASKS.get_or_init(|| {
        USER_MODEL_ACCESS
            .iter()
            .map(|(_, keys)| keys.iter().fold(0, |mask, key| mask | bit(key)))
            .collect()
    })
}

/// The keys of `user`'s model that `scopes` unlock, as a mask over [`USER_KEYS`] (the same set
/// as `user_model_keys`, without building one). A scope that would add nothing new is not
/// checked.
fn user_key_mask(scopes: &ScopeSet, user: &str, membership: &UserGroups<'_>) -> u16 {
    let target = Target::User(user);
    USER_MODEL_ACCESS
        .iter()
        .zip(access_masks())
        .fold(0, |mask, ((scope, _), unlocks)| {
            if mask | unlocks != mask && scopes.allows(scope, &target, membership) {
                mask | unlocks
            } else {
                mask
            }
        })
}

/// The user model as `scopes` may see it, or nothing when they may see no key of it.
#[derive(Debug)]
pub struct UserView<'a> {
    state: &'a AppState,
    facts: &'a UserFacts,
    keys: u16,
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
        let mut keys = user_key_mask(scopes, &user.name, &membership);
        let servers: Vec<ServerView<'a>> = facts
            .spawners
            .iter()
            .filter(|s| {
                (include_stopped || s.phase.is_active())
                    && server_visible(scopes, &user.name, &s.name, &membership)
            })
            .map(|s| {
                let with_state = server_state_visible(scopes, &user.name, &s.name, &membership);
                ServerView::new(state, &user.name, s, with_state)
            })
            .collect();
        // `servers` appears when unlocked, or when any server is visible anyway.
        if !servers.is_empty() {
            keys |= SERVERS;
        }
        if keys == 0 {
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
        let has = |key: u16| self.keys & key != 0;
        let mut m = s.serialize_map(None)?;
        if has(KIND) {
            m.serialize_entry("kind", "user")?;
        }
        if has(NAME) {
            m.serialize_entry("name", &user.name)?;
        }
        if has(ADMIN) {
            m.serialize_entry("admin", &user.admin)?;
        }
        if has(ROLES) {
            let mut roles: Vec<&str> = self.facts.roles.iter().map(String::as_str).collect();
            roles.push("user");
            if user.admin {
                roles.push("admin");
            }
            roles.sort_unstable();
            roles.dedup();
            m.serialize_entry("roles", &roles)?;
        }
        if has(GROUPS) {
            m.serialize_entry("groups", &self.facts.groups)?;
        }
        let default = self.facts.spawners.iter().find(|s| s.name.is_empty());
        if has(SERVER) {
            match default {
                Some(s) if s.phase == ServerPhase::Running => {
                    m.serialize_entry("server", &models::user_url(self.state, &user.name))?;
                }
                _ => m.serialize_entry("server", &None::<()>)?,
            }
        }
        if has(PENDING) {
            m.serialize_entry("pending", &default.and_then(|s| pending(s.phase)))?;
        }
        if has(CREATED) {
            m.serialize_entry("created", &Iso(Some(user.created)))?;
        }
        if has(LAST_ACTIVITY) {
            m.serialize_entry("last_activity", &Iso(user.last_activity))?;
        }
        if has(USER_INFO) {
            m.serialize_entry("user_info", &None::<()>)?;
        }
        if has(AUTH_STATE) {
            m.serialize_entry("auth_state", &None::<()>)?;
        }
        if has(SERVERS) {
            m.serialize_entry("servers", &ServersView(&self.servers))?;
        }
        m.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_constants_follow_the_key_list() {
        let consts = [
            KIND,
            NAME,
            ADMIN,
            ROLES,
            GROUPS,
            SERVER,
            PENDING,
            CREATED,
            LAST_ACTIVITY,
            USER_INFO,
            AUTH_STATE,
            SERVERS,
        ];
        for (key, constant) in USER_KEYS.iter().zip(consts) {
            assert_eq!(bit(key), constant, "{key}");
        }
        // Every key an access rule unlocks has a bit.
        for (scope, keys) in USER_MODEL_ACCESS {
            for key in *keys {
                assert_ne!(bit(key), 0, "{scope} unlocks unknown key {key}");
            }
        }
    }
}

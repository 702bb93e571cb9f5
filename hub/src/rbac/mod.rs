//! Role-based access control: which scopes a role, token or share grants, and whether a set of
//! scopes lets a caller act on a resource. Pure functions only: no I/O, no database, no HTTP.
//! Handlers pass in what they loaded (role assignments, group membership) and get decisions back.
//!
//! # Terms
//!
//! These follow JupyterHub's scope nomenclature (`scopes.py` module docstring), so reviewers can
//! compare the two.
//!
//! - **scope**: a permission name such as `read:users` or `access:servers`, optionally followed by
//!   a **filter** that limits it to resources: `read:users!user=alice`.
//! - **base**: the part of a scope before `!`.
//! - **filter**: `!user=<name>`, `!server=<user>/<server>` (the default server is `alice/`),
//!   `!group=<name>` or `!service=<name>`. A `user` filter also covers that user's servers; a
//!   `group` filter covers the group's members and their servers; a `server` filter covers only
//!   that server.
//! - **bare filter**: `!user`, `!server` or `!service` without a value. Only allowed in role
//!   definitions and raw token scopes; it is resolved against the *owner* (the user or service
//!   holding the role, or the server/service of the issuing OAuth client) during expansion.
//! - **raw scopes**: scopes as written in roles, tokens and requests. They may contain metascopes
//!   and bare filters.
//! - **metascope**: `self` (a user's own resources: 15 scopes filtered to that user; nothing for
//!   services) and `inherit` (a token holding everything its owner holds, re-evaluated live).
//! - **subscopes / implied scopes**: scopes implied by another scope, e.g. `users` implies
//!   `read:users`, which implies `read:users:name`.
//! - **expanded scopes**: raw scopes with metascopes resolved, bare filters resolved and all
//!   subscopes added. [`ScopeSet`] always holds expanded scopes.
//! - **reduced scopes**: expanded scopes with redundant entries removed: a filtered scope is
//!   dropped when the same base is held unfiltered.
//! - **intersection**: the scopes two expanded sets have in common, resolving filter nesting
//!   (server within user within group). A token's effective scopes are the intersection of its
//!   own scopes with its owner's.
//! - **identify scopes**: the minimum a credential needs to identify its owner
//!   (`read:users:name` and `read:users:groups` for a user, `read:services:name` for a service).
//! - **access scope**: the scope needed to reach an OAuth client's resource
//!   (`access:servers!server=u/s` or `access:services!service=x`).
//! - **post-filtering**: a list endpoint accepting filtered scopes and returning only the items
//!   the filters cover. It is opt-in per endpoint (GHSA-69wv-m5fw-2fhp): a scope check with no
//!   target never passes on filtered scopes.
//!
//! # Files
//!
//! - [`scopes`]: every scope of JupyterHub 6.1.1, custom scopes, parsing, expansion.
//! - [`scope_set`]: [`ScopeSet`], [`Target`], access checks (403 vs 404), list filters,
//!   intersection.
//! - [`roles`]: default roles, the `self` metascope, roles from configuration.
//! - [`grants`]: effective scopes of tokens, OAuth requests and shares (§3.3 of the protocol notes).
//! - [`fields`]: which keys of a user, group or service model a caller may see.
//! - [`escalation`]: the checks that stop privilege escalation through admin flags, roles and
//!   group membership (CVE-2024-41942).

pub mod escalation;
pub mod fields;
pub mod grants;
pub mod roles;
pub mod scope_set;
pub mod scopes;

pub use roles::{Role, RoleError, RoleSpec, RoleTable};
pub use scope_set::{
    Access, Filters, Grant, GroupMembership, ListFilter, NoGroups, ScopeSet, Target, UserGroups,
};
pub use scopes::{
    ClientTarget, CustomScopeSpec, ExpandContext, Filter, FilterKind, Owner, RawFilter, RawScope,
    ScopeError, ScopeRegistry,
};

-- The hub's schema (SQLite). Keep in step with ../../postgres/ (same tables, columns,
-- constraints and defaults) and with hub/src/db/schema.rs.
-- JSON lives in TEXT columns; timestamps are naive UTC.

CREATE TABLE users (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    name TEXT NOT NULL UNIQUE,
    admin BOOLEAN NOT NULL DEFAULT FALSE,
    created TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    last_activity TIMESTAMP,
    -- what the signed login cookie carries; replacing it logs the user out everywhere
    cookie_id TEXT NOT NULL UNIQUE,
    encrypted_auth_state BLOB
);

CREATE TABLE groups (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    name TEXT NOT NULL UNIQUE,
    properties TEXT NOT NULL DEFAULT '{}'
);

CREATE TABLE user_group_map (
    user_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    group_id INTEGER NOT NULL REFERENCES groups (id) ON DELETE CASCADE,
    PRIMARY KEY (user_id, group_id)
);
CREATE INDEX ix_user_group_map_group_id ON user_group_map (group_id);

CREATE TABLE services (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    name TEXT NOT NULL UNIQUE,
    admin BOOLEAN NOT NULL DEFAULT FALSE,
    -- defined in the hub's configuration (vs created through the REST API)
    from_config BOOLEAN NOT NULL DEFAULT TRUE,
    url TEXT,
    info TEXT NOT NULL DEFAULT '{}',
    display BOOLEAN NOT NULL DEFAULT TRUE,
    oauth_no_confirm BOOLEAN NOT NULL DEFAULT FALSE,
    created TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP
);

CREATE TABLE roles (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    name TEXT NOT NULL UNIQUE,
    description TEXT,
    scopes TEXT NOT NULL DEFAULT '[]'
);

CREATE TABLE user_role_map (
    user_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role_id INTEGER NOT NULL REFERENCES roles (id) ON DELETE CASCADE,
    PRIMARY KEY (user_id, role_id)
);
CREATE INDEX ix_user_role_map_role_id ON user_role_map (role_id);

CREATE TABLE group_role_map (
    group_id INTEGER NOT NULL REFERENCES groups (id) ON DELETE CASCADE,
    role_id INTEGER NOT NULL REFERENCES roles (id) ON DELETE CASCADE,
    PRIMARY KEY (group_id, role_id)
);
CREATE INDEX ix_group_role_map_role_id ON group_role_map (role_id);

CREATE TABLE service_role_map (
    service_id INTEGER NOT NULL REFERENCES services (id) ON DELETE CASCADE,
    role_id INTEGER NOT NULL REFERENCES roles (id) ON DELETE CASCADE,
    PRIMARY KEY (service_id, role_id)
);
CREATE INDEX ix_service_role_map_role_id ON service_role_map (role_id);

-- One row per server of a user ('' = the default server). The server's address lives in the
-- server_* columns while it is active. `phase` is the persisted lifecycle, so a restarted hub
-- knows which servers to poll (running), finish stopping (stopping) or resolve (spawning).
CREATE TABLE spawners (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    user_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name TEXT NOT NULL DEFAULT '',
    display_name TEXT NOT NULL DEFAULT '',
    state TEXT NOT NULL DEFAULT '{}',
    user_options TEXT NOT NULL DEFAULT '{}',
    phase TEXT NOT NULL DEFAULT 'stopped'
        CHECK (phase IN ('stopped', 'spawning', 'running', 'stopping')),
    phase_changed TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    started TIMESTAMP,
    last_activity TIMESTAMP,
    server_proto TEXT,
    server_ip TEXT,
    server_port INTEGER,
    server_base_url TEXT,
    UNIQUE (user_id, name)
);
CREATE INDEX ix_spawners_active ON spawners (user_id) WHERE phase <> 'stopped';

-- OAuth clients. The owner columns make a server's or service's client (and, through
-- api_tokens.client_id, every token issued to it) disappear with its owner.
CREATE TABLE oauth_clients (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    identifier TEXT NOT NULL UNIQUE,
    description TEXT NOT NULL DEFAULT '',
    -- hashed, in the api_tokens format
    secret TEXT NOT NULL DEFAULT '',
    redirect_uri TEXT NOT NULL DEFAULT '',
    allowed_scopes TEXT NOT NULL DEFAULT '[]',
    spawner_id INTEGER REFERENCES spawners (id) ON DELETE CASCADE,
    service_id INTEGER REFERENCES services (id) ON DELETE CASCADE,
    created TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    CHECK (spawner_id IS NULL OR service_id IS NULL)
);
CREATE INDEX ix_oauth_clients_spawner_id ON oauth_clients (spawner_id);
CREATE INDEX ix_oauth_clients_service_id ON oauth_clients (service_id);

-- The built-in client that marks ordinary API tokens; it cannot be used for OAuth.
INSERT INTO oauth_clients (identifier, description) VALUES ('jupyterhub', 'JupyterHub');

CREATE TABLE api_tokens (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    -- first characters of the token, in clear, to find candidates before comparing hashes
    prefix TEXT NOT NULL,
    hashed TEXT NOT NULL UNIQUE,
    user_id INTEGER REFERENCES users (id) ON DELETE CASCADE,
    service_id INTEGER REFERENCES services (id) ON DELETE CASCADE,
    -- set for a server's own token ($JUPYTERHUB_API_TOKEN)
    spawner_id INTEGER REFERENCES spawners (id) ON DELETE CASCADE,
    client_id TEXT NOT NULL DEFAULT 'jupyterhub'
        REFERENCES oauth_clients (identifier) ON DELETE CASCADE,
    session_id TEXT,
    note TEXT NOT NULL DEFAULT '',
    scopes TEXT NOT NULL DEFAULT '[]',
    created TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    expires_at TIMESTAMP,
    last_activity TIMESTAMP,
    CHECK ((user_id IS NULL) <> (service_id IS NULL))
);
CREATE INDEX ix_api_tokens_prefix ON api_tokens (prefix);
CREATE INDEX ix_api_tokens_user_id ON api_tokens (user_id);
CREATE INDEX ix_api_tokens_service_id ON api_tokens (service_id);
CREATE INDEX ix_api_tokens_spawner_id ON api_tokens (spawner_id);
CREATE INDEX ix_api_tokens_client_id ON api_tokens (client_id);
CREATE INDEX ix_api_tokens_session_id ON api_tokens (session_id);
CREATE INDEX ix_api_tokens_expires_at ON api_tokens (expires_at);

CREATE TABLE oauth_codes (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    -- digest of the code; codes are random and single-use, so an unsalted digest suffices
    code_hash TEXT NOT NULL UNIQUE,
    client_id TEXT NOT NULL REFERENCES oauth_clients (identifier) ON DELETE CASCADE,
    user_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    session_id TEXT,
    redirect_uri TEXT NOT NULL,
    scopes TEXT NOT NULL DEFAULT '[]',
    code_challenge TEXT,
    code_challenge_method TEXT,
    created TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    expires_at TIMESTAMP NOT NULL
);
CREATE INDEX ix_oauth_codes_client_id ON oauth_codes (client_id);
CREATE INDEX ix_oauth_codes_user_id ON oauth_codes (user_id);
CREATE INDEX ix_oauth_codes_expires_at ON oauth_codes (expires_at);

-- A server shared with one user or one group.
CREATE TABLE shares (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    spawner_id INTEGER NOT NULL REFERENCES spawners (id) ON DELETE CASCADE,
    user_id INTEGER REFERENCES users (id) ON DELETE CASCADE,
    group_id INTEGER REFERENCES groups (id) ON DELETE CASCADE,
    scopes TEXT NOT NULL DEFAULT '[]',
    created_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    CHECK ((user_id IS NULL) <> (group_id IS NULL)),
    UNIQUE (spawner_id, user_id),
    UNIQUE (spawner_id, group_id)
);
CREATE INDEX ix_shares_user_id ON shares (user_id);
CREATE INDEX ix_shares_group_id ON shares (group_id);

CREATE TABLE share_codes (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    spawner_id INTEGER NOT NULL REFERENCES spawners (id) ON DELETE CASCADE,
    prefix TEXT NOT NULL,
    hashed TEXT NOT NULL UNIQUE,
    scopes TEXT NOT NULL DEFAULT '[]',
    created_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    expires_at TIMESTAMP,
    exchange_count INTEGER NOT NULL DEFAULT 0,
    last_exchanged_at TIMESTAMP
);
CREATE INDEX ix_share_codes_spawner_id ON share_codes (spawner_id);
CREATE INDEX ix_share_codes_prefix ON share_codes (prefix);

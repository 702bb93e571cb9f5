//! Diesel's view of the tables in `hub/migrations/{sqlite,postgres}`.
//!
//! Written in `diesel print-schema`'s shape and kept in step with the migrations by hand: the
//! tests load every model (all columns) from a freshly migrated database on both backends, so a
//! column missing here or typed differently there fails a test.

diesel::table! {
    /// Hashed API and OAuth access tokens.
    api_tokens (id) {
        id -> Integer,
        prefix -> Text,
        hashed -> Text,
        user_id -> Nullable<Integer>,
        service_id -> Nullable<Integer>,
        spawner_id -> Nullable<Integer>,
        client_id -> Text,
        session_id -> Nullable<Text>,
        note -> Text,
        scopes -> Text,
        created -> Timestamp,
        expires_at -> Nullable<Timestamp>,
        last_activity -> Nullable<Timestamp>,
    }
}

diesel::table! {
    /// Role grants to groups.
    group_role_map (group_id, role_id) {
        group_id -> Integer,
        role_id -> Integer,
    }
}

diesel::table! {
    /// Groups of users.
    groups (id) {
        id -> Integer,
        name -> Text,
        properties -> Text,
    }
}

diesel::table! {
    /// OAuth clients: user servers, services, and the built-in `jupyterhub` client.
    oauth_clients (id) {
        id -> Integer,
        identifier -> Text,
        description -> Text,
        secret -> Text,
        redirect_uri -> Text,
        allowed_scopes -> Text,
        spawner_id -> Nullable<Integer>,
        service_id -> Nullable<Integer>,
        created -> Timestamp,
    }
}

diesel::table! {
    /// Outstanding OAuth authorization codes.
    oauth_codes (id) {
        id -> Integer,
        code_hash -> Text,
        client_id -> Text,
        user_id -> Integer,
        session_id -> Nullable<Text>,
        redirect_uri -> Text,
        scopes -> Text,
        code_challenge -> Nullable<Text>,
        code_challenge_method -> Nullable<Text>,
        created -> Timestamp,
        expires_at -> Timestamp,
    }
}

diesel::table! {
    /// Named sets of scopes.
    roles (id) {
        id -> Integer,
        name -> Text,
        description -> Nullable<Text>,
        scopes -> Text,
    }
}

diesel::table! {
    /// Role grants to services.
    service_role_map (service_id, role_id) {
        service_id -> Integer,
        role_id -> Integer,
    }
}

diesel::table! {
    /// External services registered with the hub.
    services (id) {
        id -> Integer,
        name -> Text,
        admin -> Bool,
        from_config -> Bool,
        url -> Nullable<Text>,
        info -> Text,
        display -> Bool,
        oauth_no_confirm -> Bool,
        created -> Timestamp,
    }
}

diesel::table! {
    /// Codes that grant a share when exchanged.
    share_codes (id) {
        id -> Integer,
        spawner_id -> Integer,
        prefix -> Text,
        hashed -> Text,
        scopes -> Text,
        created_at -> Timestamp,
        expires_at -> Nullable<Timestamp>,
        exchange_count -> Integer,
        last_exchanged_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    /// Servers shared with a user or a group.
    shares (id) {
        id -> Integer,
        spawner_id -> Integer,
        user_id -> Nullable<Integer>,
        group_id -> Nullable<Integer>,
        scopes -> Text,
        created_at -> Timestamp,
    }
}

diesel::table! {
    /// One row per server of a user, with its spawner state and, while active, its address.
    spawners (id) {
        id -> Integer,
        user_id -> Integer,
        name -> Text,
        display_name -> Text,
        state -> Text,
        user_options -> Text,
        phase -> Text,
        phase_changed -> Timestamp,
        started -> Nullable<Timestamp>,
        last_activity -> Nullable<Timestamp>,
        server_proto -> Nullable<Text>,
        server_ip -> Nullable<Text>,
        server_port -> Nullable<Integer>,
        server_base_url -> Nullable<Text>,
    }
}

diesel::table! {
    /// Group membership.
    user_group_map (user_id, group_id) {
        user_id -> Integer,
        group_id -> Integer,
    }
}

diesel::table! {
    /// Role grants to users.
    user_role_map (user_id, role_id) {
        user_id -> Integer,
        role_id -> Integer,
    }
}

diesel::table! {
    /// Hub users.
    users (id) {
        id -> Integer,
        name -> Text,
        admin -> Bool,
        created -> Timestamp,
        last_activity -> Nullable<Timestamp>,
        cookie_id -> Text,
        encrypted_auth_state -> Nullable<Binary>,
    }
}

diesel::joinable!(api_tokens -> services (service_id));
diesel::joinable!(api_tokens -> spawners (spawner_id));
diesel::joinable!(api_tokens -> users (user_id));
diesel::joinable!(group_role_map -> groups (group_id));
diesel::joinable!(group_role_map -> roles (role_id));
diesel::joinable!(oauth_clients -> services (service_id));
diesel::joinable!(oauth_clients -> spawners (spawner_id));
diesel::joinable!(oauth_codes -> users (user_id));
diesel::joinable!(service_role_map -> roles (role_id));
diesel::joinable!(service_role_map -> services (service_id));
diesel::joinable!(share_codes -> spawners (spawner_id));
diesel::joinable!(shares -> groups (group_id));
diesel::joinable!(shares -> spawners (spawner_id));
diesel::joinable!(shares -> users (user_id));
diesel::joinable!(spawners -> users (user_id));
diesel::joinable!(user_group_map -> groups (group_id));
diesel::joinable!(user_group_map -> users (user_id));
diesel::joinable!(user_role_map -> roles (role_id));
diesel::joinable!(user_role_map -> users (user_id));

diesel::allow_tables_to_appear_in_same_query!(
    api_tokens,
    group_role_map,
    groups,
    oauth_clients,
    oauth_codes,
    roles,
    service_role_map,
    services,
    share_codes,
    shares,
    spawners,
    user_group_map,
    user_role_map,
    users,
);

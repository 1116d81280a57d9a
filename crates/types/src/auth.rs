//! Access control: roles, token scopes, the replicated token record, the
//! actor a change is attributed to, and what each role may do.
//!
//! The rules ([`permits`], [`permits_heartbeat`]) are pure: the node that
//! receives a request checks them against its own state to answer 403 at
//! once, and the state machine checks them again when it applies the
//! command, against the state every replica has at that point of the log.
//! The second check is the one that counts: a token revoked before a
//! write's entry is refused on every replica, whichever node took the
//! request.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use utoipa::ToSchema;

use crate::agent::AgentStatus;
use crate::command::Command;
use crate::error::ErrorBody;
use crate::ids::{AgentId, Timestamp, MAX_AGENT_ID_LEN};
use crate::limits::invalid;
use crate::names::UnknownName;

/// What every secret the registry issues starts with, so that a leaked
/// token is recognizable (secret scanners, log filters): `areg_` and 64 hex
/// digits (256 random bits).
pub const TOKEN_PREFIX: &str = "areg_";

/// Shortest secret accepted from `--bootstrap-token-file`, in bytes.
pub const MIN_SECRET_LEN: usize = 32;

/// Longest token name, in bytes.
pub const MAX_TOKEN_NAME_LEN: usize = 128;

/// Most patterns (agent patterns and runtimes together) in one scope.
pub const MAX_SCOPE_PATTERNS: usize = 64;

/// Most tokens the registry holds.
pub const MAX_TOKENS: usize = 10_000;

/// The id of a token: public, shown in listings and events, used to revoke
/// it. 1 to 64 characters of `[A-Za-z0-9_-]`; the registry makes them as
/// `tok_` and 16 hex digits.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TokenId(String);

/// Longest token id, in bytes.
pub const MAX_TOKEN_ID_LEN: usize = 64;

impl TokenId {
    /// Validates and wraps `s`.
    pub fn parse(s: &str) -> Result<TokenId, String> {
        if s.is_empty() || s.len() > MAX_TOKEN_ID_LEN {
            return Err(format!("a token id has 1 to {MAX_TOKEN_ID_LEN} characters"));
        }
        if !s
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'))
        {
            return Err("a token id may only contain letters, digits, _ and -".into());
        }
        Ok(TokenId(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The id the registry gives a new token: `tok_` and `random` in hex.
    pub fn generated(random: [u8; 8]) -> TokenId {
        TokenId(format!("tok_{}", hex::encode(random)))
    }

    /// The id of the token made from `--bootstrap-token-file`.
    pub fn bootstrap() -> TokenId {
        TokenId("tok_bootstrap".into())
    }
}

impl fmt::Display for TokenId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for TokenId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

impl Serialize for TokenId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for TokenId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        TokenId::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl utoipa::PartialSchema for TokenId {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, Type};
        ObjectBuilder::new()
            .schema_type(Type::String)
            .min_length(Some(1))
            .max_length(Some(MAX_TOKEN_ID_LEN))
            .pattern(Some(format!("^[A-Za-z0-9_-]{{1,{MAX_TOKEN_ID_LEN}}}$")))
            .description(Some("A token's public id (not its secret)."))
            .examples([serde_json::json!("tok_3f9a12bc45de6789")])
            .into()
    }
}

impl ToSchema for TokenId {}

/// What a token may do:
/// - `admin`: everything, tokens included;
/// - `operator`: every read, status changes (suspension included) and
///   removal of any agent, scaling policies;
/// - `agent`: every read, and register, update, heartbeat, report health
///   and status of, and deregister the agents in its scope only;
/// - `reader`: every read (listings, discovery, selection, events).
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    strum::EnumString,
    strum::IntoStaticStr,
    strum::Display,
    strum::VariantArray,
    ToSchema,
)]
#[serde(rename_all = "snake_case")]
#[strum(
    serialize_all = "snake_case",
    ascii_case_insensitive,
    const_into_str,
    parse_err_ty = UnknownName,
    parse_err_fn = unknown_role
)]
pub enum Role {
    Admin,
    Operator,
    Agent,
    Reader,
}

impl Role {
    /// "an admin token", "a reader token", ...: for messages.
    pub fn with_article(self) -> &'static str {
        match self {
            Role::Admin => "an admin token",
            Role::Operator => "an operator token",
            Role::Agent => "an agent token",
            Role::Reader => "a reader token",
        }
    }
}

fn unknown_role(given: &str) -> UnknownName {
    UnknownName::new::<Role>("role", given)
}

/// The agents an `agent` token may change: those whose id matches one of
/// `agents` (an exact id, or a prefix followed by `*`: `team-a-*`; `*`
/// alone matches every id), and those registered with one of `runtimes`
/// as `runtime_id`. Re-registering an agent needs both the agent as it is
/// and the agent as it would be to match.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TokenScope {
    /// Agent ids (`coder-1`) and id prefixes (`team-a-*`).
    #[serde(default)]
    pub agents: Vec<String>,
    /// Runtime ids: every agent registered with one of them.
    #[serde(default)]
    pub runtimes: Vec<String>,
}

impl TokenScope {
    /// Whether the agent `id`, of runtime `runtime_id` (empty: none), is in
    /// the scope.
    pub fn matches(&self, id: &str, runtime_id: &str) -> bool {
        self.agents.iter().any(|p| match p.strip_suffix('*') {
            Some(prefix) => id.starts_with(prefix),
            None => p == id,
        }) || (!runtime_id.is_empty() && self.runtimes.iter().any(|r| r == runtime_id))
    }

    pub fn is_empty(&self) -> bool {
        self.agents.is_empty() && self.runtimes.is_empty()
    }

    /// Checks the patterns: each agent pattern is an agent id, or an id
    /// prefix (possibly empty) followed by one `*`; each runtime is a
    /// non-empty id of at most 128 characters; at most
    /// [`MAX_SCOPE_PATTERNS`] in all. `field` names the scope in errors.
    pub fn check(&self, field: &str) -> Result<(), ErrorBody> {
        let count = self.agents.len() + self.runtimes.len();
        if count > MAX_SCOPE_PATTERNS {
            return Err(invalid(
                field,
                format!("a scope holds at most {MAX_SCOPE_PATTERNS} patterns, got {count}"),
            ));
        }
        for (i, p) in self.agents.iter().enumerate() {
            let id = p.strip_suffix('*').unwrap_or(p);
            let ok = (id.is_empty() && p == "*") || AgentId::parse(id).is_ok() || {
                // A prefix may end where an id could not ("team-a." is not
                // an id only because of a dot segment rule, "." itself).
                !id.is_empty()
                    && id.len() <= MAX_AGENT_ID_LEN
                    && id.bytes().all(|b| {
                        b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-')
                    })
                    && p.ends_with('*')
            };
            if !ok {
                return Err(invalid(
                    &format!("{field}.agents[{i}]"),
                    format!("'{p}' is neither an agent id nor an id prefix followed by '*'"),
                ));
            }
        }
        for (i, r) in self.runtimes.iter().enumerate() {
            if r.is_empty() || r.len() > MAX_AGENT_ID_LEN || r.chars().any(char::is_control) {
                return Err(invalid(
                    &format!("{field}.runtimes[{i}]"),
                    format!("a runtime id has 1 to {MAX_AGENT_ID_LEN} printable characters"),
                ));
            }
        }
        Ok(())
    }
}

/// Who made a change: a token (its id and name when it acted) or an
/// anonymous caller (`token_id` null, `name` "anonymous").
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Actor {
    /// The token's id; null for an anonymous caller.
    #[schema(required = true)]
    pub token_id: Option<TokenId>,
    /// The token's name, or `anonymous`.
    pub name: String,
}

impl Actor {
    /// A caller without a token (or any caller while auth is off).
    pub fn anonymous() -> Actor {
        Actor {
            token_id: None,
            name: "anonymous".into(),
        }
    }

    /// The holder of `token`.
    pub fn token(token: &TokenRecord) -> Actor {
        Actor {
            token_id: Some(token.id.clone()),
            name: token.name.clone(),
        }
    }
}

/// A token as the registry keeps it: replicated through Raft and in
/// snapshots. Only the SHA-256 of its secret is kept; the secret itself is
/// shown once, to its creator.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    pub id: TokenId,
    pub name: String,
    pub role: Role,
    /// `agent` tokens only; empty for the other roles.
    pub scope: TokenScope,
    /// After this instant the token is refused.
    pub expires_at: Option<Timestamp>,
    /// SHA-256 of the secret.
    pub secret_sha256: [u8; 32],
    pub created_at: Timestamp,
    /// Who created it (null: the node itself, from `--bootstrap-token-file`).
    pub created_by: Option<Actor>,
}

impl TokenRecord {
    /// Whether the token is refused at `now`.
    pub fn expired_at(&self, now: Timestamp) -> bool {
        self.expires_at.is_some_and(|t| now >= t)
    }

    /// What listings show: everything but the secret's hash.
    pub fn info(&self) -> TokenInfo {
        TokenInfo {
            id: self.id.clone(),
            name: self.name.clone(),
            role: self.role,
            scope: self.scope.clone(),
            expires_at: self.expires_at,
            created_at: self.created_at,
            created_by: self.created_by.clone(),
        }
    }
}

/// Checks a token's name: 1 to 128 printable characters.
pub fn check_token_name(name: &str) -> Result<(), ErrorBody> {
    if name.trim().is_empty() || name.len() > MAX_TOKEN_NAME_LEN {
        return Err(invalid(
            "name",
            format!("a token name has 1 to {MAX_TOKEN_NAME_LEN} characters"),
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(invalid(
            "name",
            "a token name must not hold control characters",
        ));
    }
    Ok(())
}

impl TokenRecord {
    /// The rules of a token's own fields, checked before one is proposed
    /// and again when it is applied: a name, a scope for an `agent` token
    /// and for it alone.
    pub fn check(&self) -> Result<(), ErrorBody> {
        check_token_name(&self.name)?;
        self.scope.check("scope")?;
        match (self.role, self.scope.is_empty()) {
            (Role::Agent, true) => Err(invalid(
                "scope",
                "an agent token needs a scope: the agent ids, id prefixes (team-a-*) or runtimes it may change",
            )),
            (Role::Admin | Role::Operator | Role::Reader, false) => Err(invalid(
                "scope",
                format!("only agent tokens have a scope; a {} token has none", self.role),
            )),
            _ => Ok(()),
        }
    }
}

/// `POST /v1/auth/tokens`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTokenRequest {
    /// A name for people: who or what holds the token. Unique.
    pub name: String,
    pub role: Role,
    /// `agent` tokens: the agents they may change (required for them,
    /// refused for the other roles).
    #[serde(default)]
    pub scope: Option<TokenScope>,
    /// When the token stops working (RFC 3339); never when absent.
    #[serde(default)]
    pub expires_at: Option<Timestamp>,
}

/// A token as listed: everything but its secret.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TokenInfo {
    pub id: TokenId,
    pub name: String,
    pub role: Role,
    pub scope: TokenScope,
    #[schema(required = true)]
    pub expires_at: Option<Timestamp>,
    pub created_at: Timestamp,
    /// Who created it; null for the bootstrap token.
    #[schema(required = true)]
    pub created_by: Option<Actor>,
}

/// The answer to `POST /v1/auth/tokens`: the secret, shown this once.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CreateTokenResponse {
    /// Send it as `Authorization: Bearer <token>`. Not kept by the
    /// registry (only its hash is): store it now.
    pub token: String,
    #[serde(flatten)]
    pub info: TokenInfo,
}

/// `GET /v1/auth/tokens`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TokenList {
    pub tokens: Vec<TokenInfo>,
}

/// `DELETE /v1/auth/tokens/{id}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RevokeTokenResponse {
    pub id: TokenId,
    pub revoked: bool,
}

/// What a caller's rights are checked with: a role and, for `agent`, a
/// scope. A token gives its own; an anonymous caller gets the ones the
/// node's `--anonymous-*` settings give.
#[derive(Clone, Copy, Debug)]
pub struct Rights<'a> {
    pub role: Role,
    pub scope: &'a TokenScope,
}

impl<'a> Rights<'a> {
    pub fn of(token: &'a TokenRecord) -> Rights<'a> {
        Rights {
            role: token.role,
            scope: &token.scope,
        }
    }
}

/// What [`permits`] needs to know of an agent the command touches, as it
/// is now.
#[derive(Clone, Copy, Debug)]
pub struct Existing<'a> {
    pub runtime_id: &'a str,
    pub status: AgentStatus,
}

/// Whether `rights` allow `cmd`, given the agent it touches as it is now
/// (`None`: not registered). The refusal says what was refused and why.
pub fn permits(
    rights: Rights<'_>,
    cmd: &Command,
    existing: Option<Existing<'_>>,
) -> Result<(), String> {
    let role = rights.role;
    let in_scope = |id: &AgentId| match existing {
        Some(e) => rights.scope.matches(id.as_str(), e.runtime_id),
        None => rights.scope.matches(id.as_str(), ""),
    };
    let out_of_scope = |id: &AgentId| format!("agent '{id}' is outside this token's scope");
    if !cmd.is_client_change() {
        return Err(format!(
            "a {} command is not a change a caller can make",
            cmd.kind()
        ));
    }
    match (role, cmd) {
        (Role::Admin, _) => Ok(()),
        (Role::Reader, c) => Err(format!("{} may not {}", role.with_article(), c.action())),
        (Role::Operator, Command::SetStatus { .. } | Command::Deregister { .. })
        | (Role::Operator, Command::SetScalingPolicy { .. }) => Ok(()),
        (Role::Agent, Command::Register(c))
        | (Role::Agent, Command::RegisterCard { register: c, .. }) => {
            // Both the agent as it would be and, when it exists, as it is.
            let new = rights.scope.matches(c.agent_id.as_str(), &c.runtime_id);
            let old =
                existing.is_none_or(|e| rights.scope.matches(c.agent_id.as_str(), e.runtime_id));
            if new && old {
                Ok(())
            } else {
                Err(out_of_scope(&c.agent_id))
            }
        }
        (
            Role::Agent,
            Command::SetHealth { agent_id, .. } | Command::Deregister { agent_id, .. },
        ) => {
            if in_scope(agent_id) {
                Ok(())
            } else {
                Err(out_of_scope(agent_id))
            }
        }
        (Role::Agent, Command::SetCard(c)) => {
            if in_scope(&c.agent_id) {
                Ok(())
            } else {
                Err(out_of_scope(&c.agent_id))
            }
        }
        (
            Role::Agent,
            Command::SetStatus {
                agent_id, status, ..
            },
        ) => {
            if !in_scope(agent_id) {
                Err(out_of_scope(agent_id))
            } else if *status == AgentStatus::Suspended {
                Err("an agent token may not suspend an agent: that takes an operator".into())
            } else if existing.is_some_and(|e| e.status == AgentStatus::Suspended) {
                Err(format!(
                    "agent '{agent_id}' is suspended: only an operator may lift that"
                ))
            } else {
                Ok(())
            }
        }
        (Role::Operator | Role::Agent, c) => {
            Err(format!("{} may not {}", role.with_article(), c.action()))
        }
    }
}

/// Whether `rights` allow a heartbeat for the agent `id` of runtime
/// `runtime_id` (empty when not registered).
pub fn permits_heartbeat(rights: Rights<'_>, id: &AgentId, runtime_id: &str) -> Result<(), String> {
    match rights.role {
        Role::Admin => Ok(()),
        Role::Agent if rights.scope.matches(id.as_str(), runtime_id) => Ok(()),
        Role::Agent => Err(format!("agent '{id}' is outside this token's scope")),
        role => Err(format!("{} may not send heartbeats", role.with_article())),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use strum::VariantArray;

    use super::*;
    use crate::command::{Keep, RegisterCommand};

    fn id(s: &str) -> AgentId {
        AgentId::parse(s).unwrap()
    }

    fn scope(agents: &[&str], runtimes: &[&str]) -> TokenScope {
        TokenScope {
            agents: agents.iter().map(|s| s.to_string()).collect(),
            runtimes: runtimes.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn register(agent: &str, runtime: &str) -> Command {
        Command::Register(Box::new(RegisterCommand {
            agent_id: id(agent),
            name: agent.into(),
            agent_type: String::new(),
            runtime_id: runtime.into(),
            endpoint: "http://a:1".into(),
            version: String::new(),
            description: String::new(),
            capabilities: vec![],
            tags: vec![],
            metadata: Default::default(),
            status: None,
            health_score: None,
            load_factor: None,
            performance_metrics: None,
            ttl_seconds: 30,
            offline_after_seconds: 60,
            deregister_after_seconds: 300,
            if_absent: false,
            expected_revision: None,
            keep: Keep::default(),
            now: Timestamp(1),
        }))
    }

    fn status(agent: &str, status: AgentStatus) -> Command {
        Command::SetStatus {
            agent_id: id(agent),
            status,
            now: Timestamp(1),
        }
    }

    fn existing(runtime_id: &str, status: AgentStatus) -> Option<Existing<'_>> {
        Some(Existing { runtime_id, status })
    }

    #[test]
    fn a_scope_matches_exact_ids_prefixes_and_runtimes() {
        let s = scope(&["solo", "team-a-*"], &["rt-1"]);
        assert!(s.matches("solo", ""));
        assert!(!s.matches("solo-2", ""));
        assert!(s.matches("team-a-1", ""));
        assert!(s.matches("team-a-", ""));
        assert!(!s.matches("team-b-1", ""));
        assert!(!s.matches("team-a", ""));
        assert!(s.matches("anything", "rt-1"));
        assert!(!s.matches("anything", "rt-2"));
        assert!(!s.matches("anything", ""));
        // An empty runtime never matches a runtime pattern.
        assert!(!scope(&[], &[""]).matches("x", ""));
        assert!(scope(&["*"], &[]).matches("x", ""));
        assert!(TokenScope::default().is_empty());
        assert!(!scope(&[], &["r"]).is_empty());
        assert!(!scope(&["a"], &[]).is_empty());
    }

    #[test]
    fn scope_patterns_are_checked_and_name_their_field() {
        scope(&["a", "team-a-*", "*", "team.a.*"], &["rt"])
            .check("scope")
            .unwrap();
        for (bad, field) in [
            (scope(&["a b"], &[]), "scope.agents[0]"),
            (scope(&["a", "team-*-x"], &[]), "scope.agents[1]"),
            (scope(&[""], &[]), "scope.agents[0]"),
            (scope(&["**"], &[]), "scope.agents[0]"),
            (scope(&[], &[""]), "scope.runtimes[0]"),
            (scope(&[], &["a\nb"]), "scope.runtimes[0]"),
        ] {
            let e = bad.check("scope").unwrap_err();
            assert_eq!(e.error.field.as_deref(), Some(field), "{bad:?}");
        }
        let many: Vec<String> = (0..=MAX_SCOPE_PATTERNS).map(|i| format!("a{i}")).collect();
        let e = TokenScope {
            agents: many,
            runtimes: vec![],
        }
        .check("scope")
        .unwrap_err();
        assert_eq!(e.error.field.as_deref(), Some("scope"));
        let at_most: Vec<String> = (0..MAX_SCOPE_PATTERNS).map(|i| format!("a{i}")).collect();
        TokenScope {
            agents: at_most,
            runtimes: vec![],
        }
        .check("scope")
        .unwrap();
    }

    #[test]
    fn only_agent_tokens_have_scopes_and_every_agent_token_has_one() {
        let token = |role, scope| TokenRecord {
            id: TokenId::generated([1; 8]),
            name: "n".into(),
            role,
            scope,
            expires_at: None,
            secret_sha256: [0; 32],
            created_at: Timestamp(0),
            created_by: None,
        };
        token(Role::Agent, scope(&["a"], &[])).check().unwrap();
        token(Role::Reader, TokenScope::default()).check().unwrap();
        for (role, s) in [
            (Role::Agent, TokenScope::default()),
            (Role::Admin, scope(&["a"], &[])),
            (Role::Operator, scope(&[], &["r"])),
            (Role::Reader, scope(&["a"], &[])),
        ] {
            let e = token(role, s).check().unwrap_err();
            assert_eq!(e.error.field.as_deref(), Some("scope"), "{role}");
        }
        let mut t = token(Role::Reader, TokenScope::default());
        for bad in ["", "   ", "a\u{7}b"] {
            t.name = bad.into();
            assert_eq!(t.check().unwrap_err().error.field.as_deref(), Some("name"));
        }
        t.name = "x".repeat(MAX_TOKEN_NAME_LEN);
        t.check().unwrap();
        t.name.push('x');
        assert!(t.check().is_err());
    }

    #[test]
    fn expiry_is_at_or_after_the_instant() {
        let mut t = TokenRecord {
            id: TokenId::bootstrap(),
            name: "n".into(),
            role: Role::Admin,
            scope: TokenScope::default(),
            expires_at: Some(Timestamp(10)),
            secret_sha256: [0; 32],
            created_at: Timestamp(0),
            created_by: None,
        };
        assert!(!t.expired_at(Timestamp(9)));
        assert!(t.expired_at(Timestamp(10)));
        assert!(t.expired_at(Timestamp(11)));
        t.expires_at = None;
        assert!(!t.expired_at(Timestamp(i64::MAX)));
        assert_eq!(t.info().id, t.id);
        assert_eq!(Actor::token(&t).token_id, Some(TokenId::bootstrap()));
        assert_eq!(Actor::anonymous().token_id, None);
    }

    #[test]
    fn token_ids_are_checked() {
        assert!(TokenId::parse("tok_0123abcd").is_ok());
        assert!(TokenId::parse(&"a".repeat(MAX_TOKEN_ID_LEN)).is_ok());
        for bad in ["", "a b", "a/b", "é", &"a".repeat(MAX_TOKEN_ID_LEN + 1)] {
            assert!(TokenId::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            TokenId::generated([0xab; 8]).as_str(),
            "tok_abababababababab"
        );
        assert!(TokenId::parse(TokenId::generated([7; 8]).as_str()).is_ok());
    }

    /// Every role against every kind of client change, in and out of scope.
    #[test]
    fn each_role_may_do_what_the_documentation_says() {
        let team_a = scope(&["team-a-*"], &["rt-a"]);
        let none = TokenScope::default();
        let rights = |role| Rights {
            role,
            scope: if role == Role::Agent { &team_a } else { &none },
        };
        let policy = Command::SetScalingPolicy {
            capability: "c".into(),
            policy: None,
            now: Timestamp(1),
        };
        let health = Command::SetHealth {
            agent_id: id("team-a-1"),
            health_score: Some(0.5),
            load_factor: None,
            metrics: BTreeMap::new(),
            now: Timestamp(1),
        };
        let deregister = |a: &str| Command::Deregister {
            agent_id: id(a),
            now: Timestamp(1),
        };
        let token_cmd = Command::RevokeToken {
            id: TokenId::bootstrap(),
            now: Timestamp(1),
        };
        let active = existing("rt-a", AgentStatus::Active);
        // (command, the agent as it is, roles allowed)
        let table: Vec<(Command, Option<Existing<'_>>, &[Role])> = vec![
            (
                register("team-a-1", "rt-a"),
                None,
                &[Role::Admin, Role::Agent],
            ),
            (register("team-a-1", ""), None, &[Role::Admin, Role::Agent]),
            (register("other", "rt-a"), None, &[Role::Admin, Role::Agent]),
            (register("other", "rt-b"), None, &[Role::Admin]),
            // Re-registering must fit the scope as it is and as it would be.
            (
                register("team-b-1", "rt-a"),
                existing("rt-b", AgentStatus::Active),
                &[Role::Admin],
            ),
            (
                register("other", "rt-b"),
                existing("rt-a", AgentStatus::Active),
                &[Role::Admin],
            ),
            (
                register("team-a-1", "rt-b"),
                existing("rt-b", AgentStatus::Active),
                &[Role::Admin, Role::Agent],
            ),
            (health.clone(), active, &[Role::Admin, Role::Agent]),
            (
                deregister("team-a-1"),
                active,
                &[Role::Admin, Role::Operator, Role::Agent],
            ),
            (
                deregister("team-b-1"),
                existing("rt-b", AgentStatus::Active),
                &[Role::Admin, Role::Operator],
            ),
            (
                deregister("team-b-1"),
                existing("rt-a", AgentStatus::Active),
                &[Role::Admin, Role::Operator, Role::Agent],
            ),
            (deregister("team-b-1"), None, &[Role::Admin, Role::Operator]),
            (
                status("team-a-1", AgentStatus::Busy),
                active,
                &[Role::Admin, Role::Operator, Role::Agent],
            ),
            (
                status("team-a-1", AgentStatus::Suspended),
                active,
                &[Role::Admin, Role::Operator],
            ),
            (
                status("team-a-1", AgentStatus::Active),
                existing("rt-a", AgentStatus::Suspended),
                &[Role::Admin, Role::Operator],
            ),
            (
                status("team-b-1", AgentStatus::Busy),
                None,
                &[Role::Admin, Role::Operator],
            ),
            (policy.clone(), None, &[Role::Admin, Role::Operator]),
            (token_cmd.clone(), None, &[Role::Admin]),
        ];
        for (cmd, now, allowed) in &table {
            for role in Role::VARIANTS {
                let got = permits(rights(*role), cmd, *now);
                assert_eq!(
                    got.is_ok(),
                    allowed.contains(role),
                    "{role} {} {:?}: {got:?}",
                    cmd.kind(),
                    cmd.agent_id()
                );
                if let Err(m) = got {
                    assert!(!m.is_empty());
                }
            }
        }
        // Never the registry's own commands, whoever asks.
        for cmd in [
            Command::Checkpoint {
                entries: vec![],
                heartbeats: 1,
                now: Timestamp(1),
            },
            Command::Batch(vec![policy]),
            Command::CountDiscoveryRequests {
                count: 1,
                now: Timestamp(1),
            },
            Command::Authorized {
                token: TokenId::bootstrap(),
                command: Box::new(health),
            },
        ] {
            for role in Role::VARIANTS {
                let m = permits(rights(*role), &cmd, None).unwrap_err();
                assert!(m.contains("not a change a caller can make"), "{m}");
            }
        }
        // The refusals say what and why.
        let m = permits(rights(Role::Agent), &register("team-b-1", "rt-b"), None).unwrap_err();
        assert_eq!(m, "agent 'team-b-1' is outside this token's scope");
        let m = permits(rights(Role::Reader), &token_cmd, None).unwrap_err();
        assert_eq!(m, "a reader token may not revoke tokens");
        let m = permits(rights(Role::Operator), &register("x", ""), None).unwrap_err();
        assert_eq!(m, "an operator token may not register agents");
    }

    #[test]
    fn heartbeats_take_an_admin_or_an_agent_token_in_scope() {
        let team_a = scope(&["team-a-*"], &["rt-a"]);
        let none = TokenScope::default();
        let r = |role, scope| Rights { role, scope };
        assert!(permits_heartbeat(r(Role::Admin, &none), &id("x"), "").is_ok());
        assert!(permits_heartbeat(r(Role::Agent, &team_a), &id("team-a-1"), "").is_ok());
        assert!(permits_heartbeat(r(Role::Agent, &team_a), &id("x"), "rt-a").is_ok());
        assert!(permits_heartbeat(r(Role::Agent, &team_a), &id("x"), "rt-b").is_err());
        for role in [Role::Operator, Role::Reader] {
            let m = permits_heartbeat(r(role, &none), &id("x"), "").unwrap_err();
            assert!(m.ends_with("may not send heartbeats"), "{m}");
        }
    }

    #[test]
    fn roles_read_and_print_by_their_wire_names() {
        for (role, name) in [
            (Role::Admin, "admin"),
            (Role::Operator, "operator"),
            (Role::Agent, "agent"),
            (Role::Reader, "reader"),
        ] {
            assert_eq!(role.to_string(), name);
            assert_eq!(name.to_uppercase().parse::<Role>().unwrap(), role);
            assert_eq!(serde_json::to_value(role).unwrap(), name);
        }
        let e = "root".parse::<Role>().unwrap_err();
        assert_eq!(
            e.to_string(),
            "unknown role 'root' (expected one of admin, operator, agent, reader)"
        );
    }
}

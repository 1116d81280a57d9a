//! Who is calling, and what they may do: bearer tokens checked against the
//! replicated token table, the anonymous caller's rights from the node's
//! settings, what each route needs, and the token routes
//! (`/v1/auth/tokens`).
//!
//! Three checks, each where it can be exact:
//! - [`authenticate`] (middleware of the public routes): the token is
//!   known here and not expired (401 otherwise), and the caller may use
//!   the route at all: reads need a token of any role or
//!   `--anonymous-role reader`, token routes an admin (403).
//! - [`authorize`] (before a write is proposed): the role and scope allow
//!   the change on this node's state (403 at once, nothing proposed); a
//!   token's change is proposed wrapped in [`Command::Authorized`].
//! - Apply (the state machine): the same rules against the token table
//!   and the records at the entry's place in the log, on every replica.
//!   A token revoked before the entry is refused there, whichever node
//!   took the request, so once a revocation has answered no write made
//!   with the token can succeed. Heartbeats, which are not log entries,
//!   are checked again by the leader against its table
//!   ([`crate::liveness::Liveness::leader_heartbeat`]).
//!
//! Reads are checked against the node's own table, which trails the
//! leader's by at most a replication round.

use std::path::Path as FsPath;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{FromRequestParts, MatchedPath, Path, Request, State};
use axum::http::request::Parts;
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use rand::RngCore;
use sha2::{Digest, Sha256};
use tracing::{error, info, warn};

use registry_types::auth::{
    permits, permits_heartbeat, CreateTokenRequest, CreateTokenResponse, RevokeTokenResponse,
    Rights, Role, TokenId, TokenList, TokenRecord, MIN_SECRET_LEN, TOKEN_PREFIX,
};
use registry_types::{AgentId, Command, CommandResult, ErrorCode, Timestamp};

use crate::api::rejection;
use crate::config::{AnonymousRole, AuthMode};
use crate::error::{ApiError, ApiResult};
use crate::extract::JsonBody;
use crate::node::Node;
use crate::openapi::{BadRequest, Internal, WriteTimeout, WriteUnavailable};

/// The caller of a public route, as [`authenticate`] found it.
#[derive(Clone, Debug)]
pub enum Caller {
    /// No token (or any caller while auth is off).
    Anonymous,
    /// A known token, as this node's table holds it.
    Token(Arc<TokenRecord>),
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(parts
            .extensions
            .get::<Caller>()
            .cloned()
            .unwrap_or(Caller::Anonymous))
    }
}

impl Caller {
    /// The token's id, if the caller has one.
    pub fn token_id(&self) -> Option<&TokenId> {
        match self {
            Caller::Anonymous => None,
            Caller::Token(t) => Some(&t.id),
        }
    }
}

/// What a route asks of its caller under `--auth on`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need {
    /// Nothing: the API document and its browser.
    Open,
    /// Nothing while `--open-health` (the default), else a token.
    Health,
    /// Nothing while `--open-metrics` (the default), else a token.
    Metrics,
    /// A token of any role, or `--anonymous-role reader`.
    Read,
    /// A change: checked against the role and scope when it is proposed
    /// ([`authorize`]); a caller without a token needs
    /// `--anonymous-agent-scope`.
    Write,
    /// An admin token.
    Admin,
}

/// What the route `path` (as matched: `/v1/agents/{id}`) asks of its
/// caller for `method`. Reads are `GET`/`HEAD` and `POST /v1/discover`;
/// every other public route changes something.
pub fn need(method: &Method, path: &str) -> Need {
    match path {
        p if p.starts_with("/v1/auth/") => Need::Admin,
        "/v1/snapshot" => Need::Admin,
        p if p.starts_with("/v1/cluster/members") && method != Method::GET => Need::Admin,
        "/v1/cluster/leader" if method == Method::POST => Need::Admin,
        "/health/live" | "/health/ready" => Need::Health,
        "/metrics" => Need::Metrics,
        "/openapi.json" | "/.well-known/agent-card.json" => Need::Open,
        p if p == "/docs" || p.starts_with("/docs/") => Need::Open,
        "/v1/discover" => Need::Read,
        _ if method == Method::GET || method == Method::HEAD => Need::Read,
        _ => Need::Write,
    }
}

/// SHA-256 of a secret: what the token table keeps.
pub fn secret_hash(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// A fresh secret: [`TOKEN_PREFIX`] and 256 random bits in hex.
pub fn new_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    format!("{TOKEN_PREFIX}{}", hex::encode(bytes))
}

/// A fresh token id: `tok_` and 64 random bits in hex.
fn new_token_id() -> TokenId {
    let mut bytes = [0u8; 8];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    TokenId::generated(bytes)
}

fn unauthenticated(message: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::Unauthenticated, message)
}

fn forbidden(message: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::Forbidden, message)
}

/// The bearer token of a request: `Ok(None)` without an `Authorization`
/// header, an error for one that is not `Bearer <token>`.
fn bearer(parts: &axum::http::HeaderMap) -> Result<Option<&str>, ApiError> {
    let Some(value) = parts.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value
        .to_str()
        .map_err(|_| unauthenticated("the Authorization header is not text"))?;
    match value.split_once(' ') {
        Some((scheme, token))
            if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() =>
        {
            Ok(Some(token.trim()))
        }
        _ => Err(unauthenticated(
            "the Authorization header must be 'Bearer <token>'",
        )),
    }
}

/// Finds the caller of a public request and refuses what its route does
/// not allow it at all (see the module notes). Under `--auth off` every
/// caller is anonymous and allowed everything.
pub async fn authenticate(State(node): State<Node>, mut req: Request, next: Next) -> Response {
    let config = &node.config;
    if config.auth == AuthMode::Off {
        req.extensions_mut().insert(Caller::Anonymous);
        return next.run(req).await;
    }
    let path = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| req.uri().path().to_string(), |p| p.as_str().to_string());
    let need = need(req.method(), &path);
    let caller = match bearer(req.headers()) {
        Err(e) => return e.into_response(),
        Ok(None) => Caller::Anonymous,
        Ok(Some(secret)) => {
            let g = node.shared.read();
            match g.registry.token_by_hash(&secret_hash(secret)) {
                None => {
                    drop(g);
                    node.metrics
                        .auth_refused
                        .with_label_values(&["unknown_token"])
                        .inc();
                    return unauthenticated("unknown or revoked token").into_response();
                }
                Some(t) if t.expired_at(Timestamp::now()) => {
                    let at = t.expires_at.unwrap_or_default().to_rfc3339();
                    drop(g);
                    node.metrics
                        .auth_refused
                        .with_label_values(&["expired_token"])
                        .inc();
                    return unauthenticated(format!("the token expired at {at}")).into_response();
                }
                Some(t) => Caller::Token(Arc::new(t.clone())),
            }
        }
    };
    let refusal = match (&caller, need) {
        (_, Need::Open) => None,
        (_, Need::Health) if config.open_health => None,
        (_, Need::Metrics) if config.open_metrics => None,
        (Caller::Token(_), Need::Health | Need::Metrics | Need::Read | Need::Write) => None,
        (Caller::Token(t), Need::Admin) if t.role == Role::Admin => None,
        (Caller::Token(t), Need::Admin) if path.starts_with("/v1/auth/") => {
            Some(forbidden(format!(
                "{} may not manage tokens: that takes an admin token",
                t.role.with_article()
            )))
        }
        (Caller::Token(t), Need::Admin) => Some(forbidden(format!(
            "{} may not call {} {path}: that takes an admin token",
            t.role.with_article(),
            req.method()
        ))),
        (Caller::Anonymous, Need::Read) if config.anonymous_role == AnonymousRole::Reader => None,
        (Caller::Anonymous, Need::Write) if !config.anonymous_agent_scope.is_empty() => None,
        (Caller::Anonymous, _) => Some(unauthenticated(format!(
            "{} {path} needs a token: send 'Authorization: Bearer <token>'",
            req.method()
        ))),
    };
    if let Some(e) = refusal {
        let reason = if e.code() == ErrorCode::Forbidden {
            "forbidden"
        } else {
            "no_token"
        };
        node.metrics.auth_refused.with_label_values(&[reason]).inc();
        return e.into_response();
    }
    let token = match &caller {
        Caller::Token(t) => Some(t.id.clone()),
        Caller::Anonymous => None,
    };
    req.extensions_mut().insert(caller);
    let response = next.run(req).await;
    // A read waited for its read index inside the handler: the token table
    // is now at least as new as that index, so a revocation that returned
    // before the read began is seen here, on every node.
    match token {
        Some(id) if need == Need::Read => match node.shared.read().registry.token(&id) {
            Some(t) if !t.expired_at(Timestamp::now()) => response,
            _ => {
                node.metrics
                    .auth_refused
                    .with_label_values(&["unknown_token"])
                    .inc();
                unauthenticated("the token was revoked or expired").into_response()
            }
        },
        _ => response,
    }
}

/// Checks a change against the caller's rights on this node's state and
/// returns the command to propose: a token's change wrapped in
/// [`Command::Authorized`] (apply checks it again, exactly), an anonymous
/// one as it is. Under `--auth off`, `cmd` as it is.
pub fn authorize(node: &Node, caller: &Caller, cmd: Command) -> ApiResult<Command> {
    let config = &node.config;
    if config.auth == AuthMode::Off {
        return Ok(cmd);
    }
    let refused = |e: ApiError| {
        node.metrics
            .auth_refused
            .with_label_values(&["forbidden"])
            .inc();
        e
    };
    let g = node.shared.read();
    let existing = cmd.agent_id().and_then(|id| g.registry.existing(id));
    match caller {
        Caller::Anonymous => {
            let scope = config.anonymous_scope();
            if scope.is_empty() {
                return Err(refused(unauthenticated(format!(
                    "only a token may {}: send 'Authorization: Bearer <token>'",
                    cmd.action()
                ))));
            }
            let rights = Rights {
                role: Role::Agent,
                scope: &scope,
            };
            permits(rights, &cmd, existing).map_err(|m| {
                refused(unauthenticated(format!(
                    "without a token: {m} (--anonymous-agent-scope); send 'Authorization: Bearer <token>'"
                )))
            })?;
            Ok(cmd)
        }
        Caller::Token(t) => {
            permits(Rights::of(t), &cmd, existing).map_err(|m| refused(forbidden(m)))?;
            Ok(Command::Authorized {
                token: t.id.clone(),
                command: Box::new(cmd),
            })
        }
    }
}

/// Whether the caller may send heartbeats for any agent at all: an admin
/// or agent token, or a caller without a token under an anonymous agent
/// scope. A batch from anyone else is refused as a whole.
pub fn may_heartbeat(node: &Node, caller: &Caller) -> ApiResult<()> {
    let config = &node.config;
    if config.auth == AuthMode::Off {
        return Ok(());
    }
    let refused = |e: ApiError| {
        node.metrics
            .auth_refused
            .with_label_values(&["forbidden"])
            .inc();
        Err(e)
    };
    match caller {
        Caller::Anonymous if config.anonymous_scope().is_empty() => refused(unauthenticated(
            "only a token may send heartbeats: send 'Authorization: Bearer <token>'",
        )),
        Caller::Token(t) if !matches!(t.role, Role::Admin | Role::Agent) => refused(forbidden(
            format!("{} may not send heartbeats", t.role.with_article()),
        )),
        _ => Ok(()),
    }
}

/// Checks a heartbeat for `id` against the caller's rights on this node's
/// state; the token to send with it to the leader, which checks it again.
pub fn authorize_heartbeat(
    node: &Node,
    caller: &Caller,
    id: &AgentId,
) -> ApiResult<Option<TokenId>> {
    let config = &node.config;
    if config.auth == AuthMode::Off {
        return Ok(None);
    }
    let runtime = {
        let g = node.shared.read();
        g.registry
            .get(id)
            .map(|r| r.runtime_id.clone())
            .unwrap_or_default()
    };
    match caller {
        Caller::Anonymous => {
            let scope = config.anonymous_scope();
            let rights = Rights {
                role: Role::Agent,
                scope: &scope,
            };
            permits_heartbeat(rights, id, &runtime).map_err(|m| {
                node.metrics.auth_refused.with_label_values(&["forbidden"]).inc();
                unauthenticated(format!(
                    "without a token: {m} (--anonymous-agent-scope); send 'Authorization: Bearer <token>'"
                ))
            })?;
            Ok(None)
        }
        Caller::Token(t) => {
            permits_heartbeat(Rights::of(t), id, &runtime).map_err(|m| {
                node.metrics
                    .auth_refused
                    .with_label_values(&["forbidden"])
                    .inc();
                forbidden(m)
            })?;
            Ok(Some(t.id.clone()))
        }
    }
}

/// Create a token.
///
/// Admin only. Answers the secret once: the registry keeps only its
/// SHA-256. A write.
#[utoipa::path(
    post,
    path = "/v1/auth/tokens",
    operation_id = "createToken",
    tag = "auth",
    request_body = CreateTokenRequest,
    responses(
        (status = 201, description = "Created. `token` is the secret: store it now.", body = CreateTokenResponse),
        (status = 400, response = BadRequest),
        (status = 409, description = "A token of that name exists (`already_exists`).", body = registry_types::ErrorBody),
        (status = 500, response = Internal),
        (status = 503, response = WriteUnavailable),
        (status = 504, response = WriteTimeout),
    ),
)]
pub async fn create_token(
    State(node): State<Node>,
    caller: Caller,
    JsonBody(req): JsonBody<CreateTokenRequest>,
) -> ApiResult<Response> {
    let now = Timestamp::now();
    if let Some(t) = req.expires_at.filter(|t| *t <= now) {
        return Err(ApiError::invalid(
            "expires_at",
            format!("expires_at ({}) is not in the future", t.to_rfc3339()),
        ));
    }
    let secret = new_secret();
    let record = TokenRecord {
        id: new_token_id(),
        name: req.name.trim().to_string(),
        role: req.role,
        scope: req.scope.unwrap_or_default(),
        expires_at: req.expires_at,
        secret_sha256: secret_hash(&secret),
        created_at: now,
        created_by: Some(registry_types::auth::Actor::anonymous()),
    };
    record.check()?;
    let cmd = authorize(&node, &caller, Command::CreateToken(Box::new(record)))?;
    match node.propose(cmd).await? {
        CommandResult::Token { info, .. } => {
            info!(token = %info.id, name = %info.name, role = %info.role, "token created");
            let body = CreateTokenResponse {
                token: secret,
                info: *info,
            };
            Ok((StatusCode::CREATED, Json(body)).into_response())
        }
        CommandResult::Rejected(r) => Err(rejection(r)),
        _ => Err(ApiError::internal()),
    }
}

/// List tokens.
///
/// Admin only. Metadata only: secrets are never kept.
#[utoipa::path(
    get,
    path = "/v1/auth/tokens",
    operation_id = "listTokens",
    tag = "auth",
    responses(
        (status = 200, description = "Every token, by id.", body = TokenList),
        (status = 500, response = Internal),
    ),
)]
pub async fn list_tokens(State(node): State<Node>) -> Json<TokenList> {
    let g = node.shared.read();
    Json(TokenList {
        tokens: g.registry.tokens().map(TokenRecord::info).collect(),
    })
}

/// Revoke a token.
///
/// Admin only. Once this answers, no write made with the token succeeds
/// through any node; reads stop within a replication round. The last admin
/// token cannot be revoked. A write.
#[utoipa::path(
    delete,
    path = "/v1/auth/tokens/{id}",
    operation_id = "revokeToken",
    tag = "auth",
    params(("id" = TokenId, Path, description = "The token's id (not its secret).")),
    responses(
        (status = 200, description = "Revoked.", body = RevokeTokenResponse),
        (status = 400, response = BadRequest),
        (status = 404, description = "No token with that id (`token_not_found`).", body = registry_types::ErrorBody),
        (status = 500, response = Internal),
        (status = 503, response = WriteUnavailable),
        (status = 504, response = WriteTimeout),
    ),
)]
pub async fn revoke_token(
    State(node): State<Node>,
    caller: Caller,
    Path(raw): Path<String>,
) -> ApiResult<Json<RevokeTokenResponse>> {
    let id = TokenId::parse(&raw).map_err(|m| ApiError::invalid("id", m))?;
    let cmd = authorize(
        &node,
        &caller,
        Command::RevokeToken {
            id,
            now: Timestamp::now(),
        },
    )?;
    match node.propose(cmd).await? {
        CommandResult::Token { info, revoked } => {
            info!(token = %info.id, name = %info.name, "token revoked");
            Ok(Json(RevokeTokenResponse {
                id: info.id,
                revoked,
            }))
        }
        CommandResult::Rejected(r) => Err(rejection(r)),
        _ => Err(ApiError::internal()),
    }
}

/// The first admin token, from `--bootstrap-token-file`.
#[derive(Clone)]
pub struct BootstrapToken {
    sha256: [u8; 32],
}

/// The name of the token made from `--bootstrap-token-file`.
pub const BOOTSTRAP_TOKEN_NAME: &str = "bootstrap-admin";

impl BootstrapToken {
    /// Reads the secret: the file's first line, at least
    /// [`MIN_SECRET_LEN`] printable characters without spaces.
    pub fn load(path: &FsPath) -> Result<BootstrapToken, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("--bootstrap-token-file {}: {e}", path.display()))?;
        let secret = text.lines().next().unwrap_or("").trim();
        if secret.len() < MIN_SECRET_LEN || !secret.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(format!(
                "--bootstrap-token-file {}: the token must be at least {MIN_SECRET_LEN} printable characters without spaces on the first line (e.g. {TOKEN_PREFIX} and `openssl rand -hex 32`)",
                path.display()
            ));
        }
        Ok(BootstrapToken {
            sha256: secret_hash(secret),
        })
    }

    /// The record the leader proposes.
    fn record(&self) -> TokenRecord {
        TokenRecord {
            id: TokenId::bootstrap(),
            name: BOOTSTRAP_TOKEN_NAME.into(),
            role: Role::Admin,
            scope: Default::default(),
            expires_at: None,
            secret_sha256: self.sha256,
            created_at: Timestamp::now(),
            created_by: None,
        }
    }

    /// While this node leads and the registry holds no admin token that
    /// has not expired, proposes this one (once per second at most).
    pub fn spawn(self, node: Node) {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if !node.is_leader() {
                    continue;
                }
                let needed = {
                    let g = node.shared.read();
                    !g.registry.has_admin_token(Timestamp::now())
                        && g.registry.token_by_hash(&self.sha256).is_none()
                };
                if !needed {
                    continue;
                }
                match node
                    .propose(Command::CreateToken(Box::new(self.record())))
                    .await
                {
                    Ok(CommandResult::Token { info, .. }) => {
                        info!(token = %info.id, "created the admin token of --bootstrap-token-file");
                    }
                    Ok(CommandResult::Rejected(r)) => {
                        error!(refusal = ?r, "cannot create the admin token of --bootstrap-token-file; revoke the token named {BOOTSTRAP_TOKEN_NAME}");
                        tokio::time::sleep(Duration::from_secs(60)).await;
                    }
                    Ok(other) => {
                        warn!(result = ?other, "unexpected answer creating the bootstrap token")
                    }
                    Err(e) => {
                        warn!(error = %e, "the bootstrap token was not created yet; retrying")
                    }
                }
            }
        });
    }
}

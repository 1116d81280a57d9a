//! A2A Agent Cards at the HTTP edge.
//!
//! - Registration with a card (`POST /v1/agents` with `agent_card`):
//!   [`take_card`] validates the card and maps it onto the request, once,
//!   here; the request's own fields win.
//! - `POST /v1/agents/{id}/agent-card` ([`set_card`]): a new card for an
//!   agent that exists, and the fields mapped from it.
//! - `GET /v1/agents/{id}/agent-card.json` ([`get_card`]): the stored card,
//!   verbatim, with a strong `ETag`, `Cache-Control: no-cache` (a cache
//!   keeps it but asks again: liveness changes), 304 on `If-None-Match`,
//!   and the agent's status in [`HEADER_AGENT_STATUS`]; the card of an
//!   offline or suspended agent is a 404 unless `include_inactive=true`.
//! - `GET /v1/agent-cards` ([`list_cards`]): the cards of matching agents.
//! - `GET /.well-known/agent-card.json` ([`registry_card`]): the registry's
//!   own card, so an A2A client that knows only the well-known path finds
//!   the directory.
//!
//! No handler here follows a URL of a card: a node makes no outbound
//! request on a client's behalf.

use axum::extract::{Path, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, ETAG, IF_NONE_MATCH};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use registry_types::api::{AgentCardList, AgentResponse, RegisterRequest};
use registry_types::card::{card_is_live, AgentCard, HEADER_AGENT_STATUS};
use registry_types::command::SetCardCommand;
use registry_types::query::{CardFilter, CardOptions, ListPage, ReadOptions};
use registry_types::{AgentId, AgentStatus, Command, ErrorCode, Timestamp};

use crate::api::{path_id, propose_register};
use crate::auth::Caller;
use crate::discovery::DiscoveryRequests;
use crate::error::{ApiError, ApiResult};
use crate::extract::{limit_within, JsonBody, Query};
use crate::node::Node;
use crate::openapi::{
    AgentNotFound, BadRequest, Internal, ReadUnavailable, WriteTimeout, WriteUnavailable,
};

/// Default page of `GET /v1/agent-cards`.
pub const DEFAULT_CARD_PAGE: usize = 50;
/// Largest page of `GET /v1/agent-cards` (cards are up to
/// `--max-card-bytes` each).
pub const MAX_CARD_PAGE: usize = 500;

/// What `Cache-Control` says of a served card: keep it, but ask again
/// (with its ETag) before using it, since the agent may have gone offline.
const CARD_CACHE_CONTROL: &str = "no-cache";

/// Validates a card, refusing it with the field under `prefix`.
fn parse_card(node: &Node, v: &serde_json::Value, prefix: &str) -> ApiResult<AgentCard> {
    AgentCard::from_value(v, &node.config.limits(), node.config.max_card_bytes)
        .map_err(|e| ApiError::from(e.into_error(prefix)))
}

/// The card of a registration, validated, with what the request leaves
/// out mapped from it: `name`, `endpoint` (the first interface's URL),
/// `version`, `description` and `capabilities` (one per skill). A field
/// the request gives (a non-empty string or list) wins. `None` when the
/// request has no card.
pub fn take_card(node: &Node, req: &mut RegisterRequest) -> ApiResult<Option<AgentCard>> {
    let Some(v) = req.agent_card.take().filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    let card = parse_card(node, &v, "agent_card")?;
    card.view().fill_registration(req);
    Ok(Some(card))
}

/// Replace an agent's A2A card.
///
/// The body is the card (A2A 1.0, or 0.2/0.3 with a top-level `url`). The
/// fields mapped from a card are replaced from it: `name`, `endpoint`,
/// `version`, `description` and `capabilities` (one per skill); the rest of
/// the record stays, and this is not a registration (it does not count as
/// a heartbeat). A write, forwarded to the leader; it needs the role a
/// registration of the agent needs. A bad card is a 400 naming its JSON
/// path (`skills[2].id`), a card over `--max-card-bytes` a 413; neither
/// changes anything.
#[utoipa::path(
    post,
    path = "/v1/agents/{id}/agent-card",
    operation_id = "setAgentCard",
    tag = "agents",
    params(("id" = AgentId, Path, description = "Agent id; anything else is a 400 `invalid_argument` (field `agent_id`).")),
    request_body(content = AgentCard, description = "The agent's A2A Agent Card."),
    responses(
        (status = 200, description = "The agent with its new card.", body = AgentResponse),
        (status = 400, response = BadRequest),
        (status = 404, response = AgentNotFound),
        (status = 413, description = "`payload_too_large`: the card exceeds `--max-card-bytes` as canonical JSON, or the body `--max-body-bytes` plus `--max-card-bytes`.", body = registry_types::ErrorBody),
        (status = 500, response = Internal),
        (status = 503, response = WriteUnavailable),
        (status = 504, response = WriteTimeout),
    ),
)]
pub async fn set_card(
    State(node): State<Node>,
    caller: Caller,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<serde_json::Value>,
) -> ApiResult<Json<AgentResponse>> {
    let agent_id = path_id(&id)?;
    let card = parse_card(&node, &body, "")?;
    let view = card.view();
    let cmd = Command::SetCard(Box::new(SetCardCommand {
        agent_id,
        name: view.name.trim().to_string(),
        endpoint: view.endpoint().unwrap_or_default().trim().to_string(),
        version: view.version.clone(),
        description: view.description.clone(),
        capabilities: view.capabilities(),
        card: card.clone(),
        // Re-stamped by the leader when proposed.
        now: Timestamp::now(),
    }));
    let (agent, _) = propose_register(&node, &caller, cmd).await?;
    Ok(Json(AgentResponse {
        revision: agent.revision,
        agent,
    }))
}

/// Whether `If-None-Match` names `etag` (or is `*`); weak tags compare by
/// their opaque part, as RFC 9110 says for this header.
fn none_match(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get_all(IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .any(|t| t == "*" || t.strip_prefix("W/").unwrap_or(t) == etag)
}

fn status_header(status: AgentStatus) -> (HeaderName, HeaderValue) {
    (
        HeaderName::from_static(HEADER_AGENT_STATUS),
        HeaderValue::from_static(status.into_str()),
    )
}

/// A card as an answer: 200 with the card, or 304 when the client holds
/// it already.
fn card_response(
    headers: &HeaderMap,
    json: String,
    etag: &str,
    extra: Option<(HeaderName, HeaderValue)>,
) -> Response {
    let mut resp = if none_match(headers, etag) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let mut r = json.into_response();
        r.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        r
    };
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(etag) {
        h.insert(ETAG, v);
    }
    h.insert(CACHE_CONTROL, HeaderValue::from_static(CARD_CACHE_CONTROL));
    if let Some((name, value)) = extra {
        h.insert(name, value);
    }
    resp
}

/// An agent's A2A card.
///
/// The card as the agent registered it (canonical JSON: keys sorted, no
/// white space), with a strong `ETag` (the same on every node for the same
/// card), `Cache-Control: no-cache`, and the agent's current status in
/// `x-registry-agent-status`. `If-None-Match` with the ETag answers 304.
/// The card of an `offline` or `suspended` agent is a 404 `not_found`
/// unless `include_inactive=true`. Counts as a discovery request.
#[utoipa::path(
    get,
    path = "/v1/agents/{id}/agent-card.json",
    operation_id = "getAgentCard",
    tag = "agents",
    params(
        ("id" = AgentId, Path, description = "Agent id; anything else is a 400 `invalid_argument` (field `agent_id`)."),
        ("If-None-Match" = Option<String>, Header, description = "An ETag this client holds: 304 when the card still has it."),
        CardOptions,
        ReadOptions,
    ),
    responses(
        (status = 200, description = "The card.", body = AgentCard, headers(
            ("ETag" = String, description = "Strong ETag of the card's canonical JSON."),
            ("Cache-Control" = String, description = "`no-cache`: revalidate with the ETag before reuse."),
            ("x-registry-agent-status" = AgentStatus, description = "The agent's status now."),
        )),
        (status = 304, description = "Not modified: the client's `If-None-Match` names the card's ETag.", headers(
            ("ETag" = String, description = "Strong ETag of the card's canonical JSON."),
            ("x-registry-agent-status" = AgentStatus, description = "The agent's status now."),
        )),
        (status = 400, response = BadRequest),
        (status = 404, description = "`agent_not_found`: no such agent; `not_found`: it has no card, or it is offline or suspended (without `include_inactive`).", body = registry_types::ErrorBody),
        (status = 500, response = Internal),
        (status = 503, response = ReadUnavailable),
    ),
)]
pub async fn get_card(
    State(node): State<Node>,
    State(requests): State<DiscoveryRequests>,
    Path(id): Path<String>,
    Query(options): Query<CardOptions>,
    Query(read): Query<ReadOptions>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let id = path_id(&id)?;
    node.read_gate(&read).await?;
    requests.served();
    let (card, status) = {
        let g = node.shared.read();
        let r = g
            .registry
            .get(&id)
            .ok_or_else(|| ApiError::not_found(id.as_str()))?;
        (r.agent_card.clone(), r.status)
    };
    let refuse = |message: String| {
        let mut resp = ApiError::new(ErrorCode::NotFound, message).into_response();
        let (name, value) = status_header(status);
        resp.headers_mut().insert(name, value);
        Ok(resp)
    };
    let Some(card) = card else {
        return refuse(format!("agent '{id}' registered no agent card"));
    };
    if !card_is_live(status) && options.include_inactive != Some(true) {
        return refuse(format!(
            "agent '{id}' is {status}: its card is served again once it is live (include_inactive=true serves it anyway)"
        ));
    }
    Ok(card_response(
        &headers,
        card.json().to_string(),
        card.etag(),
        Some(status_header(status)),
    ))
}

/// The A2A cards of matching agents, a page at a time.
///
/// Filters combine (AND): `skill` (a skill id), `tag` (the agent's, a
/// capability's or a skill's), `input_mode` and `output_mode` (media types,
/// wildcards matching both ways), `binding`, `q` (every word must match),
/// `status`. Without `status`, the cards of live agents only (not
/// `offline`, not `suspended`). Ordered by agent id; follow `next_cursor`.
/// At most 500 cards a page (50 by default). Counts as a discovery request.
#[utoipa::path(
    get,
    path = "/v1/agent-cards",
    operation_id = "listAgentCards",
    tag = "discovery",
    params(CardFilter, ListPage, ReadOptions),
    responses(
        (status = 200, description = "One page of cards, by agent id.", body = AgentCardList),
        (status = 400, response = BadRequest),
        (status = 500, response = Internal),
        (status = 503, response = ReadUnavailable),
    ),
)]
pub async fn list_cards(
    State(node): State<Node>,
    State(requests): State<DiscoveryRequests>,
    Query(filter): Query<CardFilter>,
    Query(page): Query<ListPage>,
    Query(read): Query<ReadOptions>,
) -> ApiResult<Json<AgentCardList>> {
    let limit = limit_within(page.limit, DEFAULT_CARD_PAGE, MAX_CARD_PAGE)?;
    if filter.q.as_deref().is_some_and(|q| q.len() > 512) {
        return Err(ApiError::invalid("q", "q is longer than 512 bytes"));
    }
    node.read_gate(&read).await?;
    requests.served();
    let g = node.shared.read();
    let (cards, next_cursor) = g
        .registry
        .list_cards(&filter, page.cursor.as_deref(), limit);
    Ok(Json(AgentCardList {
        cards,
        next_cursor,
        revision: g.registry.revision(),
    }))
}

/// The node's advertised HTTP URL: `http(s)://` and `--advertise` (or
/// `--listen`).
pub fn advertised_url(node: &Node) -> String {
    let scheme = if node.config.tls_cert_file.is_some() {
        "https"
    } else {
        "http"
    };
    format!("{scheme}://{}", node.config.advertise_addr())
}

/// The registry's own card: an A2A agent whose skills are finding and
/// selecting agents, reached at `url` (the node's advertised HTTP URL).
pub fn registry_card_value(url: &str) -> serde_json::Value {
    json!({
        "name": "Agent registry",
        "description": "A directory of A2A agents that knows which are alive: it serves the \
            cards agents registered while they keep beating, and finds agents by skill, \
            accepted media type, protocol binding, capability, tag and text. Its API is \
            HTTP+JSON, described at /openapi.json; A2A's JSON-RPC methods are not served.",
        "version": env!("CARGO_PKG_VERSION"),
        "supportedInterfaces": [
            {"url": url, "protocolBinding": "HTTP+JSON", "protocolVersion": "1.0"}
        ],
        "documentationUrl": format!("{url}/docs"),
        "capabilities": {
            "streaming": false,
            "pushNotifications": false,
            "extendedAgentCard": false,
            "extensions": []
        },
        "defaultInputModes": ["application/json"],
        "defaultOutputModes": ["application/json"],
        "skills": [
            {
                "id": "find-agent",
                "name": "Find an agent",
                "description": "Finds live agents by A2A skill id, accepted or produced media \
                    type, protocol binding, capability, tag and free text, ranked by health \
                    and load: POST /v1/discover; their cards: GET /v1/agent-cards.",
                "tags": ["discovery", "registry", "a2a"],
                "examples": [
                    "POST /v1/discover {\"skills\": [\"translate\"], \"input_modes\": [\"text/plain\"]}",
                    "GET /v1/agent-cards?skill=translate&binding=JSONRPC"
                ]
            },
            {
                "id": "select-agent",
                "name": "Select an agent",
                "description": "Picks one active, healthy, lightly loaded agent with a \
                    capability (least loaded, best health, random or round robin): \
                    GET /v1/select.",
                "tags": ["selection", "load-balancing", "registry"],
                "examples": ["GET /v1/select?capability=translation&strategy=least_loaded"]
            }
        ]
    })
}

/// The registry's own A2A Agent Card.
///
/// The registry as an A2A agent, so that A2A clients that only know the
/// well-known path find the directory: its skills are "find an agent" and
/// "select an agent", its interface the node's advertised URL (`https`
/// with `--tls-cert-file`). Only the card is served, not A2A's JSON-RPC
/// methods. With an `ETag`; 304 on `If-None-Match`. Open: no token needed.
#[utoipa::path(
    get,
    path = "/.well-known/agent-card.json",
    operation_id = "registryAgentCard",
    tag = "meta",
    params(("If-None-Match" = Option<String>, Header, description = "An ETag this client holds: 304 when the card still has it.")),
    responses(
        (status = 200, description = "The registry's card (A2A 1.0).", body = AgentCard, headers(
            ("ETag" = String, description = "Strong ETag of the card's canonical JSON."),
            ("Cache-Control" = String, description = "`no-cache`."),
        )),
        (status = 304, description = "Not modified."),
    ),
)]
pub async fn registry_card(State(node): State<Node>, headers: HeaderMap) -> ApiResult<Response> {
    // The node's own card is valid by construction (tested); were it not,
    // the limits that refused it are the ones to fix, not the client.
    let card = AgentCard::from_value(
        &registry_card_value(&advertised_url(&node)),
        &node.config.limits(),
        registry_types::card::MAX_CARD_BYTES_CEILING,
    )
    .map_err(|e| {
        tracing::error!(error = %e, "the registry's own agent card does not validate");
        ApiError::internal()
    })?;
    Ok(card_response(
        &headers,
        card.json().to_string(),
        card.etag(),
        None,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_none_match_takes_lists_weak_tags_and_star() {
        let etag = "\"abc\"";
        let with = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(IF_NONE_MATCH, HeaderValue::from_str(v).unwrap());
            h
        };
        assert!(none_match(&with("\"abc\""), etag));
        assert!(none_match(&with("\"x\", W/\"abc\""), etag));
        assert!(none_match(&with("*"), etag));
        assert!(!none_match(&with("\"abcd\""), etag));
        assert!(!none_match(&HeaderMap::new(), etag));
    }

    #[test]
    fn the_registry_card_is_a_valid_card_with_two_skills() {
        let v = registry_card_value("http://10.0.0.1:8009");
        let card = AgentCard::from_value(
            &v,
            &registry_types::limits::Limits::DEFAULT,
            registry_types::card::DEFAULT_MAX_CARD_BYTES,
        )
        .expect("valid");
        let view = card.view();
        assert_eq!(view.endpoint(), Some("http://10.0.0.1:8009"));
        assert_eq!(
            view.skill_ids().collect::<Vec<_>>(),
            vec!["find-agent", "select-agent"]
        );
    }
}

//! The OpenAPI document of the public API, generated from the code: the
//! paths from the handlers' `#[utoipa::path]` attributes, the schemas from
//! the wire types of `registry-types` (their `///` docs are the
//! descriptions). [`crate::public_api`] lists every public route once, and
//! both the router and this document are built from that list, so the
//! document cannot drift from the router.
//!
//! - [`document`]: the document; `GET /openapi.json` serves it
//!   ([`serve`]) and `agent-registry --print-openapi` prints it.
//! - [`swagger_ui`]: a browsable reference at `/docs` (Swagger UI, its
//!   assets embedded in the binary: nothing is fetched at run time).
//! - The shared error answers ([`BadRequest`], [`ReadUnavailable`], ...),
//!   referenced by the handlers' `responses(...)`. The query parameters are
//!   the typed query structs of `registry_types::query` (`IntoParams`),
//!   the same structs the handlers extract.

use std::sync::LazyLock;

use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use axum::Router;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
use utoipa::openapi::{OpenApi as Document, RefOr};
use utoipa::{OpenApi, ToResponse};

use registry_types::query::{Consistency, SelectStrategy};
use registry_types::{ErrorBody, HEADER_LAST_CONTACT, HEADER_LEADER, HEADER_NODE, HEADER_REVISION};

/// The title, description, tags and shared components of the document;
/// the paths come from [`crate::public_api`].
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Agent registry",
        description = "Registry of AI agents and their capabilities, replicated over a 3- or \
            5-node Raft cluster. Every node serves this API; writes are forwarded to the \
            leader. Heartbeats are not Raft writes: any node accepts them, the leader keeps \
            them in memory and checkpoints them every second (the `liveness` tag).\n\n\
            Every response, errors included, carries `x-registry-revision`, \
            `x-registry-node`, `x-registry-leader` and `x-registry-last-contact-ms`. Errors \
            are `{\"error\": {\"code\", \"message\", \"field\"?, \"retryable\"}}` (`ErrorBody`); \
            an unknown path answers 404 `not_found` and an unserved method 405 \
            `method_not_allowed`. Bodies are JSON (the content type is not checked) of at \
            most `--max-body-bytes` (64 KiB by default; `POST /v1/heartbeats`: the larger \
            of that and 1 MiB). Reads take `consistency` and `min_revision`. See \
            docs/api.md.",
        license(name = "Apache-2.0"),
    ),
    tags(
        (name = "agents", description = "Registration and changes (writes) and reads of one agent."),
        (name = "liveness", description = "Heartbeats: lease renewal and self-reported status, \
            health and load. Not Raft entries; answered by any node, recorded by the leader."),
        (name = "discovery", description = "Listing, search, selection and statistics."),
        (name = "events", description = "The change stream."),
        (name = "scaling", description = "Scaling policies per capability and the advisories \
            the registry derives from them."),
        (name = "cluster", description = "Node and cluster health."),
        (name = "meta", description = "API description and metrics."),
        (name = "auth", description = "Tokens (`--auth on`): create, list, revoke. Admin only."),
        (name = "compatibility", description = "Routes agent code written for two earlier \
            registries calls, in those registries' shapes: the Dev-Tools registry's \
            `RegistryClient` and the configurable-agents `AgentRegistryClient` (docs/api.md, \
            \"Moving from an earlier registry\")."),
    ),
    components(
        // The error body, and the enums that only query parameters use
        // (`IntoParams` refers to their schemas without adding them).
        schemas(ErrorBody, Consistency, SelectStrategy),
        responses(
            BadRequest,
            AgentNotFound,
            Conflict,
            PayloadTooLarge,
            BatchPayloadTooLarge,
            Internal,
            ReadUnavailable,
            WriteUnavailable,
            WriteTimeout,
            HeartbeatAgentNotFound,
            HeartbeatUnavailable,
            RegistryFull,
            WatchUnavailable,
        )
    ),
)]
pub struct ApiDoc;

/// The whole document: [`ApiDoc`] with every public route's operation, and
/// the position headers on every response.
pub fn document() -> Document {
    // The body limits do not show in the document: any will do.
    let mut doc = crate::public_api(0, 0).into_openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_string();
    add_security(&mut doc);
    add_position_headers(&mut doc);
    doc
}

/// Declares the bearer token scheme and, on every operation, what it asks
/// of its caller under `--auth on` ([`crate::auth::need`]): its security
/// requirement, the role it needs (`x-required-role`) and its 401 and 403
/// answers. Health probes and metrics take a token or none (both are open
/// by default).
fn add_security(doc: &mut Document) {
    use crate::auth::{need, Need};
    use utoipa::openapi::extensions::ExtensionsBuilder;
    use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityRequirement, SecurityScheme};
    let mut bearer = Http::new(HttpAuthScheme::Bearer);
    bearer.description = Some(
        "A token of the registry (`areg_...`), under `--auth on`. Roles: admin, operator, \
         agent (with a scope of agents), reader. See docs/operations.md, \"Access control\"."
            .into(),
    );
    doc.components
        .get_or_insert_with(Default::default)
        .add_security_scheme("bearer", SecurityScheme::Http(bearer));
    let error = |description: &str| {
        utoipa::openapi::ResponseBuilder::new()
            .description(description)
            .content(
                "application/json",
                utoipa::openapi::ContentBuilder::new()
                    .schema(Some(RefOr::Ref(utoipa::openapi::Ref::from_schema_name(
                        "ErrorBody",
                    ))))
                    .build(),
            )
            .build()
    };
    let unauthenticated = error(
        "`unauthenticated` (auth on): no token where one is needed, or an unknown, revoked or \
         expired one. Carries `WWW-Authenticate: Bearer`.",
    );
    let forbidden =
        error("`forbidden` (auth on): the token's role or scope does not allow this; the message says what was refused.");
    for (path, item) in doc.paths.paths.iter_mut() {
        let operations = [
            ("GET", &mut item.get),
            ("PUT", &mut item.put),
            ("POST", &mut item.post),
            ("DELETE", &mut item.delete),
            ("HEAD", &mut item.head),
        ];
        for (method, op) in operations {
            let Some(op) = op.as_mut() else { continue };
            let method = axum::http::Method::from_bytes(method.as_bytes()).unwrap_or_default();
            let (role, security) = match need(&method, path) {
                Need::Open => continue,
                Need::Health | Need::Metrics => (
                    "none (a token of any role with --open-health/--open-metrics false)",
                    vec![
                        SecurityRequirement::default(),
                        SecurityRequirement::new("bearer", Vec::<String>::new()),
                    ],
                ),
                Need::Read => (
                    "reader (any token; none with --anonymous-role reader)",
                    vec![SecurityRequirement::new("bearer", Vec::<String>::new())],
                ),
                Need::Write => (
                    "agent (its scope), operator or admin, as the change needs",
                    vec![SecurityRequirement::new("bearer", Vec::<String>::new())],
                ),
                Need::Admin => (
                    "admin",
                    vec![SecurityRequirement::new("bearer", Vec::<String>::new())],
                ),
            };
            op.security = Some(security);
            let extensions = ExtensionsBuilder::new()
                .add("x-required-role", role)
                .build();
            op.extensions
                .get_or_insert_with(Default::default)
                .merge(extensions);
            let responses = &mut op.responses.responses;
            responses
                .entry("401".into())
                .or_insert_with(|| RefOr::T(unauthenticated.clone()));
            if !matches!(need(&method, path), Need::Health | Need::Metrics) {
                responses
                    .entry("403".into())
                    .or_insert_with(|| RefOr::T(forbidden.clone()));
            }
        }
    }
}

/// The document as served, built once.
static DOCUMENT_JSON: LazyLock<String> = LazyLock::new(|| {
    // A tree of strings, numbers and maps always serializes.
    document()
        .to_pretty_json()
        .expect("the OpenAPI document serializes to JSON")
});

/// The document as JSON, as `GET /openapi.json` serves it.
pub fn document_json() -> &'static str {
    DOCUMENT_JSON.as_str()
}

/// The OpenAPI document of this API.
///
/// Generated from the code that serves the routes: the same list builds the
/// router and this document.
#[utoipa::path(
    get,
    path = "/openapi.json",
    operation_id = "openapi",
    tag = "meta",
    responses((status = 200, description = "This OpenAPI 3.1 document.", content_type = "application/json", body = Object)),
)]
pub async fn serve() -> Response {
    ([(CONTENT_TYPE, "application/json")], document_json()).into_response()
}

/// The browsable reference at `/docs` (`/docs/` and its assets), reading
/// the document from `/openapi.json`.
pub fn swagger_ui<S: Clone + Send + Sync + 'static>() -> Router<S> {
    utoipa_swagger_ui::SwaggerUi::new("/docs")
        .config(utoipa_swagger_ui::Config::from("/openapi.json"))
        .into()
}

/// Adds the headers that stamp every answer with the node's position
/// (`crate::stamp_response`) to every response of the document. They are
/// written out on each response: utoipa's response headers cannot be
/// references, and a pass over the JSON instead would lose the order of
/// the properties (fields as declared).
fn add_position_headers(doc: &mut Document) {
    let integer = |minimum: f64, description: &str| {
        HeaderBuilder::new()
            .schema(
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
                    .minimum(Some(minimum)),
            )
            .description(Some(description))
            .build()
    };
    let headers = [
        (
            HEADER_REVISION,
            integer(
                0.0,
                "The registry revision this node had applied when it answered.",
            ),
        ),
        (HEADER_NODE, integer(1.0, "Id of the node that answered.")),
        (
            HEADER_LEADER,
            HeaderBuilder::new()
                .schema(ObjectBuilder::new().schema_type(Type::String))
                .description(Some(
                    "Id of the leader the answering node knows of; empty when it knows none.",
                ))
                .build(),
        ),
        (
            HEADER_LAST_CONTACT,
            integer(
                -1.0,
                "Milliseconds since the answering node last heard from its leader: 0 on the \
                 leader, -1 when never.",
            ),
        ),
    ];
    let stamp = |response: &mut RefOr<utoipa::openapi::Response>| {
        if let RefOr::T(r) = response {
            for (name, header) in &headers {
                r.headers.insert(name.to_string(), header.clone());
            }
        }
    };
    if let Some(components) = doc.components.as_mut() {
        components.responses.values_mut().for_each(stamp);
    }
    for item in doc.paths.paths.values_mut() {
        let operations = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.options,
            &mut item.head,
            &mut item.patch,
            &mut item.trace,
        ];
        for op in operations.into_iter().flatten() {
            op.responses.responses.values_mut().for_each(stamp);
        }
    }
}

/// `invalid_json` or `invalid_argument`: the body, a path id or a query
/// parameter is malformed or not allowed (`field` names it when known).
#[derive(ToResponse)]
#[allow(dead_code)] // Documentation only: the answer is an `ApiError`.
pub struct BadRequest(ErrorBody);

/// `agent_not_found`: no agent with that id.
#[derive(ToResponse)]
#[allow(dead_code)]
pub struct AgentNotFound(ErrorBody);

/// `already_exists` (`if_absent` set) or `revision_mismatch`
/// (`expected_revision` did not match).
#[derive(ToResponse)]
#[allow(dead_code)]
pub struct Conflict(ErrorBody);

/// `payload_too_large`: the body exceeds `--max-body-bytes` (64 KiB by
/// default).
#[derive(ToResponse)]
#[allow(dead_code)]
pub struct PayloadTooLarge(ErrorBody);

/// `payload_too_large`: the body exceeds the larger of `--max-body-bytes`
/// and 1 MiB.
#[derive(ToResponse)]
#[allow(dead_code)]
pub struct BatchPayloadTooLarge(ErrorBody);

/// `internal`: see the node's log.
#[derive(ToResponse)]
#[allow(dead_code)]
pub struct Internal(ErrorBody);

/// `no_leader` (no read index within the read timeout) or `unavailable`
/// (`min_revision` or the read index not applied in time). Retry, possibly
/// on another node or with `consistency=stale`.
#[derive(ToResponse)]
#[response(headers(("Retry-After" = u64, description = "Seconds to wait before retrying (always 1).")))]
#[allow(dead_code)]
pub struct ReadUnavailable(ErrorBody);

/// `no_leader` (no leader within the write timeout) or `unavailable` (node
/// stopping). The write was not applied; safe to retry.
#[derive(ToResponse)]
#[response(headers(("Retry-After" = u64, description = "Seconds to wait before retrying (always 1).")))]
#[allow(dead_code)]
pub struct WriteUnavailable(ErrorBody);

/// `registry_full`: the registration would add an agent beyond the
/// node's `--max-agents`. Nothing changed; updating an agent that is
/// already registered is still accepted.
#[derive(ToResponse)]
#[allow(dead_code)]
pub struct RegistryFull(ErrorBody);

/// `too_many_watchers` (the node serves its most event streams and long
/// polls, `--max-watchers`), `no_leader` or `unavailable` (the read index
/// or `min_revision` not reached in time). Retry after `Retry-After`,
/// possibly on another node.
#[derive(ToResponse)]
#[response(headers(("Retry-After" = u64, description = "Seconds to wait before retrying.")))]
#[allow(dead_code)]
pub struct WatchUnavailable(ErrorBody);

/// `timeout`: the outcome of the write is unknown (it may or may not have
/// been applied). Read the agent before retrying a non-idempotent write.
#[derive(ToResponse)]
#[allow(dead_code)]
pub struct WriteTimeout(ErrorBody);

/// `agent_not_found`: the agent is not registered: never was, or was
/// removed (deregistered, or expired after `deregister_after_seconds` of
/// silence). Register it again, then resume heartbeats.
#[derive(ToResponse)]
#[allow(dead_code)]
pub struct HeartbeatAgentNotFound(ErrorBody);

/// `no_leader`: no leader was reachable within the write timeout (5 s).
/// The heartbeat was not recorded; retry (heartbeats are idempotent), on
/// any node.
#[derive(ToResponse)]
#[response(headers(("Retry-After" = u64, description = "Seconds to wait before retrying (always 1).")))]
#[allow(dead_code)]
pub struct HeartbeatUnavailable(ErrorBody);

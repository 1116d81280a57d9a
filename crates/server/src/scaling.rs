//! Scaling policies and advisories: `PUT|GET|DELETE
//! /v1/scaling/policies/{capability}`, `GET /v1/scaling/policies` and
//! `GET /v1/scaling/advisories`. The rules are in
//! [`registry_types::scaling`]; evaluation happens in the state machine.

use axum::extract::{Path, State};
use axum::Json;

use registry_state::index::normalize;
use registry_types::limits::check_capability_name;
use registry_types::query::{AdvisoryFilter, ReadOptions};
use registry_types::scaling::{
    ScalingAdvisoryList, ScalingPolicy, ScalingPolicyList, ScalingPolicyRequest,
    MAX_SCALING_POLICIES,
};
use registry_types::{Command, CommandResult, ErrorBody, ErrorCode, Timestamp};

use crate::auth::{authorize, Caller};
use crate::error::{ApiError, ApiResult};
use crate::extract::{JsonBody, Query};
use crate::node::Node;
use crate::openapi::{
    BadRequest, Internal, PayloadTooLarge, ReadUnavailable, WriteTimeout, WriteUnavailable,
};

fn capability_of(node: &Node, raw: &str) -> ApiResult<String> {
    check_capability_name("capability", raw, &node.config.limits())?;
    Ok(normalize(raw))
}

fn policy_not_found(capability: &str) -> ApiError {
    ApiError::new(
        ErrorCode::PolicyNotFound,
        format!("no scaling policy for capability '{capability}'"),
    )
}

/// Set a capability's scaling policy.
///
/// Creates or replaces the policy and evaluates it at once (advisories it
/// implies are in force when this answers). A write. At most 1,000 policies.
#[utoipa::path(
    put,
    path = "/v1/scaling/policies/{capability}",
    operation_id = "putScalingPolicy",
    tag = "scaling",
    params(("capability" = String, Path, description = "Capability name (case-insensitive).")),
    request_body = ScalingPolicyRequest,
    responses(
        (status = 200, description = "The policy as stored.", body = ScalingPolicy),
        (status = 400, response = BadRequest),
        (status = 413, response = PayloadTooLarge),
        (status = 500, response = Internal),
        (status = 503, response = WriteUnavailable),
        (status = 504, response = WriteTimeout),
    ),
)]
pub async fn put_policy(
    State(node): State<Node>,
    caller: Caller,
    Path(raw): Path<String>,
    JsonBody(req): JsonBody<ScalingPolicyRequest>,
) -> ApiResult<Json<ScalingPolicy>> {
    let capability = capability_of(&node, &raw)?;
    req.validate()?;
    {
        // Checked against local state: concurrent PUTs of new capabilities
        // can overshoot by the number in flight.
        let g = node.shared.read();
        if g.registry.scaling_policy(&capability).is_none()
            && g.registry.scaling_policies().count() >= MAX_SCALING_POLICIES
        {
            return Err(ApiError::invalid(
                "capability",
                format!(
                    "at most {MAX_SCALING_POLICIES} scaling policies are kept; delete one first"
                ),
            ));
        }
    }
    let cmd = Command::SetScalingPolicy {
        capability,
        policy: Some(req),
        now: Timestamp::now(),
    };
    match node.propose(authorize(&node, &caller, cmd)?).await? {
        CommandResult::ScalingPolicy {
            policy: Some(p), ..
        } => Ok(Json(p)),
        // E.g. the policy limit, reached by concurrent PUTs.
        CommandResult::Rejected(r) => Err(crate::api::rejection(r)),
        _ => Err(ApiError::internal()),
    }
}

/// Remove a capability's scaling policy.
///
/// Removes the policy and clears its advisories (each with a clearing
/// `SCALING_ADVISORY` event). A write.
#[utoipa::path(
    delete,
    path = "/v1/scaling/policies/{capability}",
    operation_id = "deleteScalingPolicy",
    tag = "scaling",
    params(("capability" = String, Path, description = "Capability name (case-insensitive).")),
    responses(
        (status = 200, description = "The policies that remain.", body = ScalingPolicyList),
        (status = 400, response = BadRequest),
        (status = 404, description = "`policy_not_found`: no scaling policy for that capability.", body = ErrorBody),
        (status = 500, response = Internal),
        (status = 503, response = WriteUnavailable),
        (status = 504, response = WriteTimeout),
    ),
)]
pub async fn delete_policy(
    State(node): State<Node>,
    caller: Caller,
    Path(raw): Path<String>,
) -> ApiResult<Json<ScalingPolicyList>> {
    let capability = capability_of(&node, &raw)?;
    let cmd = Command::SetScalingPolicy {
        capability: capability.clone(),
        policy: None,
        now: Timestamp::now(),
    };
    match node.propose(authorize(&node, &caller, cmd)?).await? {
        CommandResult::ScalingPolicy { existed: true, .. } => {
            let g = node.shared.read();
            Ok(Json(ScalingPolicyList {
                policies: g.registry.scaling_policies().cloned().collect(),
                revision: g.registry.revision(),
            }))
        }
        CommandResult::ScalingPolicy { existed: false, .. } => Err(policy_not_found(&capability)),
        _ => Err(ApiError::internal()),
    }
}

/// One capability's scaling policy.
#[utoipa::path(
    get,
    path = "/v1/scaling/policies/{capability}",
    operation_id = "getScalingPolicy",
    tag = "scaling",
    params(("capability" = String, Path, description = "Capability name (case-insensitive)."), ReadOptions),
    responses(
        (status = 200, description = "The policy.", body = ScalingPolicy),
        (status = 404, description = "`policy_not_found`: no scaling policy for that capability.", body = ErrorBody),
        (status = 400, response = BadRequest),
        (status = 500, response = Internal),
        (status = 503, response = ReadUnavailable),
    ),
)]
pub async fn get_policy(
    State(node): State<Node>,
    Path(raw): Path<String>,
    Query(read): Query<ReadOptions>,
) -> ApiResult<Json<ScalingPolicy>> {
    let capability = capability_of(&node, &raw)?;
    node.read_gate(&read).await?;
    let g = node.shared.read();
    g.registry
        .scaling_policy(&capability)
        .cloned()
        .map(Json)
        .ok_or_else(|| policy_not_found(&capability))
}

/// Every scaling policy.
#[utoipa::path(
    get,
    path = "/v1/scaling/policies",
    operation_id = "listScalingPolicies",
    tag = "scaling",
    params(ReadOptions),
    responses(
        (status = 200, description = "The policies, by capability.", body = ScalingPolicyList),
        (status = 400, response = BadRequest),
        (status = 500, response = Internal),
        (status = 503, response = ReadUnavailable),
    ),
)]
pub async fn list_policies(
    State(node): State<Node>,
    Query(read): Query<ReadOptions>,
) -> ApiResult<Json<ScalingPolicyList>> {
    node.read_gate(&read).await?;
    let g = node.shared.read();
    Ok(Json(ScalingPolicyList {
        policies: g.registry.scaling_policies().cloned().collect(),
        revision: g.registry.revision(),
    }))
}

/// The scaling advisories in force.
#[utoipa::path(
    get,
    path = "/v1/scaling/advisories",
    operation_id = "listScalingAdvisories",
    tag = "scaling",
    params(
        AdvisoryFilter,
        ReadOptions,
    ),
    responses(
        (status = 200, description = "Advisories in force, by capability then action.", body = ScalingAdvisoryList),
        (status = 400, response = BadRequest),
        (status = 500, response = Internal),
        (status = 503, response = ReadUnavailable),
    ),
)]
pub async fn advisories(
    State(node): State<Node>,
    Query(filter): Query<AdvisoryFilter>,
    Query(read): Query<ReadOptions>,
) -> ApiResult<Json<ScalingAdvisoryList>> {
    let only = match filter.capability.as_deref() {
        Some(c) => Some(capability_of(&node, c)?),
        None => None,
    };
    node.read_gate(&read).await?;
    let g = node.shared.read();
    Ok(Json(ScalingAdvisoryList {
        advisories: g
            .registry
            .scaling_advisories()
            .filter(|a| only.as_ref().is_none_or(|c| &a.capability == c))
            .cloned()
            .collect(),
        revision: g.registry.revision(),
    }))
}

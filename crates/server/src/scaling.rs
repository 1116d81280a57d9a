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
use registry_types::{Command, CommandResult, ErrorCode, Timestamp};

use crate::error::{ApiError, ApiResult};
use crate::extract::{JsonBody, Query};
use crate::node::Node;

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

/// `PUT /v1/scaling/policies/{capability}`: sets (creates or replaces) the
/// policy and evaluates it at once.
pub async fn put_policy(
    State(node): State<Node>,
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
    match node.propose(cmd).await? {
        CommandResult::ScalingPolicy {
            policy: Some(p), ..
        } => Ok(Json(p)),
        _ => Err(ApiError::internal()),
    }
}

/// `DELETE /v1/scaling/policies/{capability}`: removes the policy and clears
/// its advisories; 404 `policy_not_found` when there is none.
pub async fn delete_policy(
    State(node): State<Node>,
    Path(raw): Path<String>,
) -> ApiResult<Json<ScalingPolicyList>> {
    let capability = capability_of(&node, &raw)?;
    let cmd = Command::SetScalingPolicy {
        capability: capability.clone(),
        policy: None,
        now: Timestamp::now(),
    };
    match node.propose(cmd).await? {
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

/// `GET /v1/scaling/policies/{capability}`.
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

/// `GET /v1/scaling/policies`.
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

/// `GET /v1/scaling/advisories[?capability=]`: the advisories in force.
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

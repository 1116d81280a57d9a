"""schemathesis hooks of scripts/api-fuzz.sh (loaded through SCHEMATHESIS_HOOKS).

`no_undocumented_server_error` replaces schemathesis's `not_a_server_error`:
a 5xx is a failure unless it is one of the registry's documented retryable
answers (docs/api.md, error codes): 503 `no_leader`, `unavailable` or
`too_many_watchers`, with `retryable: true` and a `Retry-After` header. A
`min_revision` far beyond the registry's revision, for one, is answered with
503 `unavailable` after a bounded wait, as documented; a 500 `internal`,
a 504 or a 503 without the error shape is a bug.
"""

from __future__ import annotations

import json
from typing import Any

import schemathesis

RETRYABLE_503 = {"no_leader", "unavailable", "too_many_watchers"}


@schemathesis.check
def no_undocumented_server_error(ctx: Any, response: Any, case: Any) -> bool | None:
    status = response.status_code
    if status < 500:
        return None
    try:
        error = json.loads(response.content)["error"]
    except (ValueError, KeyError, TypeError):
        error = None
    if (
        status == 503
        and isinstance(error, dict)
        and error.get("code") in RETRYABLE_503
        and error.get("retryable") is True
        and "retry-after" in {k.lower() for k in response.headers}
    ):
        return None
    raise AssertionError(
        f"{case.operation.label} answered {status}, which is not a documented"
        f" retryable 503: {response.content[:300]!r}"
    )

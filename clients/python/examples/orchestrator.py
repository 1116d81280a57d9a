"""An orchestrator that discovers an agent by capability and delegates to it.

    REGISTRY_NODES=http://127.0.0.1:8009 python orchestrator.py "Some text. More text."

It asks the registry for healthy, lightly loaded agents that can
``summarize`` (``discover``, best first), sends the text to the first one
that answers, and falls back to the next when one fails: the registry says
who should be up, the call finds out who is. Prints the agent's answer as
JSON; exits 1 when no agent could do it.
"""

from __future__ import annotations

import asyncio
import json
import sys

import httpx

from agent_registry import AsyncRegistryClient

CAPABILITY = "summarize"


async def delegate(text: str, capability: str = CAPABILITY) -> dict[str, object]:
    """The answer of the first discovered agent that serves ``text``."""
    async with AsyncRegistryClient() as registry, httpx.AsyncClient(timeout=10.0) as http:
        found = await registry.discover(capabilities=[capability], limit=5)
        errors: list[str] = []
        for hit in found.agents:
            agent = hit.agent
            try:
                r = await http.post(f"{agent.endpoint}/{capability}", json={"text": text})
                r.raise_for_status()
            except httpx.HTTPError as e:
                errors.append(f"{agent.agent_id}: {e}")
                continue
            answer: dict[str, object] = r.json()
            return answer
        raise LookupError(
            f"no agent could {capability} ({len(found.agents)} found; {'; '.join(errors)})"
        )


def main(argv: list[str]) -> int:
    text = " ".join(argv[1:]) or "The registry finds agents. Agents do the work."
    try:
        print(json.dumps(asyncio.run(delegate(text))))
    except LookupError as e:
        print(e, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

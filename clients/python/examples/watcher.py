"""Follows the registry's changes and prints one line per event.

    REGISTRY_NODES=http://127.0.0.1:8009,http://127.0.0.1:8010 python watcher.py [--count N]

The watch survives a node's death (it resumes on another node from the last
event it printed: nothing is lost or printed twice). When it falls behind
the server's event window it lists the agents again and goes on from there,
as a cache that mirrors the registry must.
"""

from __future__ import annotations

import argparse
import asyncio

from agent_registry import AsyncRegistryClient, Compacted


async def follow(count: int | None, capability: str | None) -> None:
    async with AsyncRegistryClient() as registry:
        # "Now", resolved before the stream opens and printed, so that a
        # caller knows from which revision on nothing will be missed.
        after = (await registry.events()).next_from_revision - 1
        print(f"# watching after revision {after}", flush=True)
        seen = 0
        while True:
            try:
                async for event in registry.watch(after=after, capability=capability):
                    status = event.status.value if event.status else "-"
                    print(
                        f"{event.revision} {event.type.value} {event.agent_id or '-'} {status}",
                        flush=True,
                    )
                    after = event.revision
                    seen += 1
                    if count is not None and seen >= count:
                        return
            except Compacted as e:
                # Fell out of the window: resynchronize from a fresh listing.
                page = await registry.list_agents_page(limit=1)
                print(
                    f"# compacted at {e.current_revision}: resynchronizing at {page.revision}",
                    flush=True,
                )
                after = page.revision


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, help="stop after this many events")
    parser.add_argument("--capability", help="only events of agents with this capability")
    args = parser.parse_args()
    asyncio.run(follow(args.count, args.capability))


if __name__ == "__main__":
    main()

"""Pyramid's thread-locals follow their request, in its greenlet and its coroutines."""

import asyncio

import httpx
import pytest


@pytest.mark.parametrize("probe", ["_probe_sync_locals", "_probe_async_locals"])
def test_thread_locals_stay_with_their_request_under_interleaving(server, probe):
    """Hundreds of interleaved requests each see their own request and registry."""

    async def fire():
        limits = httpx.Limits(max_connections=300)
        async with httpx.AsyncClient(base_url=server.url, limits=limits, timeout=60) as client:
            responses = await asyncio.gather(
                *(client.get(f"/{probe}", params={"n": n}) for n in range(300))
            )
        return [r.json() for r in responses]

    results = asyncio.run(fire())
    assert [r["n"] for r in results] == [str(n) for n in range(300)]
    assert all(r["ok"] for r in results), [r for r in results if not r["ok"]][:5]

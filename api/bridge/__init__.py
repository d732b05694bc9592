"""Run Pyramid's synchronous request pipeline in greenlets on an asyncio event loop.

greenlets.py      the runtime: await_(), run_in_greenlet(), run_coroutine(), give_way()
contextlocals.py  Pyramid's thread-locals, local to a request's context
integration.py    async views, loop-stopping hooks, one request class
asgi.py           the ASGI front door (serving)
wsgi.py           the WSGI front door (pshell, prequest, WebTest, waitress)
"""

from pyramid.config import Configurator

from api.bridge.greenlets import (
    await_,
    give_way,
    in_request_greenlet,
    run_coroutine,
    run_in_greenlet,
)

__all__ = [
    "await_",
    "give_way",
    "in_request_greenlet",
    "includeme",
    "run_coroutine",
    "run_in_greenlet",
]


def includeme(config: Configurator) -> None:
    config.include("api.bridge.integration")

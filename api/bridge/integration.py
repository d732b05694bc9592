"""The Pyramid side of the bridge: async views, loop-stopping hooks, one request class.

``includeme`` installs context-local thread-locals, adds the view deriver that
awaits ``async def`` views, the ``add_loop_stopping_hook`` directive, and bakes
the request extensions into one class.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from typing import Any

from pyramid.config import Configurator
from pyramid.interfaces import PHASE3_CONFIG, IRequestExtensions, IRequestFactory
from pyramid.registry import Registry
from pyramid.request import Request

from api.bridge import contextlocals
from api.bridge.greenlets import run_coroutine

View = Callable[[Any, Request], Any]
LoopStoppingHook = Callable[[Registry, Any], None]


def await_coroutine_views(view: View, info: object) -> View:
    """View deriver: await what an ``async def`` view returns, before it is rendered.

    The coroutine runs in the request greenlet (``run_coroutine``), so that
    its reads start no greenlet of their own.
    """

    def awaiting_view(context: Any, request: Request) -> Any:
        result = view(context, request)
        if inspect.iscoroutine(result):
            result = run_coroutine(result)
        return result

    return awaiting_view


def add_loop_stopping_hook(config: Configurator, hook: LoopStoppingHook) -> None:
    """Directive: call ``hook(registry, loop)`` when an event loop that served requests stops.

    Hooks release what a loop holds (its engine and pool); they run in a
    request greenlet, so they may ``await_()``. They are plain callbacks, not
    Pyramid events: one subscriber of any event makes Pyramid notify four
    events on every request.
    """
    config.registry.api_loop_stopping_hooks.append(hook)


def loop_stopping(registry: Registry, loop: Any) -> None:
    """Run the loop-stopping hooks of ``registry`` (in a request greenlet)."""
    for hook in registry.api_loop_stopping_hooks:
        hook(registry, loop)


def bake_request_extensions(registry: Registry) -> None:
    """Put ``add_request_method`` extensions on one request class, made once.

    Pyramid otherwise applies them to every request, building a new subclass
    per request for the properties among them.
    """
    extensions = registry.queryUtility(IRequestExtensions)
    if extensions is None:
        return
    base = registry.queryUtility(IRequestFactory, default=Request)
    baked = type("APIRequest", (base,), {**extensions.methods, **extensions.descriptors})
    registry.registerUtility(baked, IRequestFactory)
    registry.unregisterUtility(provided=IRequestExtensions)


StartedResponse = list[Any]  # [status, headers] once start_response was called


def call_router(
    router: Callable[..., Iterable[bytes]], environ: dict[str, Any]
) -> tuple[StartedResponse, Iterable[bytes]]:
    """Call the WSGI ``router``: what it passed to start_response, and its body iterable."""
    started: StartedResponse = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
        started[:] = [status, headers]

    app_iter = router(environ, start_response)
    return started, app_iter


def close_body(app_iter: Iterable[bytes]) -> None:
    close = getattr(app_iter, "close", None)
    if close is not None:
        close()


def includeme(config: Configurator) -> None:
    contextlocals.install()
    config.registry.api_loop_stopping_hooks = []
    config.add_directive("add_loop_stopping_hook", add_loop_stopping_hook)
    config.add_view_deriver(
        await_coroutine_views, name="await_coroutine", under="rendered_view", over="mapped_view"
    )
    # After every add_request_method action (they run at the default order, 0).
    config.action(None, bake_request_extensions, args=(config.registry,), order=PHASE3_CONFIG + 1)

"""Run Pyramid's synchronous request pipeline in greenlets on an asyncio event loop.

Each request runs in a ``RequestGreenlet`` of its own while it lasts (they are
reused, one request after another). Synchronous code inside it (the router,
traversal, tweens, pyramid_tm, views) reaches async code through ``await_()``,
which switches to the loop, awaits, and switches back with the result: the
protocol of SQLAlchemy's ``greenlet_spawn``/``await_``, so SQLAlchemy's own
synchronous paths (a zope.sqlalchemy commit) work here too. An ``async def``
view's coroutine runs in the request greenlet as well (``run_coroutine``).

Two front doors share this model: ``ASGIApp`` for serving, ``WSGIApp`` for
everything in Pyramid's WSGI world (pshell, prequest, WebTest, waitress).
"""

import asyncio
import atexit
import contextvars
import gc
import inspect
import io
import logging
import os
import sys
import threading
import weakref

import pyramid.threadlocal
from greenlet import getcurrent, greenlet
from pyramid.interfaces import PHASE3_CONFIG, IRequestExtensions, IRequestFactory
from pyramid.request import Request

from api.errors import problem_body

log = logging.getLogger(__name__)


class RequestGreenlet(greenlet):
    """A greenlet that requests run in, one after another; SQLAlchemy may
    ``await_`` inside it too.

    A new greenlet cost ~15 µs here (CPython maps fresh memory for its frame
    stack, and unmaps it when the greenlet ends); one taken from the idle
    ones of its thread, ~2 µs. One whose call raised ends with it.
    """

    __sqlalchemy_greenlet_provider__ = True

    def __init__(self):
        super().__init__(_serve)


class _Done:
    __slots__ = ("value",)

    def __init__(self, value):
        self.value = value


def _serve(job):
    while True:  # each turn: a [fn, args] job in, its _Done out to whoever switched in
        job = getcurrent().parent.switch(_Done(_call(job)))


def _call(job):
    fn, args = job
    job.clear()  # nothing of a request stays with the idle greenlet
    return fn(*args)


_idle = threading.local()
MAX_IDLE_GREENLETS = 256


async def run_in_greenlet(fn, *args):
    """Run the synchronous ``fn(*args)`` in a request greenlet, serving its awaits.

    A coroutine that ``run_coroutine`` drives runs in a request greenlet
    already: there ``fn`` is called as it is, with no second greenlet.
    """
    current = getcurrent()
    if getattr(current, "__sqlalchemy_greenlet_provider__", False):
        return fn(*args)
    idle = getattr(_idle, "greenlets", None)
    if idle is None:
        idle = _idle.greenlets = []
    child = idle.pop() if idle else RequestGreenlet()
    child.parent = current
    # Share the driving task's contextvars, so that what the request sets
    # here is seen by its coroutines on the loop, and the other way round.
    child.gr_context = current.gr_context
    result = child.switch([fn, args])
    while type(result) is not _Done:
        try:
            value = await result
        except BaseException:
            result = child.throw(*sys.exc_info())
        else:
            result = child.switch(value)
    child.gr_context = None
    if len(idle) < MAX_IDLE_GREENLETS:
        idle.append(child)
    return result.value


def in_request_greenlet():
    return getattr(getcurrent(), "__sqlalchemy_greenlet_provider__", False)


def await_(awaitable):
    """Wait for ``awaitable`` from synchronous code running in a request greenlet."""
    current = getcurrent()
    if not getattr(current, "__sqlalchemy_greenlet_provider__", False):
        if inspect.iscoroutine(awaitable):
            awaitable.close()  # avoid a "never awaited" warning on top of the error
        raise RuntimeError(
            "await_() called outside a request greenlet; run the code through "
            "api.bridge.run_in_greenlet (or a front door of api.bridge)"
        )
    return current.parent.switch(awaitable)


def run_coroutine(coroutine):
    """Run ``coroutine`` to its end here, in the request greenlet; return its result.

    Its code runs in this greenlet, and each time it waits, this greenlet
    waits for the same thing on the loop through ``await_()``. Unlike
    ``await_(coroutine)``, what it calls can ``await_()`` too: its
    ``run_in_greenlet`` calls need no greenlet of their own.
    """
    value = error = None
    while True:
        try:
            waits_for = coroutine.send(value) if error is None else coroutine.throw(error)
        except StopIteration as stop:
            return stop.value
        value = error = None
        # A coroutine on asyncio yields a future to wait for, or None to let
        # the loop run once (asyncio.sleep(0)). The future comes marked as
        # waited for; unmarked, as a task would, it can be awaited again. Its
        # own code takes the future's result; an error, or a cancellation,
        # is thrown back into it.
        if waits_for is None:
            waits_for = asyncio.sleep(0)
        else:
            waits_for._asyncio_future_blocking = False
        try:
            value = await_(waits_for)
        except BaseException as exc:
            error = exc


# --- Pyramid's thread-locals, made request-local ----------------------------
#
# pyramid.threadlocal.manager keeps a stack in a threading.local. All request
# greenlets of a loop share one thread, so interleaved requests would push and
# pop on one stack. Keep the stack in a ContextVar instead: each request's task
# has its own context, and its greenlet shares it (see RequestGreenlet). The
# stack is an immutable tuple so that a copied context never shares it.

_stacks: dict[int, contextvars.ContextVar] = {}


def _stack_var(manager):
    key = id(manager)
    var = _stacks.get(key)
    if var is None:
        var = _stacks[key] = contextvars.ContextVar(f"pyramid_stack_{key}", default=())
    return var


def _push(self, info):
    var = _stack_var(self)
    var.set((*var.get(), info))


def _pop(self):
    var = _stack_var(self)
    stack = var.get()
    if stack:
        var.set(stack[:-1])
        return stack[-1]
    return None


def _get(self):
    stack = _stack_var(self).get()
    return stack[-1] if stack else self.default()


def _clear(self):
    _stack_var(self).set(())


def make_threadlocals_context_local():
    cls = pyramid.threadlocal.ThreadLocalManager
    cls.push = cls.set = _push
    cls.pop = _pop
    cls.get = _get
    cls.clear = _clear


make_threadlocals_context_local()


# --- async views --------------------------------------------------------------


def await_coroutine_views(view, info):
    """View deriver: await what an ``async def`` view returns, before it is rendered.

    The coroutine runs in the request greenlet (``run_coroutine``), so that
    its reads start no greenlet of their own.
    """

    def awaiting_view(context, request):
        result = view(context, request)
        if inspect.iscoroutine(result):
            result = run_coroutine(result)
        return result

    return awaiting_view


def add_loop_stopping_hook(config, hook):
    """Directive: call ``hook(registry, loop)`` when an event loop that served requests stops.

    Hooks release what a loop holds (its engine and pool); they run in a
    request greenlet, so they may ``await_()``. They are plain callbacks, not
    Pyramid events: one subscriber of any event makes Pyramid notify four
    events on every request.
    """
    config.registry.api_loop_stopping_hooks.append(hook)


def loop_stopping(registry, loop):
    """Run the loop-stopping hooks of ``registry`` (in a request greenlet)."""
    for hook in registry.api_loop_stopping_hooks:
        hook(registry, loop)


def bake_request_extensions(registry):
    """Put ``add_request_method`` extensions on one request class, made once.

    Pyramid otherwise applies them to every request, building a new subclass
    per request for the properties among them (~8% of a point read).
    """
    extensions = registry.queryUtility(IRequestExtensions)
    if extensions is None:
        return
    base = registry.queryUtility(IRequestFactory, default=Request)
    baked = type("APIRequest", (base,), {**extensions.methods, **extensions.descriptors})
    registry.registerUtility(baked, IRequestFactory)
    registry.unregisterUtility(provided=IRequestExtensions)


def includeme(config):
    config.registry.api_loop_stopping_hooks = []
    config.add_directive("add_loop_stopping_hook", add_loop_stopping_hook)
    config.add_view_deriver(
        await_coroutine_views, name="await_coroutine", under="rendered_view", over="mapped_view"
    )
    # After every add_request_method action (they run at the default order, 0).
    config.action(None, bake_request_extensions, args=(config.registry,), order=PHASE3_CONFIG + 1)


# --- WSGI/ASGI translation -------------------------------------------------------


def _collect_response(router, environ):
    """Call the WSGI ``router`` and return (status, headers, body chunks iterator)."""
    started = []

    def start_response(status, headers, exc_info=None):
        started[:] = [status, headers]

    app_iter = router(environ, start_response)
    return started, app_iter


def _close(app_iter):
    close = getattr(app_iter, "close", None)
    if close is not None:
        close()


class ASGIApp:
    """The ASGI front door: each HTTP request runs the Pyramid router in a request greenlet."""

    def __init__(self, wsgi_app, max_body_bytes=None):
        self.router = getattr(wsgi_app, "router", wsgi_app)
        self.registry = self.router.registry
        # Refused here, before it is read whole; the default is api.max_body_bytes.
        self.max_body_bytes = max_body_bytes or int(
            self.registry.settings.get("api.max_body_bytes", 1 << 20)
        )

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            await self._http(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive, send):
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                # What exists by now (modules, the app and its registry) lives
                # as long as the worker: keep it out of the cyclic GC's sight,
                # so that full collections stop walking it (they were the p99
                # of point reads: 67 ms against 16 ms frozen). A page makes
                # hundreds of objects: collect the young every 10,000
                # allocations rather than every 700 (7% of a page's CPU).
                gc.freeze()
                gc.set_threshold(10_000, 10, 10)
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                loop = asyncio.get_running_loop()
                await run_in_greenlet(loop_stopping, self.registry, loop)
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope, receive, send):
        body = await self._read_body(scope, receive)
        if body is None:
            await _send_problem(send, 413, "Request body is larger than the server accepts")
            return
        environ = build_environ(scope, body)
        try:
            response = await run_in_greenlet(self._respond, environ, send)
        except Exception:
            # The exception views answer every error a request can raise; this
            # is only reached when they fail themselves.
            log.exception("unhandled error outside the exception views")
            await _send_problem(send, 500, "The server failed to answer this request")
            return
        if response is not None:
            start, body = response
            await send(start)
            await send({"type": "http.response.body", "body": body})

    async def _read_body(self, scope, receive):
        """The whole body, or None when it is over the limit (checked before reading)."""
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > self.max_body_bytes:
                return None
        chunks = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)

    def _respond(self, environ, send):
        """Run the router (in the request greenlet). A response whose body is in
        memory, the usual case, is returned as (start message, body) for the
        task to send, which spares two switches to and fro; a streamed one is
        sent from here, as its chunks may need the greenlet to be produced."""
        started, app_iter = _collect_response(self.router, environ)
        try:
            status, headers = started
            start = {
                "type": "http.response.start",
                "status": int(status[:3]),
                "headers": [
                    (k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers
                ],
            }
            if isinstance(app_iter, list | tuple):
                return start, b"".join(app_iter)
            await_(send(start))
            for chunk in app_iter:
                if chunk:
                    await_(send({"type": "http.response.body", "body": chunk, "more_body": True}))
            await_(send({"type": "http.response.body", "body": b""}))
            return None
        finally:
            _close(app_iter)


async def _send_problem(send, status, title):
    body = problem_body(status, title)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/problem+json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def build_environ(scope, body):
    """A PEP 3333 environ for one ASGI HTTP request whose body was read already."""
    server = scope.get("server") or ("localhost", 80)
    client = scope.get("client") or ("", 0)
    environ = {
        "REQUEST_METHOD": scope["method"],
        "SCRIPT_NAME": scope.get("root_path", "").encode("utf-8").decode("latin-1"),
        "PATH_INFO": scope["path"].encode("utf-8").decode("latin-1"),
        "QUERY_STRING": scope["query_string"].decode("latin-1"),
        "SERVER_NAME": server[0],
        "SERVER_PORT": str(server[1]),
        "SERVER_PROTOCOL": "HTTP/" + scope.get("http_version", "1.1"),
        "REMOTE_ADDR": client[0],
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": scope.get("scheme", "http"),
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": False,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
        "CONTENT_LENGTH": str(len(body)),
        # The body is in memory already: WebOb need not copy it to a temporary
        # file (which it would for bodies over 10 KB, and leave to the GC).
        "webob.is_body_seekable": True,
    }
    for name, value in scope["headers"]:
        key = name.decode("latin-1").upper().replace("-", "_")
        value = value.decode("latin-1")
        if key == "CONTENT_TYPE":
            environ["CONTENT_TYPE"] = value
        elif key != "CONTENT_LENGTH":
            key = "HTTP_" + key
            environ[key] = f"{environ[key]},{value}" if key in environ else value
    return environ


# --- the WSGI front door -----------------------------------------------------------


class _BackgroundLoop:
    """One event loop per process, in a thread, for the requests of WSGI callers."""

    def __init__(self):
        self.pid = os.getpid()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(
            target=self.loop.run_forever, name="api-event-loop", daemon=True
        )
        self.thread.start()
        self.apps = weakref.WeakSet()
        # Runs before the interpreter joins non-daemon threads (aiosqlite's
        # connection threads are such), so pooled connections close first.
        register = getattr(threading, "_register_atexit", atexit.register)
        register(self.stop)

    def run(self, coroutine):
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result()

    def release(self, app):
        """Let ``app`` release what it holds on this loop (its engine and pool)."""
        self.apps.discard(app)
        try:
            self.run(run_in_greenlet(loop_stopping, app.registry, self.loop))
        except Exception:
            log.exception("releasing resources of the background loop failed")

    def stop(self):
        for app in list(self.apps):
            self.release(app)
        self.loop.call_soon_threadsafe(self.loop.stop)


_background = None
_background_lock = threading.Lock()


def background_loop():
    global _background
    with _background_lock:
        # A forked child inherits the object but not the thread: start its own.
        if _background is None or _background.pid != os.getpid():
            _background = _BackgroundLoop()
        return _background


def _buffered_response(router, environ):
    started, app_iter = _collect_response(router, environ)
    try:
        body = b"".join(app_iter)
    finally:
        _close(app_iter)
    return started[0], started[1], body


class WSGIApp:
    """The WSGI front door: hands each request to the process's background loop.

    The response is buffered whole; stream over the ASGI front door.
    """

    def __init__(self, router):
        self.router = router
        self.registry = router.registry

    def __call__(self, environ, start_response):
        if in_request_greenlet():  # already inside a request: no second hop
            return self.router(environ, start_response)
        background = background_loop()
        background.apps.add(self)
        status, headers, body = background.run(
            run_in_greenlet(_buffered_response, self.router, environ)
        )
        start_response(status, headers)
        return [body]

    def run(self, fn, *args):
        """Run ``fn(*args)`` in a request greenlet on the background loop (for scripts)."""
        background = background_loop()
        background.apps.add(self)
        return background.run(run_in_greenlet(fn, *args))

    def close(self):
        """Release the connections this app holds on the background loop."""
        if _background is not None and self in _background.apps:
            _background.release(self)

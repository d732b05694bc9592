"""Pyramid's thread-locals, made local to a request's context instead.

``pyramid.threadlocal.manager`` keeps a stack in a ``threading.local``. Every
request greenlet of a loop runs on one thread, so interleaved requests would
push and pop on one stack, and ``get_current_request()`` would answer another
request's object. ``install()`` keeps each manager's stack in a ContextVar
instead: each request's task has its own context, and its greenlet shares it
(``greenlets.run_in_greenlet``). The stack is an immutable tuple so that a
copied context never shares it.
"""

from __future__ import annotations

import contextvars
from typing import Any

import pyramid.threadlocal

_Stack = tuple[Any, ...]
_stacks: dict[int, contextvars.ContextVar[_Stack]] = {}


def _stack_var(manager: object) -> contextvars.ContextVar[_Stack]:
    key = id(manager)
    var = _stacks.get(key)
    if var is None:
        var = _stacks[key] = contextvars.ContextVar(f"pyramid_stack_{key}", default=())
    return var


def _push(self: object, info: object) -> None:
    var = _stack_var(self)
    var.set((*var.get(), info))


def _pop(self: object) -> Any:
    var = _stack_var(self)
    stack = var.get()
    if stack:
        var.set(stack[:-1])
        return stack[-1]
    return None


def _get(self: Any) -> Any:
    stack = _stack_var(self).get()
    return stack[-1] if stack else self.default()


def _clear(self: object) -> None:
    _stack_var(self).set(())


def install() -> None:
    """Make every ``ThreadLocalManager`` context-local (idempotent)."""
    cls = pyramid.threadlocal.ThreadLocalManager
    cls.push = cls.set = _push
    cls.pop = _pop
    cls.get = _get
    cls.clear = _clear

"""Bearer tokens, the security policy, and CORS.

Tokens come from the ``api.tokens`` setting (``API_TOKENS``, api.settings):
whitespace-separated ``SECRET:PERM[,PERM...]`` entries,
with permissions ``read`` and ``write``. ``SECRET`` may be ``sha256:<hex>`` so
that the plain token need not be stored. Tokens are compared as SHA-256
digests in constant time, and never logged. With ``api.jwt_secret``, a
bearer token may also be a JWT, whose role grants what ``api.jwt_roles``
says (api.jwts).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable
from typing import Any

from pyramid.config import Configurator
from pyramid.httpexceptions import HTTPForbidden, HTTPUnauthorized
from pyramid.registry import Registry
from pyramid.request import Request
from pyramid.response import Response
from pyramid.security import Allowed, Denied
from pyramid.tweens import INGRESS
from pyramid.view import forbidden_view_config

from api.errors import http_exception, problem_response
from api.jwts import InvalidJWT, Verifier
from api.observe import count_error

PERMISSIONS = ("read", "write")


# A bearer token: its SHA-256 digest, and the permissions it grants.
Token = tuple[bytes, frozenset[str]]

# The permission of a view that answers every method of its context
# (api.views.by_method): write for a method of the context's that writes,
# read for the others (a method it does not take is answered 405 by anyone).
BY_METHOD = "read or write, by method"

# Methods that write nothing: they need only ``read``, and pyramid_tm leaves
# them alone (api.db.sessions.may_write).
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

_IDENTITY = "api.identity"  # the environ key of the request's identity, once known
JWT_REFUSED = "api.jwt_refused"  # the environ key of why a JWT was refused


def _grant(entry: str, kind: str, name: str) -> tuple[str, frozenset[str]]:
    """A ``NAME:PERM[,PERM]`` entry of a setting: the name, and its permissions."""
    named, sep, perms = entry.rpartition(":")
    permissions = frozenset(p for p in perms.split(",") if p)
    if not sep or not named or not permissions <= set(PERMISSIONS) or not permissions:
        raise ValueError(f"each {kind} entry must be {name}:PERM[,PERM] with PERM in read, write")
    return named, permissions


def parse_tokens(spec: str) -> tuple[Token, ...]:
    """``SECRET:PERM,...`` entries, each as its (sha256 digest, permissions)."""
    tokens = []
    for entry in spec.split():
        secret, permissions = _grant(entry, "API token", "SECRET")
        if secret.startswith("sha256:"):
            digest = bytes.fromhex(secret.removeprefix("sha256:"))
            if len(digest) != 32:
                raise ValueError("a sha256: token must be 64 hex digits")
        else:
            digest = hashlib.sha256(secret.encode()).digest()
        tokens.append((digest, permissions))
    return tuple(tokens)


def parse_roles(spec: str) -> dict[str, frozenset[str]]:
    """``api.jwt_roles``: ``ROLE:PERM,...`` entries, what each JWT role grants."""
    return dict(_grant(entry, "JWT role", "ROLE") for entry in spec.split())


class BearerTokenPolicy:
    """Identity: the permissions of the presented bearer token (None when
    absent or bad). A request holds a permission its token grants, and
    ``read`` without one unless reads require a token.

    The same rule holds on every resource, so no ACL is walked: Pyramid's
    ACLHelper would walk each resource's lineage, twice a write (traversal
    and the view each ask)."""

    def __init__(
        self, tokens: tuple[Token, ...], open_reads: bool, jwts: Verifier | None = None
    ) -> None:
        self.tokens = tokens
        self.jwts = jwts
        self.open_to_all = frozenset({"read"} if open_reads else ())
        # Answers to permits(), made once: each would format its message anew.
        self._open = {p: Allowed("%r is open to all", p) for p in PERMISSIONS}
        self._granted = {p: Allowed("the token grants %r", p) for p in PERMISSIONS}
        self._denied = {p: Denied("%r needs a token that grants it", p) for p in PERMISSIONS}

    def _bearer(self, request: Request) -> str | None:
        scheme, _, token = request.environ.get("HTTP_AUTHORIZATION", "").partition(" ")
        return token.strip() if scheme.lower() == "bearer" and token.strip() else None

    def identity(self, request: Request) -> frozenset[str] | None:
        environ = request.environ
        if "HTTP_AUTHORIZATION" not in environ:
            return None  # most reads: no token, and no cache to keep
        # Pyramid asks again on each request.identity (a write asks four
        # times): the token is hashed once a request, and kept in the environ
        # rather than a RequestLocalCache, whose bookkeeping cost more.
        if _IDENTITY not in environ:
            environ[_IDENTITY] = self._identity(request)
        identity: frozenset[str] | None = environ[_IDENTITY]
        return identity

    def _identity(self, request: Request) -> frozenset[str] | None:
        token = self._bearer(request)
        if token is None:
            return None
        presented = hashlib.sha256(token.encode()).digest()
        granted = None
        for digest, permissions in self.tokens:  # no early exit: constant work
            if hmac.compare_digest(presented, digest):
                granted = permissions
        # A token of api.tokens first: one may have a JWT's three parts.
        if granted is None and self.jwts is not None and token.count(".") == 2:
            try:
                return self.jwts.permissions(token)
            except InvalidJWT as exc:
                request.environ[JWT_REFUSED] = exc
        return granted

    def authenticated_userid(self, request: Request) -> str | None:
        return "token" if request.identity is not None else None

    def permits(self, request: Request, context: Any, permission: str) -> Any:
        if permission == BY_METHOD:
            method = request.method
            writes = method not in SAFE_METHODS and method in context.allowed_methods
            permission = "write" if writes else "read"
        if permission in self.open_to_all:
            return self._open[permission]
        granted = request.identity
        if granted is not None and permission in granted:
            return self._granted[permission]
        denied = self._denied.get(permission)
        return denied or Denied("%r needs a token that grants it", permission)

    def remember(self, request: Request, userid: Any, **kw: Any) -> list[Any]:
        return []

    def forget(self, request: Request, **kw: Any) -> list[Any]:
        return []


def jwt_tween_factory(
    handler: Callable[[Request], Response], registry: Registry
) -> Callable[[Request], Response]:
    """A JWT the API does not accept is a 401 on any request, an open read
    too, as PostgREST's: a client whose token expired learns it, and renews
    it, rather than reading as no one."""
    if not registry.api_settings.jwt_secret:
        return handler

    def jwt_tween(request: Request) -> Response:
        if "HTTP_AUTHORIZATION" in request.environ and request.identity is None:
            refused = request.environ.get(JWT_REFUSED)
            if refused is not None:
                count_error("jwt_refused")  # an expired session, or a forger
                return _invalid_jwt(refused)
        return handler(request)

    return jwt_tween


def _invalid_jwt(refused: InvalidJWT) -> Response:
    # A header's quoted string: printable ASCII, no quote of its own.
    description = re.sub(r'[^\x20-\x7e]|"', "'", refused.message)
    challenge = f'Bearer error="invalid_token", error_description="{description}"'
    return problem_response(
        401, refused.message, code=refused.code, headers={"WWW-Authenticate": challenge}
    )


@forbidden_view_config()
def forbidden(request: Request) -> Response:
    """401 with a Bearer challenge when no valid token came; 403 when it lacks the permission."""
    if request.identity is None:
        error = ', error="invalid_token"' if request.authorization else ""
        unauthorized = HTTPUnauthorized(
            "A valid bearer token is needed: send 'Authorization: Bearer <token>'.",
            headers={"WWW-Authenticate": f'Bearer realm="api"{error}'},
        )
        if not request.authorization:  # PostgREST's "anonymous access is disabled"
            unauthorized.postgrest_code = "PGRST302"
        return http_exception(unauthorized, request)
    return http_exception(
        HTTPForbidden("The token does not grant the permission this request needs."), request
    )


# --- CORS ------------------------------------------------------------------------

_CORS_METHODS = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"
_CORS_HEADERS = ("Authorization", "Content-Type", "If-Match", "If-None-Match", "Prefer")
# What clients read of an answer: supabase-js its count in Content-Range.
_CORS_EXPOSE = (
    "Content-Profile, Content-Range, Content-Location, ETag, Link, Location, Preference-Applied,"
    " Range-Unit, Retry-After, X-Request-Id"
)
HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


def _allowed_headers(requested: str) -> str:
    """Every header a preflight asks for, as PostgREST allows them: clients
    send their own (supabase-js's apikey and X-Client-Info), and the origin
    is what CORS is about. Names only, so nothing else is echoed."""
    names = (name.strip() for name in requested.split(","))
    return ", ".join(dict.fromkeys([*_CORS_HEADERS, *filter(HEADER_NAME.fullmatch, names)]))


def cors_tween_factory(
    handler: Callable[[Request], Response], registry: Registry
) -> Callable[[Request], Response]:
    origins = frozenset(registry.api_settings.cors_origins)
    if not origins:
        return handler  # off by default

    def cors_tween(request: Request) -> Response:
        origin = request.environ.get("HTTP_ORIGIN")
        # With "*", the answer is "*" itself: no origin (not even "null") is
        # echoed, and without Allow-Credentials no browser sends credentials.
        allowed = "*" if "*" in origins else origin if origin in origins else None
        preflight = "HTTP_ACCESS_CONTROL_REQUEST_METHOD" in request.environ
        if request.method == "OPTIONS" and preflight:
            if not allowed:
                return problem_response(403, "This origin may not call the API.")
            response = Response(status=204)
            del response.content_type  # a 204 has no body to type
            response.headers.update(
                {
                    "Access-Control-Allow-Methods": _CORS_METHODS,
                    "Access-Control-Allow-Headers": _allowed_headers(
                        request.environ.get("HTTP_ACCESS_CONTROL_REQUEST_HEADERS", "")
                    ),
                    "Access-Control-Max-Age": "600",
                }
            )
        else:
            response = handler(request)
        if allowed:
            response.headers["Access-Control-Allow-Origin"] = allowed
            response.headers["Access-Control-Expose-Headers"] = _CORS_EXPOSE
            if allowed != "*":  # the answer depends on the Origin
                response.vary = tuple({*(response.vary or ()), "Origin"})
        return response

    return cors_tween


def includeme(config: Configurator) -> None:
    settings = config.registry.api_settings
    open_reads = not settings.read_requires_token
    jwts = None
    if settings.jwt_secret:
        jwts = Verifier(
            settings.jwt_secret, settings.jwt_roles, settings.jwt_role_claim_key, settings.jwt_aud
        )
    config.set_security_policy(BearerTokenPolicy(settings.tokens, open_reads, jwts))
    if settings.read_requires_token:
        # Open reads skip the permission check altogether: it is on the hot path.
        config.set_default_permission("read")
    # Outermost, so that error responses carry the CORS headers too.
    config.add_tween("api.security.cors_tween_factory", under=INGRESS)
    config.add_tween("api.security.jwt_tween_factory", under="api.security.cors_tween_factory")
    config.scan(__name__)

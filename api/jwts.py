"""JSON Web Tokens, verified as PostgREST verifies them.

A bearer token signed with ``api.jwt_secret`` (an HMAC passphrase, or a JWK
or a JWK set of public keys) grants the permissions ``api.jwt_roles`` gives
the role its claims name (``api.jwt_role_claim_key``, ``.role``). PyJWT
checks the signature; this module picks the key, reads the claims of time,
the audience and the role, and keeps what it verified, as PostgREST's cache
does: a signature costs more to check than most requests cost to answer.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import re
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

import jwt

if TYPE_CHECKING:
    from jwt.types import Options

LEEWAY = 30  # seconds of clock skew on exp, nbf and iat, as PostgREST allows
CACHED_TOKENS = 1000  # tokens whose signature was found good, kept by last use
HMAC_ALGORITHMS = ["HS256", "HS384", "HS512"]
SHORTEST_PASSPHRASE = 32  # characters, as PostgREST asks


class InvalidJWT(Exception):
    """A bearer token that is a JWT, and not one this API accepts: why, and
    PostgREST's code (PGRST301: its signature or form; PGRST303: its claims)."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


class Key(NamedTuple):
    kid: str | None
    key: Any
    algorithms: list[str]


def parse_secret(text: str) -> tuple[Key, ...]:
    """``api.jwt_secret``: an HMAC passphrase of 32 characters or more, or a
    JWK or a JWK set as JSON; ``@path`` reads either from a file."""
    text = text.strip()
    if text.startswith("@"):
        try:
            with open(text[1:], encoding="utf-8") as file:
                text = file.read().strip()
        except OSError as exc:
            raise ValueError(f"cannot read {text[1:]}: {exc.strerror}") from None
    if not text.startswith("{"):
        if len(text) < SHORTEST_PASSPHRASE:
            raise ValueError(f"an HMAC passphrase needs {SHORTEST_PASSPHRASE} characters or more")
        return (Key(None, text.encode(), HMAC_ALGORITHMS),)
    try:
        document = json.loads(text)
        jwks = (
            jwt.PyJWKSet.from_dict(document).keys
            if "keys" in document
            else [jwt.PyJWK.from_dict(document)]
        )
    except (ValueError, jwt.PyJWTError) as exc:
        raise ValueError(f"not a JWK or a JWK set: {exc}") from None
    return tuple(Key(k.key_id, _public(k.key), [k.algorithm_name]) for k in jwks)


def base64_passphrases(keys: tuple[Key, ...]) -> tuple[Key, ...]:
    """``keys`` with each HMAC passphrase decoded from base64, in either
    alphabet, padded or not (``api.jwt_secret_is_base64``)."""
    decoded = []
    for key in keys:
        if key.algorithms is HMAC_ALGORITHMS:
            text = key.key.decode().replace("-", "+").replace("_", "/")
            try:
                key = key._replace(
                    key=base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
                )
            except binascii.Error:
                raise ValueError(
                    "the passphrase is not base64, as api.jwt_secret_is_base64 says"
                ) from None
        decoded.append(key)
    return tuple(decoded)


def _public(key: Any) -> Any:
    """The public half of a private key (a JWK with its private part, as
    ``jose jwk gen`` writes it), which alone verifies; others as they are."""
    public = getattr(key, "public_key", None)
    return public() if callable(public) else key


# A step of a role claim's path: .name, ."any name", or [index].
_STEP = re.compile(r'\.([A-Za-z0-9_$@]+)|\."((?:[^"\\]|\\.)*)"|\[(-?\d+)\]')


def parse_claim_path(text: str) -> tuple[str | int, ...]:
    """``api.jwt_role_claim_key``: PostgREST's path of the role in the
    claims (``.role``, ``.app_metadata.roles[0]``,
    ``."https://example.com/role"``); its filters and slices are not taken."""
    text, steps, at = text.strip(), [], 0
    while at < len(text):
        step = _STEP.match(text, at)
        if step is None:
            raise ValueError('expected a path of .name, ."name" and [index] steps, such as .role')
        name, quoted, index = step.groups()
        steps.append(int(index) if index is not None else name or quoted.replace('\\"', '"'))
        at = step.end()
    if not steps:
        raise ValueError("expected a path such as .role")
    return tuple(steps)


class Verifier:
    """What a JWT grants, or why it is refused (``InvalidJWT``)."""

    def __init__(
        self,
        keys: tuple[Key, ...],
        roles: Mapping[str, frozenset[str]],
        role_path: tuple[str | int, ...] = ("role",),
        audience: str | None = None,
    ) -> None:
        self.keys = keys
        self.roles = roles
        self.role_path = role_path
        self.audience = audience
        self._signed_claims = functools.lru_cache(maxsize=CACHED_TOKENS)(self._verify_signature)

    def permissions(self, token: str, now: float | None = None) -> frozenset[str]:
        """The permissions of the token's role: none for a role ``api.jwt_roles``
        does not name, or a token without one (PostgREST's anonymous role)."""
        claims = self._signed_claims(token)
        self._check_claims(claims, time.time() if now is None else now)
        role = _at_path(claims, self.role_path)
        return self.roles.get(role, frozenset()) if isinstance(role, str) else frozenset()

    def _verify_signature(self, token: str) -> dict[str, Any]:
        """The claims of a token whose signature one of the keys verifies;
        time and audience are checked on each use, not once."""
        try:
            kid = jwt.get_unverified_header(token).get("kid")
        except jwt.PyJWTError as exc:
            raise InvalidJWT(str(exc), "PGRST301") from None
        # With a kid, only the key of that kid; without, each key in turn.
        keys = [key for key in self.keys if kid is None or key.kid == kid]
        error: Exception = InvalidJWT("No suitable key or wrong key type", "PGRST301")
        for key in keys:
            try:
                claims: dict[str, Any] = jwt.decode(
                    token, key.key, algorithms=key.algorithms, options=_SIGNATURE_ONLY
                )
                return claims
            except Exception as exc:  # a token is the client's: whatever fails, it is refused
                error = InvalidJWT(str(exc) or type(exc).__name__, "PGRST301")
        raise error

    def _check_claims(self, claims: Mapping[str, Any], now: float) -> None:
        for claim, message, late in _TIMES:
            value = claims.get(claim)
            if value is None:
                continue
            if not isinstance(value, int | float) or isinstance(value, bool):
                raise InvalidJWT(f"The JWT '{claim}' claim must be a number", "PGRST303")
            if late(now, value):
                raise InvalidJWT(message, "PGRST303")
        audience = claims.get("aud")
        if self.audience is None or audience in (None, []):
            return  # a token for every audience, or an API of every audience
        if audience != self.audience and not (
            isinstance(audience, list) and self.audience in audience
        ):
            raise InvalidJWT("JWT not in audience", "PGRST303")


# The signature alone: claims of time and audience are checked on every use.
_SIGNATURE_ONLY: Options = {
    "verify_signature": True,
    "verify_exp": False,
    "verify_nbf": False,
    "verify_iat": False,
    "verify_aud": False,
    "verify_iss": False,
}

# Each claim of time, what its failure says, and when it fails.
_TIMES = (
    ("exp", "JWT expired", lambda now, at: now > at + LEEWAY),
    ("nbf", "JWT not yet valid", lambda now, at: now < at - LEEWAY),
    ("iat", "JWT issued at future", lambda now, at: now < at - LEEWAY),
)


def _at_path(claims: Any, path: tuple[str | int, ...]) -> Any:
    for step in path:
        if isinstance(step, int) and isinstance(claims, list):
            if not -len(claims) <= step < len(claims):
                return None
            claims = claims[step]
        elif isinstance(step, str) and isinstance(claims, dict):
            claims = claims.get(step)
        else:
            return None
    return claims

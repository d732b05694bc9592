"""JWTs as PostgREST takes them (api.jwt_secret): a role claim granting
permissions, refusals as 401 with PostgREST's codes, audiences, roles at a
path, JWK sets of public keys, and a real client sending them."""

import base64
import json
import time

import httpx
import jwt
import postgrest
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from api.bridge.asgi import ASGIApp
from api.jwts import Verifier, parse_secret
from api.settings import SettingsError, load_settings
from tests.support import assert_problem, make_app
from tests.support.servers import ThreadedServer

SECRET = "a passphrase of thirty-two characters or more, for tests"
JWT_SETTINGS = {
    "api.tokens": "writer-secret:read,write a.token.with-dots:read,write",
    "api.jwt_secret": SECRET,
    "api.jwt_roles": "authenticated:read,write anon:read",
    "api.jwt_aud": "this-api",
}


def signed(claims, key=SECRET, algorithm="HS256", **headers):
    now = int(time.time())
    timed = {k: now + v if k in ("exp", "nbf", "iat") else v for k, v in claims.items()}
    return jwt.encode(timed, key, algorithm=algorithm, headers=headers or None)


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
def jwt_api(database_url):
    app = make_app(database_url, **JWT_SETTINGS)
    with ThreadedServer(ASGIApp(app)) as running, httpx.Client(base_url=running.url) as client:
        yield client
    app.close()


def test_a_jwt_grants_what_api_jwt_roles_gives_its_role(jwt_api):
    authenticated = signed({"role": "authenticated", "exp": 3600, "aud": "this-api"})
    created = jwt_api.post("/mytable/", json={"name": "by a JWT"}, headers=bearer(authenticated))
    assert created.status_code == 201, created.text
    for claims in ({"role": "anon"}, {"role": "nobody"}, {"sub": "no role at all"}):
        token = signed(claims)
        assert jwt_api.get("/mytable/", headers=bearer(token)).status_code == 200
        refused = jwt_api.post("/mytable/", json={"name": "x"}, headers=bearer(token))
        assert_problem(refused, 403)
    # the tokens of api.tokens still work beside JWTs
    by_token = jwt_api.post(
        "/mytable/", json={"name": "by a token"}, headers=bearer("writer-secret")
    )
    assert by_token.status_code == 201


OTHER_KEY = "another passphrase of thirty-two characters"


@pytest.mark.parametrize(
    ("claims", "key", "code", "message"),
    [
        ({"exp": -3600}, SECRET, "PGRST303", "JWT expired"),
        ({"nbf": 3600}, SECRET, "PGRST303", "JWT not yet valid"),
        ({"iat": 3600}, SECRET, "PGRST303", "JWT issued at future"),
        ({"aud": "another-api"}, SECRET, "PGRST303", "JWT not in audience"),
        ({}, OTHER_KEY, "PGRST301", "Signature verification failed"),
        ({}, None, "PGRST301", "The specified alg value is not allowed"),  # alg: none
    ],
)
def test_a_refused_jwt_is_401_on_an_open_read_too(jwt_api, claims, key, code, message):
    """As PostgREST's: a client whose token expired learns it, and renews
    it, rather than reading as no one."""
    token = signed({"role": "anon", **claims}, key, "HS256" if key else "none")
    response = jwt_api.get("/mytable/", headers=bearer(token))
    problem = assert_problem(response, 401)
    assert (problem["code"], problem["message"]) == (code, message)
    assert response.headers["www-authenticate"] == (
        f'Bearer error="invalid_token", error_description="{message}"'
    )


def test_a_refused_jwt_is_counted_among_the_errors(jwt_api, monkeypatch):
    """``api_errors_total{kind="jwt_refused"}``: a storm of expired
    sessions, or a forger, shows on /metrics."""
    counted = []
    monkeypatch.setattr("api.security.count_error", counted.append)
    expired = signed({"role": "anon", "exp": -3600})
    assert jwt_api.get("/mytable/", headers=bearer(expired)).status_code == 401
    assert counted == ["jwt_refused"]


def test_a_jwt_with_claims_it_cannot_have_is_401(jwt_api):
    now = int(time.time())
    for token, message in (
        (jwt.encode({"exp": "soon"}, SECRET), "The JWT 'exp' claim must be a number"),
        (
            jwt.encode({"nbf": True, "exp": now + 60}, SECRET),
            "The JWT 'nbf' claim must be a number",
        ),
        ("not.a.jwt", "Invalid header padding"),
    ):
        problem = assert_problem(jwt_api.get("/mytable/", headers=bearer(token)), 401)
        assert problem["message"] == message


def test_an_audience_of_several_or_none_is_taken(jwt_api):
    for audience in (["other", "this-api"], None, []):
        token = signed({"role": "authenticated", "aud": audience})
        assert jwt_api.get("/mytable/", headers=bearer(token)).status_code == 200


def test_postgrest_py_sends_a_jwt_and_reads_postgrest_s_error(jwt_api):
    token = signed({"role": "authenticated", "exp": 3600})
    with postgrest.SyncPostgrestClient(str(jwt_api.base_url), headers=bearer(token)) as client:
        rows = client.from_("mytable").insert({"name": "by postgrest-py"}).execute().data
        assert rows[0]["name"] == "by postgrest-py"
    expired = signed({"role": "authenticated", "exp": -3600})
    client = postgrest.SyncPostgrestClient(str(jwt_api.base_url), headers=bearer(expired))
    with client, pytest.raises(postgrest.APIError) as error:
        client.from_("mytable").select("id").limit(1).execute()
    assert (error.value.code, error.value.message) == ("PGRST303", "JWT expired")


def test_the_role_at_a_path_of_the_claims(database_url):
    """Keycloak's and Auth0's tokens keep roles deeper (api.jwt_role_claim_key)."""
    settings = {**JWT_SETTINGS, "api.jwt_role_claim_key": '.app_metadata."roles"[1]'}
    app = make_app(database_url, **settings)
    with ThreadedServer(ASGIApp(app)) as running:
        token = signed({"app_metadata": {"roles": ["anon", "authenticated"]}})
        created = httpx.post(f"{running.url}/mytable/", json={"name": "x"}, headers=bearer(token))
        assert created.status_code == 201
    app.close()


def _rsa_jwk(kid):
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(private.public_key()))
    return private, {**public, "kid": kid, "alg": "RS256"}


def test_a_jwk_set_verifies_by_kid_or_tries_each_key():
    (first, first_jwk), (second, second_jwk) = _rsa_jwk("first"), _rsa_jwk("second")
    keys = parse_secret(json.dumps({"keys": [first_jwk, second_jwk]}))
    verifier = Verifier(keys, {"authenticated": frozenset({"read", "write"})})
    claims = {"role": "authenticated"}
    assert verifier.permissions(signed(claims, second, "RS256", kid="second")) == {"read", "write"}
    assert verifier.permissions(signed(claims, second, "RS256")) == {"read", "write"}
    for token, message in (
        (signed(claims, first, "RS256", kid="second"), "Signature verification failed"),
        (signed(claims, first, "RS256", kid="third"), "No suitable key or wrong key type"),
        (
            signed(claims, SECRET),
            "The specified alg value is not allowed",
        ),  # HS256 by a public key
    ):
        with pytest.raises(Exception) as refused:
            verifier.permissions(token)
        assert (refused.value.code, refused.value.message) == ("PGRST301", message)


def test_a_supabase_project_s_jwk_set_verifies_its_es256_tokens():
    """Supabase signs with ES256 keys now, and publishes them as a JWK set
    (``/auth/v1/.well-known/jwks.json``) with ``use`` and ``key_ops``."""
    private = ec.generate_private_key(ec.SECP256R1())
    public = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(private.public_key()))
    jwks = {"keys": [{**public, "kid": "sb", "alg": "ES256", "use": "sig", "key_ops": ["verify"]}]}
    verifier = Verifier(parse_secret(json.dumps(jwks)), {"authenticated": frozenset({"read"})})
    claims = {"role": "authenticated", "aud": "authenticated", "sub": "a-user"}
    assert verifier.permissions(signed(claims, private, "ES256", kid="sb")) == {"read"}


def test_a_jwk_with_its_private_part_verifies_by_its_public_one():
    """A JWK as ``jose jwk gen`` writes it, private part and all: PyJWT
    verified with the private key object, which cannot, and every JWT was
    a 500."""
    private, _ = _rsa_jwk("only")
    whole = {**json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(private)), "alg": "RS256"}
    verifier = Verifier(parse_secret(json.dumps(whole)), {"anon": frozenset({"read"})})
    assert verifier.permissions(signed({"role": "anon"}, private, "RS256")) == {"read"}


def test_a_cached_token_is_timed_on_each_use():
    """A signature checked once is kept; its exp is not."""
    verifier = Verifier(parse_secret(SECRET), {"anon": frozenset({"read"})})
    token = signed({"role": "anon", "exp": 60})
    assert verifier.permissions(token) == {"read"}
    with pytest.raises(Exception, match="JWT expired"):
        verifier.permissions(token, now=time.time() + 120)


def test_a_passphrase_in_base64_signs_as_its_bytes():
    """PostgREST's ``jwt-secret-is-base64``: Auth0's older secrets were so."""
    raw = bytes(range(48))
    written = base64.urlsafe_b64encode(raw).decode().rstrip("=")
    settings = load_settings(
        {
            "sqlalchemy.url": "sqlite+aiosqlite://",
            "api.jwt_secret": written,
            "api.jwt_secret_is_base64": "true",
        },
        environ={},
    )
    verifier = Verifier(settings.jwt_secret, {"anon": frozenset({"read"})})
    assert verifier.permissions(signed({"role": "anon"}, raw)) == {"read"}


@pytest.mark.parametrize(
    ("key", "value", "says"),
    [
        ("api.jwt_secret", "too short", "an HMAC passphrase needs 32 characters or more"),
        ("api.jwt_secret", '{"kty": "nope"}', "not a JWK or a JWK set"),
        ("api.jwt_secret", "@/nonexistent/jwk.json", "cannot read /nonexistent/jwk.json"),
        ("api.jwt_roles", "authenticated", "each JWT role entry must be ROLE:PERM[,PERM]"),
        ("api.jwt_role_claim_key", ".roles[?(@ == 'x')]", "expected a path of .name"),
    ],
)
def test_jwt_settings_are_checked_at_start_up(key, value, says):
    with pytest.raises(SettingsError, match=f"^{key}: {says}".replace("[", r"\[")):
        load_settings({"sqlalchemy.url": "sqlite+aiosqlite://", key: value}, environ={})
    not_base64 = {"api.jwt_secret": "*" * 40, "api.jwt_secret_is_base64": "yes"}
    with pytest.raises(SettingsError, match=r"^api\.jwt_secret: the passphrase is not base64"):
        load_settings({"sqlalchemy.url": "sqlite+aiosqlite://", **not_base64}, environ={})


def test_a_refusal_s_words_make_a_header_that_is_one_line_of_ascii():
    from api.jwts import InvalidJWT
    from api.security import _invalid_jwt

    response = _invalid_jwt(InvalidJWT('bad\r\nX-Injected: 1 "quoted" é', "PGRST301"))
    assert response.headers["WWW-Authenticate"] == (
        "Bearer error=\"invalid_token\", error_description=\"bad''X-Injected: 1 'quoted' '\""
    )

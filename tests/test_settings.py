"""Settings: one validated object; a bad value stops start-up naming the setting."""

import pytest

from api import main
from api.settings import SettingsError, load_settings

URL = {"sqlalchemy.url": "sqlite+aiosqlite:///:memory:"}


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("api.read_requires_token", "ture", "api.read_requires_token: expected true or false"),
        ("api.page_limit_max", "abc", "api.page_limit_max: expected a whole number"),
        ("db.pool_size", "0", "db.pool_size: expected a whole number of at least 1"),
        ("db.pool_timeout", "soon", "db.pool_timeout: expected a number of seconds"),
        ("api.page_limit_default", "9000", "api.page_limit_default: expected at most"),
        ("api.tokens", "no-permission", "api.tokens: each API token entry"),
    ],
)
def test_a_bad_value_stops_start_up_naming_the_setting(key, value, expected, monkeypatch):
    monkeypatch.delenv("DATABASE_URL", raising=False)
    with pytest.raises(SettingsError, match=expected):
        main({}, **URL, **{key: value})


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://u:pw@h/db", "not postgresql://.*PostgREST itself"),
        ("mysql+aiomysql://u:pw@h/db", r"on asyncmy.*not mysql\+aiomysql://"),
        ("mssql+pyodbc://u:pw@h/db", r"not mssql\+pyodbc://"),
    ],
)
def test_a_database_the_api_does_not_serve_stops_start_up_saying_which_it_serves(url, expected):
    """Such a URL failed with a traceback (its driver is not installed), or,
    with another MySQL driver, started on a driver the API does not know."""
    with pytest.raises(SettingsError, match=expected) as error:
        load_settings({"sqlalchemy.url": url, "api.tables": "*"}, environ={})
    assert "pw" not in str(error.value)


def test_a_secret_is_not_repeated_in_the_error():
    with pytest.raises(SettingsError) as error:
        load_settings({**URL, "api.tokens": "hunter2-without-permissions"}, environ={})
    assert "hunter2" not in str(error.value)


def test_the_environment_wins_over_the_ini_file():
    environ = {"API_PAGE_LIMIT_MAX": "2000", "API_READ_REQUIRES_TOKEN": "yes"}
    settings = load_settings({**URL, "api.page_limit_max": "1500"}, environ=environ)
    assert settings.page_limit_max == 2000
    assert settings.read_requires_token is True
    bad = {"API_PAGE_LIMIT_MAX": "lots"}
    with pytest.raises(SettingsError, match=r"API_PAGE_LIMIT_MAX \(environment\)"):
        load_settings(URL, environ=bad)


def test_defaults_and_the_read_pool_following_the_write_pool():
    settings = load_settings({**URL, "db.pool_size": "7"}, environ={})
    assert (settings.page_limit_default, settings.page_limit_max) == (1000, 1000)
    assert settings.read_pool_size == 7
    assert settings.read_max_overflow == settings.db_max_overflow == 10
    assert load_settings({**URL, "db.read_pool_size": "3"}, environ={}).read_pool_size == 3


def test_settings_are_frozen_and_hide_their_secrets():
    settings = load_settings({**URL, "api.tokens": "s3cret:read"}, environ={})
    with pytest.raises(AttributeError):
        settings.page_limit_max = 1  # type: ignore[misc]
    assert "s3cret" not in repr(settings) and "sqlite" not in repr(settings)


def test_database_url_from_the_environment_wins(monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "mysql://u:p@db.example/prod")
    url = load_settings({"sqlalchemy.url": "sqlite:///local.sqlite"}).database_url
    assert url.drivername == "mysql+asyncmy"
    assert url.host == "db.example"


def test_the_readme_lists_every_setting_with_its_environment_variable():
    from api.settings import FIELDS
    from tests.support import ROOT

    readme = (ROOT / "README.md").read_text()
    for field in FIELDS:
        row = f"| `{field.metadata['key']}` | `{field.metadata['env']}` |"
        assert row in readme, row


def test_nothing_to_serve_stops_start_up():
    with pytest.raises(SettingsError, match="nothing to serve"):
        load_settings({"sqlalchemy.url": "sqlite://", "api.declared_tables": "false"}, {})
    served = load_settings(
        {"sqlalchemy.url": "sqlite://", "api.declared_tables": "off", "api.tables": "*"}, {}
    )
    assert served.declared_tables is False and served.tables == ("*",)

"""TLS to the database, as managed cloud databases require: a MariaDB
server of its own that takes no other connection."""

import pytest
import webtest

from api.collections import StartupError
from tests.support import make_app, run_sql
from tests.support.servers import tls_only_mariadb

SERVED = {"api.tables": "*", "api.declared_tables": "false"}


def test_the_api_serves_a_database_that_takes_only_tls(tmp_path):
    """SQLAlchemy's ``ssl_ca`` (and ``ssl_cert``, ``ssl_key``,
    ``ssl_check_hostname``) in DATABASE_URL's query reach asyncmy; without
    them, the refusal says that the server may want TLS."""
    with tls_only_mariadb(tmp_path) as (url, ca):
        secure = f"{url}?ssl_ca={ca}"
        run_sql(
            secure,
            "CREATE DATABASE shop",
            "CREATE TABLE shop.item (id INT AUTO_INCREMENT PRIMARY KEY, name VARCHAR(20))",
            "INSERT INTO shop.item (name) VALUES ('over TLS')",
        )
        shop = url.replace("/mysql", "/shop")
        app = make_app(f"{shop}?ssl_ca={ca}", **SERVED, **{"api.tokens": "w:read,write"})
        try:
            client = webtest.TestApp(app)
            assert client.get("/item/").json == [{"id": 1, "name": "over TLS"}]
            writer = {"Authorization": "Bearer w"}
            client.post_json("/item/", {"name": "written"}, headers=writer, status=201)
            assert client.get("/__heartbeat__").json["database"] == "ok"
        finally:
            app.close()
        with pytest.raises(StartupError, match="TLS"):
            make_app(shop, **SERVED)

"""The API in a real browser (Debian's headless Chromium, driven by
Playwright): GET /docs loads offline, shows the operations, and "try it
out" on GET /mytable/ shows rows; a page of another origin calls the API
through CORS with supabase-js's headers."""

import contextlib
import shutil

import pytest
from playwright.sync_api import sync_playwright

from tests.support import IN_CI
from tests.support.servers import fresh_sqlite_server

CHROMIUM = shutil.which("chromium")
# As the machine's own check starts it: no sandbox (root), and no calls out
# to Google's services, which this network refuses.
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def docs_server(tmp_path_factory):
    with fresh_sqlite_server(tmp_path_factory.mktemp("docs"), "t:read,write", 5) as server:
        yield server


@contextlib.contextmanager
def chromium():
    """Debian's headless Chromium, closed after; the test skips without it (fails in CI)."""
    if CHROMIUM is None:
        if IN_CI:
            pytest.fail("chromium is missing: .ci/run installs it (apt-get install chromium)")
        pytest.skip("chromium is missing (apt-get install chromium)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            yield browser
        finally:
            browser.close()


def test_the_docs_page_lists_operations_and_tries_one_out(docs_server):
    with chromium() as browser:
        page = browser.new_page()
        offline = []
        page.on("request", lambda r: offline.append(r.url))
        page.goto(f"{docs_server.url}/docs")
        operation = page.locator("#operations-default-list_mytable")
        operation.wait_for(timeout=20_000)
        assert page.locator("#operations-default-create_mytable").count() == 1
        operation.locator(".opblock-summary").click()
        operation.locator("button.try-out__btn").click()
        operation.locator("button.execute").click()
        body = operation.locator(".live-responses-table .response-col_description pre")
        body.first.wait_for(timeout=20_000)
        text = body.first.inner_text()
        assert '"name": "demo 1"' in text, text
        status = operation.locator(".live-responses-table tbody .response-col_status")
        assert status.first.inner_text().strip() == "200"
        assert all(url.startswith(docs_server.url) for url in offline), offline


@pytest.fixture(scope="module")
def cors_server(tmp_path_factory, docs_server):
    """A server that lets the docs server's origin call it."""
    folder = tmp_path_factory.mktemp("cors")
    settings = {"api.cors_origins": docs_server.url}
    with fresh_sqlite_server(folder, "t:read,write", 5, **settings) as server:
        yield server


# A write and a counted read from a page of another origin, with the headers
# supabase-js sends on every call (apikey, X-Client-Info): a browser sends
# them only if the preflight allows them, and shows the count only if
# Content-Range is exposed.
CROSS_ORIGIN_CALLS = """async (base) => {
    const headers = {
        apikey: 't', 'X-Client-Info': 'supabase-js-web/2.86.0', Authorization: 'Bearer t',
        'Content-Type': 'application/json',
    }
    const created = await fetch(`${base}/mytable`, {
        method: 'POST', headers: {...headers, Prefer: 'return=representation'},
        body: JSON.stringify({name: 'from another origin'}),
    })
    const counted = await fetch(`${base}/mytable?select=name&order=id.desc&limit=1`, {
        headers: {...headers, Prefer: 'count=exact'},
    })
    return {
        status: created.status, location: created.headers.get('location'),
        range: counted.headers.get('content-range'), rows: await counted.json(),
    }
}"""


def test_a_page_of_another_origin_calls_the_api_with_supabase_js_headers(docs_server, cors_server):
    with chromium() as browser:
        page = browser.new_page()
        page.goto(f"{docs_server.url}/openapi.json")
        answered = page.evaluate(CROSS_ORIGIN_CALLS, cors_server.url)
    assert answered["status"] == 201
    assert answered["location"].startswith(f"{cors_server.url}/mytable/")
    assert answered["range"] == "0-0/6"  # the 5 seeded rows and this one
    assert answered["rows"] == [{"name": "from another origin"}]

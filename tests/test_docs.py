"""GET /docs in a real browser (Debian's headless Chromium, driven by
Playwright): the page loads offline, shows the operations, and "try it out"
on GET /mytable/ shows rows."""

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


def test_the_docs_page_lists_operations_and_tries_one_out(docs_server):
    if CHROMIUM is None:
        if IN_CI:
            pytest.fail("chromium is missing: .ci/run installs it (apt-get install chromium)")
        pytest.skip("chromium is missing (apt-get install chromium)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
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
        finally:
            browser.close()

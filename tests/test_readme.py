"""Every curl example of the README, run as written against a live server
(the mytable ones on a fresh SQLite database seeded as `make run` seeds it,
Sakila's on MariaDB), answers without an error."""

import pathlib
import subprocess

import pytest

from tests.support.servers import fresh_sqlite_server

README = pathlib.Path(__file__).parents[1] / "README.md"
HOST = "http://127.0.0.1:6543"
SAKILA_TABLES = ("film", "country", "city", "payment")


def examples():
    """The README's curl commands, continuation lines joined, in order."""
    text = README.read_text().replace("\\\n", " ")
    return [line.strip() for line in text.splitlines() if line.startswith("curl ")]


def on_sakila(command):
    return "/rpc/" in command or any(f"/{table}/" in command for table in SAKILA_TABLES)


@pytest.fixture(scope="module")
def readme_server(tmp_path_factory):
    """development.ini's token, on a database seeded as `make run` seeds it."""
    folder = tmp_path_factory.mktemp("readme")
    with fresh_sqlite_server(folder, "dev-token:read,write", 120) as server:
        yield server


def status(command, base_url):
    """The HTTP status ``command`` gets from the server at ``base_url``."""
    result = subprocess.run(
        ["bash", "-c", f"{command.replace(HOST, base_url)} -o /dev/null -w '%{{http_code}}'"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, (command, result.stderr)
    return int(result.stdout[-3:])


def test_the_readme_has_examples():
    assert len(examples()) > 15


def test_every_mytable_example_answers(readme_server):
    for command in examples():
        if not on_sakila(command):
            assert status(command, readme_server.url) < 400, command


def test_every_sakila_example_answers(sakila_server):
    for command in examples():
        if on_sakila(command):
            assert status(command.replace("dev-token", "writer-secret"), sakila_server.url) < 400

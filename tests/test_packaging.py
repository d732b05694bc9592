"""The project as a user installs and runs it: the wheel in a fresh
virtualenv, used from a directory that is not the checkout, and the
commands' ways of failing (a missing URL, a port taken, --help)."""

import os
import pathlib
import shutil
import subprocess
import sys

import httpx
import pytest

from tests.support import ROOT
from tests.support.servers import free_port, serving

BIN = pathlib.Path(sys.executable).parent


def environment(**changes):
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "PYTHONPATH")}
    return {**env, **changes}


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """The wheel built from this checkout, installed in a fresh virtualenv."""
    folder = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", folder / "dist", ROOT],
        check=True,
        capture_output=True,
    )
    (wheel,) = (folder / "dist").glob("pyramid_postgrest_mysql-*.whl")
    subprocess.run([sys.executable, "-m", "venv", folder / "venv"], check=True)
    venv = folder / "venv" / "bin"
    subprocess.run([venv / "pip", "install", "-q", wheel], check=True, capture_output=True)
    return venv


def test_the_wheel_migrates_seeds_and_serves_from_any_directory(installed, tmp_path):
    """alembic -c production.ini, api-seed and pserve, with only the
    installed package and an ini file: no checkout in sight."""
    shutil.copy(ROOT / "production.ini", tmp_path / "production.ini")
    env = environment(DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path}/prod.sqlite")

    def run(*command):
        return subprocess.run(
            [installed / command[0], *command[1:]],
            cwd=tmp_path,
            env=env,
            check=True,
            capture_output=True,
            text=True,
        )

    assert "Running upgrade" in run("alembic", "-c", "production.ini", "upgrade", "head").stderr
    assert "inserted 3 demo rows" in run("api-seed", "production.ini", "3").stdout
    port = free_port()
    env["GUNICORN_CMD_ARGS"] = "--workers 1"
    with serving([installed / "pserve", "production.ini", f"http_port={port}"], tmp_path, env):
        rows = httpx.get(f"http://127.0.0.1:{port}/mytable/?select=name").json()
        assert rows == [{"name": f"demo {n}"} for n in (1, 2, 3)]


def test_production_refuses_to_start_without_a_database_url(installed, tmp_path):
    shutil.copy(ROOT / "production.ini", tmp_path / "production.ini")
    for command in (["pserve", "production.ini"], ["alembic", "-c", "production.ini", "current"]):
        done = subprocess.run(
            [installed / command[0], *command[1:]],
            cwd=tmp_path,
            env=environment(),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode != 0
        assert "set DATABASE_URL" in done.stderr and "Traceback" not in done.stderr


def test_a_database_that_does_not_answer_at_start_up_is_one_line(tmp_path):
    """api.tables reads the database before serving: one that is down was a
    60-line traceback from the driver; it is one line that names the
    database (password hidden) and the driver's words, and a non-zero exit,
    once db.startup_timeout has passed."""
    env = {
        **environment(),
        "DATABASE_URL": f"mysql+asyncmy://root:hidden@127.0.0.1:{free_port()}/nowhere",
        "API_TABLES": "*",
        "DB_STARTUP_TIMEOUT": "2",
        "GUNICORN_CMD_ARGS": "--workers 1",
    }
    done = subprocess.run(
        [BIN / "pserve", ROOT / "production.ini", f"http_port={free_port()}"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert "api: cannot start: start-up could not read the database at" in done.stderr
    assert "root:***@127.0.0.1" in done.stderr and "hidden" not in done.stderr
    assert "Can't connect" in done.stderr and "Traceback" not in done.stderr
    assert "start-up: no database at mysql+asyncmy://root:***@127.0.0.1" in done.stderr
    assert "hidden" not in done.stdout


def test_a_port_taken_is_a_failure_and_http_port_picks_another(tmp_path):
    """pserve development.ini http_port=N serves on N; a second server on a
    port taken exits non-zero (pserve alone would exit 0)."""
    ini = tmp_path / "local.ini"
    text = (ROOT / "development.ini").read_text().replace("%(here)s", str(tmp_path))
    ini.write_text(text)
    env = environment()
    subprocess.run([BIN / "alembic", "-c", ini, "upgrade", "head"], env=env, check=True)
    port = free_port()
    command = [BIN / "pserve", ini, f"http_port={port}"]
    with serving(command, tmp_path, env, port):
        second = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
        assert second.returncode != 0
        assert "address already in use" in second.stderr


def test_scripts_have_help():
    done = subprocess.run([BIN / "api-seed", "--help"], capture_output=True, text=True)
    assert done.returncode == 0 and "usage: api-seed" in done.stdout
    done = subprocess.run([BIN / "api-seed"], capture_output=True, text=True)
    assert done.returncode == 2 and "Traceback" not in done.stderr

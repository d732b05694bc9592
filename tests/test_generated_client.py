"""A client generated from the API's own OpenAPI document by
openapi-python-client, as its users generate one, driven against the live
API on both databases: what the document promises, a generated client gets."""

import importlib
import os
import subprocess
import sys

import httpx
import pytest

from tests.support import BIN, unique_name


@pytest.fixture
def generated(server, backend, tmp_path):
    """The generated package, imported under a name of this backend's."""
    name = f"generated_{backend}"
    document = tmp_path / "openapi.json"
    document.write_bytes(httpx.get(f"{server.url}/openapi.json").raise_for_status().content)
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}  # its ruff
    command = [BIN / "openapi-python-client", "generate", "--path", document, "--meta", "none"]
    done = subprocess.run(
        [*command, "--output-path", tmp_path / name], capture_output=True, text=True, env=env
    )
    assert done.returncode == 0, done.stdout + done.stderr
    sys.path.insert(0, str(tmp_path))
    try:
        yield importlib.import_module(name)
    finally:
        sys.path.remove(str(tmp_path))
        for module in [m for m in sys.modules if m == name or m.startswith(f"{name}.")]:
            del sys.modules[module]


def test_a_generated_client_creates_reads_patches_and_deletes_a_row(server, generated):
    client = generated.AuthenticatedClient(
        base_url=server.url, token="writer-secret", headers={"Prefer": "return=representation"}
    )
    with client:
        _create_read_patch_delete(client, generated.__name__)


def _create_read_patch_delete(client, package):
    def operation(name):
        return importlib.import_module(f"{package}.api.default.{name}")

    models = importlib.import_module(f"{package}.models")
    name = unique_name("generated")
    created = operation("create_mytable").sync_detailed(
        client=client, body=models.MytableCreate(name=name)
    )
    assert created.status_code == 201, created.content

    (found,) = operation("list_mytable").sync(client=client, name=f"eq.{name}", limit=5)
    assert (found.name, found.version) == (name, 1)

    get = operation("get_mytable")
    read = get.sync_detailed(found.id, client=client)
    assert (read.status_code, read.parsed.name, read.headers["etag"]) == (200, name, '"1"')

    patch = operation("patch_mytable")
    body = models.MytablePatch.from_dict({"data": {"n": 1}})
    patched = patch.sync_detailed(found.id, client=client, body=body, if_match='"1"')
    assert patched.status_code == 200, patched.content
    assert (patched.parsed.data, patched.parsed.version) == ({"n": 1}, 2)
    stale = patch.sync_detailed(found.id, client=client, body=body, if_match='"1"')
    assert stale.status_code == 412 and isinstance(stale.parsed, models.Problem)
    assert stale.parsed.code == "PGRST412"

    assert operation("delete_mytable").sync_detailed(found.id, client=client).status_code == 204
    gone = get.sync_detailed(found.id, client=client)
    assert gone.status_code == 404 and isinstance(gone.parsed, models.Problem)

"""Fixtures for the storage tests: a real S3 server (scripts/s3-server) for the session, a fresh bucket per
test, and the `store` fixture that runs a test once on the local-folder store and once on S3.

SeaweedFS implements no lifecycle API, so lifecycle rules and object tags are exercised against the moto
server (`moto_server`, from moto[server]), started by the `moto_server` fixture and stopped by its pid."""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cryocloud.errors import CryocloudError
from cryocloud.proc import pid_alive, run_command, spawn_detached
from cryocloud.storage.base import ObjectStore
from testtools import unavailable

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "s3-server"


def server_cmd(action: str, d: Path, *extra: str) -> dict[str, Any]:
    out = run_command([sys.executable, SCRIPT, action, d, *extra], timeout=120).stdout
    return json.loads(out) if out.lstrip().startswith("{") else {}


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A SeaweedFS server on loopback for the whole session, stopped by the pid the script started."""
    d = tmp_path_factory.mktemp("s3server")
    try:
        state = server_cmd("start", d, "--tls")  # HTTP and HTTPS (a private CA, as a facility's gateway has)
    except CryocloudError as e:
        unavailable(f"cannot start the S3 server: {e}")
    yield state
    server_cmd("stop", d)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _stop(pid: int) -> None:
    """SIGTERM the pid we started, SIGKILL after 10 s; reap it (it is our child)."""
    if pid_alive(pid):
        os.kill(pid, signal.SIGTERM)
    for _ in range(200):
        try:
            done, _status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return
        if done:
            return
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A moto server on loopback (it implements lifecycle rules and object tags; SeaweedFS does not)."""
    import boto3

    exe = Path(sys.executable).parent / "moto_server"
    port = _free_port()
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    state = {"endpoint_url": f"http://127.0.0.1:{port}", "access_key": "motokey", "secret_key": "motosecret"}
    try:
        pid = spawn_detached([exe, "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=log)
    except CryocloudError as e:
        unavailable(f"cannot start the moto server (pip install 'moto[server]'): {e}")
    client = boto3.session.Session().client(
        "s3", endpoint_url=state["endpoint_url"], region_name="us-east-1",
        aws_access_key_id=state["access_key"], aws_secret_access_key=state["secret_key"],
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            client.list_buckets()
            break
        except Exception as e:
            if time.monotonic() > deadline or not pid_alive(pid):
                _stop(pid)
                msg = f"the moto server did not answer on port {port}: {e}; log: {log.read_text()[-500:]}"
                unavailable(msg)
            time.sleep(0.1)
    try:
        yield state
    finally:
        _stop(pid)


@pytest.fixture
def moto_env(moto_server: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    return aws_env_for(moto_server, monkeypatch)


@pytest.fixture
def moto_store(moto_env: dict[str, Any]) -> Any:
    from cryocloud.storage.s3 import S3Store

    return S3Store(make_bucket(moto_env), "lab1")


def aws_env_for(server: dict[str, Any], monkeypatch: pytest.MonkeyPatch, tls: bool = True) -> dict[str, Any]:
    """Only this server's endpoint and test credentials in the environment, where boto3's chain finds them. A
    server that serves HTTPS is used over HTTPS (every real endpoint is TLS), its private CA in AWS_CA_BUNDLE."""
    for var in [v for v in os.environ if v.startswith("AWS_")]:
        monkeypatch.delenv(var)
    if tls and "https_endpoint_url" in server:
        monkeypatch.setenv("AWS_ENDPOINT_URL_S3", server["https_endpoint_url"])
        monkeypatch.setenv("AWS_CA_BUNDLE", server["ca_file"])
    else:
        monkeypatch.setenv("AWS_ENDPOINT_URL_S3", server["endpoint_url"])
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", server["access_key"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", server["secret_key"])
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/dev/null")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
    return server


def make_bucket(state: dict[str, Any]) -> str:
    import boto3

    name = "t-" + uuid.uuid4().hex[:12]
    boto3.session.Session().client(
        "s3", endpoint_url=state["endpoint_url"], region_name="us-east-1",
        aws_access_key_id=state["access_key"], aws_secret_access_key=state["secret_key"],
    ).create_bucket(Bucket=name)
    return name


@pytest.fixture
def s3_env(s3_server: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The server's test credentials in the environment, where boto3's chain finds them."""
    return aws_env_for(s3_server, monkeypatch)


@pytest.fixture
def s3_store(s3_env: dict[str, Any]) -> ObjectStore:
    from cryocloud.storage.s3 import S3Store

    return S3Store(make_bucket(s3_env), "lab1")


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.integration)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStore:
    if request.param == "local":
        from cryocloud.storage.localfs import LocalFolderStore

        return LocalFolderStore(tmp_path / "store")
    return request.getfixturevalue("s3_store")  # type: ignore[no-any-return]


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A small RELION-shaped project: large 'movies', many small STAR/log files, a job alias, an empty dir."""
    root = tmp_path / "proj"
    for i in range(3):
        write(root / "Movies" / f"m{i}.tiff", os.urandom(3_000_000 + i))
    for i in range(40):
        write(root / "MotionCorr" / "job002" / "Movies" / f"m{i}.star", f"data_\n_rlnX {i}\n".encode())
    write(root / "default_pipeline.star", b"data_pipeline_general\n")
    write(root / "MotionCorr" / "job002" / "dup.star", b"data_\n_rlnX 0\n")
    write(root / "MotionCorr" / "job002" / "empty.log", b"")  # an empty file, packed at a range end
    (root / "MotionCorr" / "first").symlink_to("job002")
    (root / "Empty").mkdir()
    return root

"""HTTPS endpoints signed by a private CA (what a facility's S3, MinIO or Ceph gateway has): trusted through
AWS_CA_BUNDLE or [storage] ca_bundle, by obstore and boto3 alike; anything else is refused with a hint, and
verification is never turned off."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest

from cryocloud.cli.main import main
from cryocloud.errors import CryocloudError
from cryocloud.storage.pull import pull
from cryocloud.storage.push import push

from .conftest import make_bucket, write

pytestmark = pytest.mark.integration


def _digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and not p.is_symlink()}


def test_push_and_pull_over_https_with_the_facilitys_ca(s3_env: dict[str, Any], project: Path, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    from cryocloud.storage.s3 import S3Store

    assert s3_env["https_endpoint_url"].startswith("https://")
    write(project / "Movies" / "big.tiff", b"\x07" * (20 << 20))  # multipart and ranged downloads over TLS
    store = S3Store(make_bucket(s3_env), "lab")
    assert store.endpoint_url.startswith("https://")
    push(store, project, name="p")
    pull(store, "p", tmp_path / "back")
    assert _digest(tmp_path / "back") == _digest(project)
    assert store._client.head_bucket(Bucket=store.bucket)["ResponseMetadata"]["HTTPStatusCode"] == 200  # boto3 too
    # the CLI, as a user runs it
    assert main(["storage", "push", str(project), "--to", f"s3://{store.bucket}/cli", "--name", "p2", "-q"]) == 0
    assert main(["storage", "pull", "p2", str(tmp_path / "cli"), "--from", f"s3://{store.bucket}/cli", "-q"]) == 0
    assert _digest(tmp_path / "cli") == _digest(project)


def test_the_config_key_names_the_ca_as_well(s3_env: dict[str, Any], project: Path, cryocloud_home: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from cryocloud.settings import load_settings
    from cryocloud.storage.stores import open_store

    monkeypatch.delenv("AWS_CA_BUNDLE")
    cryocloud_home.mkdir(parents=True, exist_ok=True)
    (cryocloud_home / "config.toml").write_text(f'[storage]\nca_bundle = "{s3_env["ca_file"]}"\n')
    store = open_store(f"s3://{make_bucket(s3_env)}/lab", load_settings())
    push(store, project, name="p")


def test_a_certificate_that_does_not_verify_is_refused_with_a_hint(s3_env: dict[str, Any], project: Path,
                                                                  tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from cryocloud.storage.s3 import S3Store

    bucket = make_bucket(s3_env)
    from cryocloud.sandbox.s3server import make_tls

    other = make_tls(tmp_path / "other")["ca_file"]  # someone else's CA
    for ca in (other, None):  # a wrong CA, and none (the system's roots do not know a private CA)
        if ca:
            monkeypatch.setenv("AWS_CA_BUNDLE", ca)
        else:
            monkeypatch.delenv("AWS_CA_BUNDLE")
        with pytest.raises(CryocloudError, match="does not verify") as e:
            push(S3Store(bucket), project, name="p")
        assert "AWS_CA_BUNDLE" in e.value.hint and "never turns verification off" in e.value.hint
    monkeypatch.setenv("AWS_CA_BUNDLE", str(tmp_path / "no-such-ca.pem"))
    with pytest.raises(CryocloudError, match="cannot read the CA bundle"):
        S3Store(bucket)
    (tmp_path / "not-pem.crt").write_bytes(b"\x30\x82\x01\x0a")
    monkeypatch.setenv("AWS_CA_BUNDLE", str(tmp_path / "not-pem.crt"))
    with pytest.raises(CryocloudError, match="no PEM certificate") as e:
        S3Store(bucket)
    assert "openssl x509" in e.value.hint

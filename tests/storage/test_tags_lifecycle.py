"""cryocloud:* tags on stored objects, and lifecycle rules, against a server that implements both (moto).

SeaweedFS (the `store` fixture's S3) implements neither lifecycle rules nor reads of object tags the way
AWS does, so these run on the moto server; everything else runs on SeaweedFS."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import boto3
import pytest

from cryocloud.storage import tags
from cryocloud.storage.base import ObjectStore
from cryocloud.storage.localfs import LocalFolderStore
from cryocloud.storage.project import push_project
from cryocloud.storage.push import push
from cryocloud.storage.staging import stage_out

from .conftest import write

pytestmark = pytest.mark.integration

FOUR = {tags.OWNER, tags.PROJECT, tags.JOB, tags.EXPIRES}


def client(state: dict[str, Any]) -> Any:
    return boto3.session.Session().client(
        "s3", endpoint_url=state["endpoint_url"], region_name="us-east-1",
        aws_access_key_id=state["access_key"], aws_secret_access_key=state["secret_key"],
    )


def keys(store: ObjectStore) -> list[str]:
    async def go() -> list[str]:
        return [o.key async for o in store.list()]

    return asyncio.run(go())


def tagset(state: dict[str, Any], bucket: str, key: str) -> dict[str, str]:
    got = client(state).get_object_tagging(Bucket=bucket, Key=key)["TagSet"]
    return {t["Key"]: t["Value"] for t in got}


def test_project_push_tags_every_object(moto_store: Any, moto_env: dict[str, Any], project: Path) -> None:
    push_project(moto_store, project, "ribosome-2026")
    stored = keys(moto_store)
    assert any(k.startswith("cas/b/") for k in stored) and any(k.startswith("cas/p/") for k in stored)
    assert any(k.startswith("cas/i/") for k in stored) and any(k.startswith("manifests/") for k in stored)
    for key in stored:  # read back with plain boto3, not through the store
        got = tagset(moto_env, moto_store.bucket, f"lab1/{key}")
        assert set(got) == FOUR, key
        assert got[tags.PROJECT] == "ribosome-2026"
        assert got[tags.JOB] == "-" and got[tags.EXPIRES] == "never" and got[tags.OWNER] not in ("", "-")
    assert moto_store.get_tags(stored[0]) == tagset(moto_env, moto_store.bucket, f"lab1/{stored[0]}")


def test_job_staging_tags_say_job_and_expiry(moto_store: Any, moto_env: dict[str, Any], tmp_path: Path) -> None:
    proj = tmp_path / "EMPIAR 10061 (rerun)"
    write(proj / "Import" / "job001" / "movies.star", b"data_\n")
    write(proj / "Movies" / "big.tiff", b"M" * 3_000_000)  # a blob, uploaded multipart-free
    stage_out(moto_store, proj, [Path("Import"), Path("Movies")], name="jobs/Class3D-job012-in")
    want_expiry = tags.expires_in(tags.JOB_DAYS)
    for key in keys(moto_store):
        got = moto_store.get_tags(key)
        assert got[tags.JOB] == "Class3D-job012-in" and got[tags.PROJECT] == "EMPIAR 10061 _rerun_", key  # S3-safe
        assert got[tags.EXPIRES] == want_expiry


def test_multipart_upload_is_tagged(moto_store: Any, tmp_path: Path) -> None:
    root = tmp_path / "d"
    write(root / "huge.mrc", b"\1" * (20 << 20))  # > 8 MiB: multipart
    push(moto_store, root, name="d", tags=tags.make("P", "", "never", who="alice"))
    blob = next(k for k in keys(moto_store) if k.startswith("cas/b/"))
    assert moto_store.get_tags(blob) == {tags.OWNER: "alice", tags.PROJECT: "P", tags.JOB: "-",
                                         tags.EXPIRES: "never"}


def test_set_tags_replaces_the_set(moto_store: Any) -> None:
    asyncio.run(moto_store.put("x", b"1", tags={"a": "1"}))
    moto_store.set_tags("x", {"a": "1", "cryocloud:tier": "P"})
    assert moto_store.get_tags("x") == {"a": "1", "cryocloud:tier": "P"}


def test_lifecycle_xml_roundtrip_on_a_server_that_implements_it(moto_store: Any, moto_env: dict[str, Any]) -> None:
    """The rules cryocloud writes are accepted by an S3 lifecycle implementation and read back the same."""
    c = client(moto_env)
    # another tool's rule in the same bucket must survive cryocloud's edits
    foreign = {"ID": "keep-me", "Status": "Enabled", "Filter": {"Prefix": "logs/"}, "Expiration": {"Days": 3}}
    c.put_bucket_lifecycle_configuration(Bucket=moto_store.bucket, LifecycleConfiguration={"Rules": [foreign]})
    moto_store.set_lifecycle("cas/", {"glacier": 30})
    moto_store.set_lifecycle("cas/", {"deep_archive": 90}, {tags.TIER: "P1"})
    assert moto_store.get_lifecycle() == {"cas/": {"glacier": 30}, "cas/?cryocloud:tier=P1": {"deep_archive": 90}}
    rules = {r["ID"]: r for r in c.get_bucket_lifecycle_configuration(Bucket=moto_store.bucket)["Rules"]}
    assert rules["keep-me"]["Filter"] == {"Prefix": "logs/"}
    tagged = rules["cryocloud:lab1/cas/?cryocloud:tier=P1"]
    assert tagged["Filter"] == {"And": {"Prefix": "lab1/cas/", "Tags": [{"Key": "cryocloud:tier", "Value": "P1"}]}}
    assert tagged["Transitions"] == [{"Days": 90, "StorageClass": "DEEP_ARCHIVE"}]
    moto_store.set_lifecycle("cas/", {})
    moto_store.set_lifecycle("cas/", {}, {tags.TIER: "P1"})
    assert moto_store.get_lifecycle() == {}
    left = c.get_bucket_lifecycle_configuration(Bucket=moto_store.bucket)["Rules"]
    assert [r["ID"] for r in left] == ["keep-me"]


def test_local_store_ignores_tags_and_records_rules(tmp_path: Path, project: Path) -> None:
    store = LocalFolderStore(tmp_path / "store")
    push_project(store, project, "P")
    assert store.get_tags(keys(store)[0]) == {}
    store.set_lifecycle("cas/", {"glacier": 5}, {tags.TIER: "P"})
    assert store.get_lifecycle() == {"cas/?cryocloud:tier=P": {"glacier": 5}}
    assert not list((tmp_path / "store").rglob("*.tags*"))  # no sidecars

"""Storage tiers per project: reference counts decide which objects a project's rule may move (DESIGN:
tiering a shared object needs a reference count; only files and packs are tiered)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from cryocloud.cli.storage_cmds import project as project_cli
from cryocloud.cli.storage_cmds import storage as storage_cli
from cryocloud.errors import CryocloudError
from cryocloud.storage import tiers
from cryocloud.storage.base import ObjectStore
from cryocloud.storage.localfs import LocalFolderStore
from cryocloud.storage.manifest import blob_key
from cryocloud.storage.project import push_project
from cryocloud.storage.staging import stage_out
from cryocloud.storage.tags import TIER

from .conftest import write

SHARED = os.urandom(3_000_000)


def two_projects(tmp_path: Path, store: ObjectStore) -> dict[str, str]:
    """P1 and P2 share one movie; a job stages another of P1's movies. Returns name -> blob key."""
    p1, p2 = tmp_path / "P1", tmp_path / "P2"
    data = {"only1": os.urandom(3_000_000), "only2": os.urandom(3_000_001), "job": os.urandom(3_000_002)}
    write(p1 / "Movies" / "a.tiff", data["only1"])
    write(p1 / "Movies" / "shared.tiff", SHARED)
    write(p1 / "Movies" / "staged.tiff", data["job"])
    for i in range(5):
        write(p1 / "CtfFind" / "job003" / f"m{i}.star", f"P1 {i}\n".encode())
    write(p2 / "Movies" / "b.tiff", data["only2"])
    write(p2 / "Movies" / "shared.tiff", SHARED)
    push_project(store, p1, "P1")
    push_project(store, p2, "P2")
    stage_out(store, p1, [Path("Movies/staged.tiff")], name="jobs/j1-in")
    import hashlib

    keys = {k: blob_key(hashlib.sha256(v).hexdigest()) for k, v in data.items()}
    keys["shared"] = blob_key(hashlib.sha256(SHARED).hexdigest())
    return keys


def rows(store: ObjectStore, rules: dict[str, tiers.Rule]) -> dict[str, tiers.ProjectTier]:
    return tiers.by_project(asyncio.run(tiers.placements(store, rules)), rules)


def keys_of(places: list[tiers.Placement]) -> set[str]:
    return {p.key for p in places}


def test_reference_counts_decide_what_moves(tmp_path: Path) -> None:
    store = LocalFolderStore(tmp_path / "store")
    k = two_projects(tmp_path, store)
    g30 = tiers.Rule("P1", "GLACIER", 30)
    r = rows(store, {"P1": g30})["P1"]
    pack = {p.key for p in r.moves if p.key.startswith("cas/p/")}
    assert keys_of(r.moves) == {k["only1"], *pack} and len(pack) == 1  # its own movie and its own pack
    assert keys_of(r.held) == {k["shared"], k["job"]}  # P2 has no rule; a job needs the staged movie now
    assert not any(p.key.startswith(("cas/i/", "manifests/")) for p in r.moves)  # never indexes, manifests
    assert r.saving_usd_month > 0 and r.transition_usd == pytest.approx(2 * 0.03 / 1000)
    # P2 asks for a warmer class: the shared movie follows P2's rule (the more available one)
    both = rows(store, {"P1": g30, "P2": tiers.Rule("P2", "STANDARD_IA", 60)})
    assert keys_of(both["P1"].elsewhere) == {k["shared"]} and keys_of(both["P2"].moves) == {k["only2"], k["shared"]}
    # P2 asks for a colder one: P1's Glacier (more available than Deep Archive) governs the shared movie
    colder = rows(store, {"P1": g30, "P2": tiers.Rule("P2", "DEEP_ARCHIVE", 10)})
    assert k["shared"] in keys_of(colder["P1"].moves) and keys_of(colder["P2"].elsewhere) == {k["shared"]}


def test_local_store_records_the_rule(tmp_path: Path) -> None:
    store = LocalFolderStore(tmp_path / "store")
    two_projects(tmp_path, store)
    url = str(tmp_path / "store")
    dry = CliRunner().invoke(project_cli, ["tier", "P1", "--after", "30", "--to", "glacier", "--store", url])
    assert dry.exit_code == 0, dry.output
    assert "P1: would move 2 objects" in dry.output and "saves" in dry.output and "dry run" in dry.output
    assert "2 shared objects" in dry.output and "(job staging), P2" in dry.output
    assert store.get_lifecycle() == {}  # a dry run writes nothing
    done = CliRunner().invoke(project_cli, ["tier", "P1", "--after", "30", "--to", "glacier", "--store", url, "--yes"])
    assert done.exit_code == 0, done.output
    assert tiers.rules(store) == {"P1": tiers.Rule("P1", "GLACIER", 30)}


@pytest.mark.integration
def test_tier_on_a_server_with_lifecycle_and_tags(moto_store: Any, tmp_path: Path) -> None:
    k = two_projects(tmp_path, moto_store)
    url = f"s3://{moto_store.bucket}/lab1"
    run = CliRunner().invoke
    dry = run(project_cli, ["tier", "P1", "--after", "30", "--to", "glacier", "--store", url])
    assert dry.exit_code == 0, dry.output
    assert "would move 2 objects" in dry.output and moto_store.get_lifecycle() == {}
    assert all(TIER not in moto_store.get_tags(key) for key in k.values())
    done = run(project_cli, ["tier", "P1", "--after", "30", "--to", "glacier", "--store", url, "--yes"])
    assert done.exit_code == 0, done.output
    assert "2 objects re-tagged" in done.output
    assert moto_store.get_lifecycle() == {"cas/?cryocloud:tier=P1": {"glacier": 30}}
    tagged = _tagged(moto_store)
    assert k["only1"] in tagged and len(tagged) == 2  # its movie and its pack, nothing shared
    assert moto_store.get_tags(k["only1"])["cryocloud:project"] == "P1"  # the other tags are kept
    # P2 gets a warmer rule: the shared movie is re-tagged to follow it
    assert run(project_cli, ["tier", "P2", "--after", "60", "--to", "ia", "--store", url, "--yes"]).exit_code == 0
    assert moto_store.get_tags(k["shared"])[TIER] == "P2" and moto_store.get_tags(k["only2"])[TIER] == "P2"
    # the job's manifest goes (cleanup): its movie, now referenced by P1 only, joins P1's rule on the next run
    asyncio.run(moto_store.delete(["manifests/jobs/j1-in.json"]))
    assert "1 objects re-tagged" in run(project_cli, ["tier", "--store", url, "--yes"]).output
    assert moto_store.get_tags(k["job"])[TIER] == "P1"
    # off: rule gone, its tags gone; the shared movie stays STANDARD now (P1, which shares it, has no rule)
    off = run(project_cli, ["tier", "P1", "--off", "--store", url, "--yes"])
    assert off.exit_code == 0, off.output
    assert set(moto_store.get_lifecycle()) == {"cas/?cryocloud:tier=P2"}
    assert _tagged(moto_store) == {k["only2"]}


def _tagged(store: Any) -> set[str]:
    async def go() -> list[str]:
        return [o.key async for o in store.list("cas/")]

    return {key for key in asyncio.run(go()) if TIER in store.get_tags(key)}


@pytest.mark.integration
def test_store_wide_rule_and_missing_project_are_refused(moto_store: Any, tmp_path: Path) -> None:
    two_projects(tmp_path, moto_store)
    url = f"s3://{moto_store.bucket}/lab1"
    assert CliRunner().invoke(storage_cli, ["tier", "--after", "90", "--store", url]).exit_code == 0
    r = CliRunner().invoke(project_cli, ["tier", "P1", "--after", "30", "--store", url])
    assert isinstance(r.exception, CryocloudError) and "store-wide" in r.exception.message
    r = CliRunner().invoke(project_cli, ["tier", "nope", "--after", "30", "--store", url])
    assert isinstance(r.exception, CryocloudError) and "no project 'nope'" in r.exception.message
    r = CliRunner().invoke(project_cli, ["tier", "P1", "--after", "10", "--to", "ia", "--store", url])
    assert r.exit_code == 2 and "30 days" in r.output


@pytest.mark.integration
def test_seaweedfs_says_it_has_no_lifecycle(s3_store: Any, tmp_path: Path) -> None:
    two_projects(tmp_path, s3_store)
    url = f"s3://{s3_store.bucket}/lab1"
    r = CliRunner().invoke(project_cli, ["tier", "P1", "--after", "30", "--store", url, "--yes"])
    assert isinstance(r.exception, CryocloudError) and "does not implement lifecycle" in r.exception.message


@pytest.mark.integration
def test_pull_of_an_archived_object_says_so(moto_store: Any, moto_env: dict[str, Any], tmp_path: Path) -> None:
    """What a Glacier transition does to a later pull: a clear error naming the class, not 'access refused'."""
    import boto3

    from cryocloud.storage.pull import pull

    k = two_projects(tmp_path, moto_store)
    c = boto3.session.Session().client("s3", endpoint_url=moto_env["endpoint_url"], region_name="us-east-1")
    full = f"lab1/{k['only1']}"
    c.copy_object(Bucket=moto_store.bucket, Key=full, CopySource={"Bucket": moto_store.bucket, "Key": full},
                  StorageClass="GLACIER")  # what the lifecycle rule does after N days
    with pytest.raises(CryocloudError, match="archived in GLACIER") as e:
        pull(moto_store, "projects/P1/" + _version(moto_store, "P1"), tmp_path / "back", only=["Movies/a.tiff"])
    assert "restore-object" in e.value.hint and full in e.value.hint


def _version(store: Any, name: str) -> str:
    from cryocloud.storage.project import list_projects

    return list_projects(store, name)[name][-1]


@pytest.mark.integration
def test_new_snapshot_of_a_tiered_project_is_tagged_at_upload(moto_store: Any, tmp_path: Path) -> None:
    two_projects(tmp_path, moto_store)
    url = f"s3://{moto_store.bucket}/lab1"
    assert CliRunner().invoke(project_cli, ["tier", "P1", "--after", "30", "--store", url, "--yes"]).exit_code == 0
    before = set(_all(moto_store))
    write(tmp_path / "P1" / "Movies" / "new.tiff", os.urandom(2_500_000))
    write(tmp_path / "P1" / "CtfFind" / "job003" / "new.star", b"new\n")
    push_project(moto_store, tmp_path / "P1", "P1")
    new = set(_all(moto_store)) - before
    data = {key for key in new if key.startswith(("cas/b/", "cas/p/"))}
    assert len(data) == 2 and all(moto_store.get_tags(key)[TIER] == "P1" for key in data)
    assert all(TIER not in moto_store.get_tags(key) for key in new - data)  # index, manifest: never tiered
    assert "0 objects re-tagged" in CliRunner().invoke(project_cli, ["tier", "--store", url, "--yes"]).output


def _all(store: Any) -> list[str]:
    async def go() -> list[str]:
        return [o.key async for o in store.list()]

    return asyncio.run(go())


@pytest.mark.integration
def test_a_push_that_shares_a_tiered_object_takes_it_out_of_the_rule(moto_store: Any, tmp_path: Path) -> None:
    """Until references are counted again, an object a job or another project starts using stays STANDARD."""
    k = two_projects(tmp_path, moto_store)
    url = f"s3://{moto_store.bucket}/lab1"
    assert CliRunner().invoke(project_cli, ["tier", "P1", "--after", "30", "--store", url, "--yes"]).exit_code == 0
    assert moto_store.get_tags(k["only1"])[TIER] == "P1"
    # a job stages P1's movie: the job needs it readable, so the rule no longer moves it
    stage_out(moto_store, tmp_path / "P1", [Path("Movies/a.tiff")], name="jobs/j2-in")
    assert TIER not in moto_store.get_tags(k["only1"])
    assert moto_store.get_tags(k["only1"])["cryocloud:project"] == "P1"  # the other tags are kept
    # the job's data is cleaned up: the next count puts it back under P1's rule
    asyncio.run(moto_store.delete(["manifests/jobs/j2-in.json"]))
    CliRunner().invoke(project_cli, ["tier", "--store", url, "--yes"])
    assert moto_store.get_tags(k["only1"])[TIER] == "P1"
    # another project (no rule) snapshots the same bytes: out of P1's rule again
    write(tmp_path / "P3" / "copy.tiff", (tmp_path / "P1" / "Movies" / "a.tiff").read_bytes())
    push_project(moto_store, tmp_path / "P3", "P3")
    assert TIER not in moto_store.get_tags(k["only1"])
    # P1's own next snapshot leaves its objects under its rule (nothing new is shared)
    push_project(moto_store, tmp_path / "P1", "P1")
    assert moto_store.get_tags(k["only1"]).get(TIER) is None  # still shared with P3: stays out
    pack = next(key for key in _all(moto_store) if key.startswith("cas/p/"))
    assert moto_store.get_tags(pack)[TIER] == "P1"

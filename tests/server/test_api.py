"""The REST API through FastAPI's test client: tokens, scope, submit, status, logs, cancel, plan, costs, and
every kind of bad input answered with the right status and a JSON hint, nothing created."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from cryocloud.errors import CryocloudError
from cryocloud.ledger import Ledger
from cryocloud.server.app import MAX_BODY, create_app
from cryocloud.settings import load_settings
from server.support import People, auth, facility
from spine.helpers import make_job, markers, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def projects(tmp_path: Path) -> Path:
    root = tmp_path / "projects"
    (root / "p1").mkdir(parents=True)
    return root


@pytest.fixture
def people(cryocloud_home: Path, projects: Path) -> People:
    return facility(cryocloud_home, [projects])


@pytest.fixture
def client(people: People) -> Iterator[TestClient]:
    with TestClient(create_app(load_settings()), client=("10.1.2.3", 5000)) as c:
        yield c


def ended(client: TestClient, token: str, job_id: int) -> dict:  # type: ignore[type-arg]
    def done() -> bool:
        return client.get(f"/api/v1/jobs/{job_id}", headers=auth(token)).json()["state"] not in (
            "queued", "starting", "running")
    assert wait_for(done, 300)
    got: dict = client.get(f"/api/v1/jobs/{job_id}", headers=auth(token)).json()  # type: ignore[type-arg]
    return got


def n_jobs() -> int:
    ledger = Ledger(load_settings().ledger_path)
    try:
        return len(ledger.jobs())
    finally:
        ledger.close()


def test_openapi_document_lists_the_calls(client: TestClient, people: People) -> None:
    assert client.get("/api/v1/openapi.json").status_code == 401
    doc = client.get("/api/v1/openapi.json", headers=auth(people.alice)).json()
    assert {"/api/v1/jobs", "/api/v1/jobs/{job_id}", "/api/v1/jobs/{job_id}/logs", "/api/v1/jobs/{job_id}/cancel",
            "/api/v1/plan", "/api/v1/costs", "/api/v1/storage"} <= set(doc["paths"])


def test_no_token_a_wrong_one_and_a_revoked_one_are_refused_and_logged_without_the_token(
        client: TestClient, people: People, caplog: pytest.LogCaptureFixture) -> None:
    from cryocloud.app.facility import list_tokens, revoke_token

    caplog.set_level(logging.WARNING, logger="cryocloud.server")
    r = client.get("/api/v1/jobs")
    assert r.status_code == 401 and "Bearer" in r.json()["hint"] and r.headers["www-authenticate"] == "Bearer"
    assert client.get("/api/v1/jobs", headers=auth("cct_wrong")).status_code == 401
    assert client.get("/api/v1/me", headers=auth(people.alice)).json() == {"name": "alice", "role": "user"}
    first = list_tokens(load_settings(), "alice")[0]
    revoke_token(load_settings(), first.id)
    r = client.get("/api/v1/me", headers=auth(people.alice))
    assert r.status_code == 401 and "revoked" in r.json()["message"]
    assert client.get("/api/v1/me?token=" + people.bob).status_code == 401  # never from a URL
    logged = caplog.text
    assert "refused GET /api/v1/jobs from 10.1.2.3" in logged
    assert people.alice not in logged and "cct_wrong" not in logged and people.bob not in logged


def test_failed_logins_are_rate_limited_per_address(client: TestClient, people: People) -> None:
    for _ in range(5):
        assert client.get("/api/v1/me", headers=auth("cct_guess")).status_code == 401
    r = client.get("/api/v1/me", headers=auth(people.alice))  # even a good token, until the window passes
    assert r.status_code == 429 and int(r.headers["retry-after"]) > 0 and "wait" in r.json()["hint"]
    with TestClient(client.app, client=("10.9.9.9", 5000)) as other:  # another address is not held back
        assert other.get("/api/v1/me", headers=auth(people.alice)).status_code == 200


def test_the_ledger_keeps_only_a_hash_of_each_token(people: People, cryocloud_home: Path) -> None:
    raw = b"".join(p.read_bytes() for p in cryocloud_home.glob("ledger.sqlite*"))
    assert people.alice.encode() not in raw and people.boss.encode() not in raw


def test_submit_status_logs_costs_and_scope(client: TestClient, people: People, projects: Path) -> None:
    project = projects / "p1"
    script = make_job(project, "External/job001/", ["echo hello from the api"])
    r = client.post("/api/v1/jobs", headers=auth(people.alice), json={"script": str(script), "cwd": str(project)})
    assert r.status_code == 201, r.text
    job_id = r.json()["id"]
    got = ended(client, people.alice, job_id)
    assert got["state"] == "succeeded" and got["user"] == "alice" and got["cost_usd"] >= 0
    assert markers(project / "External/job001") == ["RELION_JOB_EXIT_SUCCESS"]
    logs = client.get(f"/api/v1/jobs/{job_id}/logs", headers=auth(people.alice)).json()
    assert "hello from the api" in logs["run.out"]
    # a job as data, for bob
    r = client.post("/api/v1/jobs", headers=auth(people.bob), json={
        "project_dir": str(project), "job_dir": "External/job002", "commands": ["echo bob was here"]})
    assert r.status_code == 201, r.text
    bob_job = r.json()["id"]
    assert ended(client, people.bob, bob_job)["state"] == "succeeded"
    # scope: each sees their own; another's id is "not found"; the manager sees both
    assert [j["id"] for j in client.get("/api/v1/jobs", headers=auth(people.alice)).json()] == [job_id]
    r = client.get(f"/api/v1/jobs/{bob_job}", headers=auth(people.alice))
    assert r.status_code == 404 and r.json()["hint"]
    assert client.post(f"/api/v1/jobs/{bob_job}/cancel", headers=auth(people.alice)).status_code == 404
    assert client.get("/api/v1/jobs?user=bob", headers=auth(people.alice)).status_code == 400
    assert {j["id"] for j in client.get("/api/v1/jobs", headers=auth(people.boss)).json()} == {job_id, bob_job}
    per_user = client.get("/api/v1/costs?by=user", headers=auth(people.boss)).json()
    assert {r["user"] for r in per_user} == {"alice", "bob"}
    assert [r["user"] for r in client.get("/api/v1/costs?by=user", headers=auth(people.bob)).json()] == ["bob"]


def test_cancel_stops_a_running_job(client: TestClient, people: People, projects: Path) -> None:
    project = projects / "p1"
    script = make_job(project, "External/job001/", ["sleep 300"])
    job_id = client.post("/api/v1/jobs", headers=auth(people.alice),
                         json={"script": str(script), "cwd": str(project)}).json()["id"]
    assert client.post(f"/api/v1/jobs/{job_id}/cancel", headers=auth(people.alice)).status_code == 200
    assert ended(client, people.alice, job_id)["state"] == "aborted"
    assert markers(project / "External/job001") == ["RELION_JOB_EXIT_ABORTED"]


def test_paths_outside_the_roots_and_symlinks_that_leave_them_are_refused(
        client: TestClient, people: People, projects: Path, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere"
    script = make_job(outside, "External/job001/", ["echo no"])
    r = client.post("/api/v1/jobs", headers=auth(people.alice), json={"script": str(script), "cwd": str(outside)})
    assert r.status_code == 403 and "outside" in r.json()["message"] and r.json()["hint"]
    (projects / "p1" / "escape").symlink_to(outside)
    r = client.post("/api/v1/jobs", headers=auth(people.alice), json={
        "script": str(projects / "p1/escape/External/job001/run_submit.script"), "cwd": str(projects / "p1")})
    assert r.status_code == 403
    r = client.post("/api/v1/jobs", headers=auth(people.alice), json={
        "project_dir": str(projects / "p1"), "job_dir": "../../elsewhere/x", "commands": ["echo no"]})
    assert r.status_code == 403
    assert n_jobs() == 0 and not (outside / "External/job001/run.err").exists()
    assert not (outside / "x").exists()


def test_bad_bodies_are_refused_with_json(client: TestClient, people: People) -> None:
    h = {**auth(people.alice), "Content-Type": "application/json"}
    r = client.post("/api/v1/jobs", headers=h, content=b"{not json")
    assert r.status_code == 422 and "malformed" in r.json()["message"] and r.json()["hint"]
    r = client.post("/api/v1/jobs", headers=h, content=b"[" + b" " * (MAX_BODY + 10) + b"]")
    assert r.status_code == 413 and r.json()["hint"]
    r = client.post("/api/v1/jobs", headers=auth(people.alice), json={"project_dir": "/x"})
    assert r.status_code in (400, 403) and r.json()["hint"]
    r = client.post("/api/v1/jobs", headers=auth(people.alice), json={"script": "/x", "env": ["PATH"]})
    assert r.status_code == 400 and "env" in r.json()["message"]
    r = client.get("/api/v1/jobs?state=nope", headers=auth(people.alice))
    assert r.status_code == 400 and "queued" in r.json()["hint"]
    assert n_jobs() == 0


def test_unknown_profile_is_refused_with_the_clis_hint(client: TestClient, people: People, projects: Path) -> None:
    r = client.post("/api/v1/jobs", headers=auth(people.alice), json={
        "project_dir": str(projects / "p1"), "job_dir": "External/job009", "commands": ["echo x"],
        "profile": "nosuchprofile"})
    assert r.status_code == 400 and "nosuchprofile" in r.json()["message"], r.text
    assert n_jobs() == 0 and not (projects / "p1" / "External").exists()
    body = {"project_dir": str(projects / "p2"), "job_dir": "External/job001", "commands": ["echo x"]}
    r = client.post("/api/v1/jobs", headers=auth(people.alice), json=body)  # no such project folder
    assert r.status_code == 400 and not (projects / "p2").exists()


def test_plan_answers_as_the_cli_does(client: TestClient, people: People) -> None:
    r = client.get("/api/v1/plan?job_type=Class2D&particles=100000&box=200&classes=50&iterations=25",
                   headers=auth(people.alice))
    assert r.status_code == 200, r.text
    assert r.json()["options"] and r.json()["local"]["backend"] == "local"
    r = client.get("/api/v1/plan?job_type=Nonsense", headers=auth(people.alice))
    assert r.status_code == 400 and r.json()["hint"]


def test_storage_use_of_the_default_store_per_project(client: TestClient, people: People, projects: Path) -> None:
    from cryocloud.storage.project import push_project
    from cryocloud.storage.stores import open_store

    r = client.get("/api/v1/storage", headers=auth(people.alice))
    assert r.status_code == 200 and r.json()["bytes"] == 0 and r.json()["projects"] == []
    (projects / "p1" / "Class2D").mkdir()
    (projects / "p1" / "Class2D" / "run.star").write_bytes(b"x" * 5000)
    push_project(open_store("", load_settings()), projects / "p1", "betagal")
    got = client.get("/api/v1/storage", headers=auth(people.alice)).json()
    assert got["bytes"] >= 5000 and [p["project"] for p in got["projects"]] == ["betagal"]
    assert got["projects"][0]["bytes"] >= 5000 and got["projects"][0]["usd_per_month"] > 0


def test_users_and_tokens_from_the_cli(cryocloud_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from cryocloud.cli.main import main

    assert main(["users", "add", "carol", "--role", "manager"]) == 0
    assert main(["users", "add", "carol"]) == 2  # exists already
    assert main(["users", "add", "Bad Name"]) == 2
    capsys.readouterr()
    assert main(["tokens", "create", "carol"]) == 0
    out = capsys.readouterr()
    token = out.out.strip()
    assert token.startswith("cct_") and "tokens revoke 1" in out.err
    assert main(["tokens", "list"]) == 0
    listed = capsys.readouterr().out
    assert "carol" in listed and "live" in listed and token not in listed
    assert main(["tokens", "revoke", "1"]) == 0
    assert main(["tokens", "create", "nobody"]) == 2
    assert os.stat(cryocloud_home / "ledger.sqlite").st_mode & 0o077 == 0


def test_a_users_budget_applies_to_their_api_jobs(cryocloud_home: Path, projects: Path) -> None:
    people = facility(cryocloud_home, [projects], extra='[budgets]\n"user:alice" = 0.001\n')
    ledger = Ledger(load_settings().ledger_path)  # alice has spent 0.01 USD already
    job = ledger.add_job(name="x/", client="command", job_type="command", project_dir=str(projects / "p1"),
                         job_dir="x/", profile="local", backend="local", user="alice", project="p1",
                         state="succeeded", submitted_at=1.0, spec="{}", started_at=1.0, ended_at=2.0)
    ledger.add_attempt(job, backend="local", started_at=1.0, ended_at=2.0, state="succeeded", compute_usd=0.01)
    ledger.close()
    body = {"project_dir": str(projects / "p1"), "job_dir": "External/job001", "commands": ["echo x"]}
    with TestClient(create_app(load_settings())) as c:
        r = c.post("/api/v1/jobs", headers=auth(people.alice), json=body)
        assert r.status_code == 400 and "budget user:alice" in r.json()["message"], r.text
        r = c.post("/api/v1/jobs", headers=auth(people.bob), json=body)  # bob's budget is not alice's
        assert r.status_code == 201, r.text
        assert ended(c, people.bob, r.json()["id"])["state"] == "succeeded"


def test_a_users_slurm_account_goes_on_their_slurm_jobs(cryocloud_home: Path, projects: Path) -> None:
    from cryocloud.accounts import User
    from cryocloud.app.facility import add_user, as_user
    from cryocloud.backends.slurm_text import SlurmOptions, sbatch_argv
    from cryocloud.jobs.spec import JobSpec

    facility(cryocloud_home, [projects], extra='[profiles.hpc]\nbackend = "slurm"\npartition = "cpu"\n'
             'account = "facility"\n[profiles.ws]\nbackend = "local"\n')
    settings = load_settings()
    carol = add_user(settings, "carol", "user", slurm_account="lab-a")
    assert as_user(settings, carol).profiles["hpc"].options["account"] == "lab-a"
    assert "account" not in as_user(settings, carol).profiles["ws"].options  # a backend without accounts
    assert as_user(settings, User("dave", "user")).profiles["hpc"].options["account"] == "facility"
    spec = JobSpec(name="x/", client="command", job_type="command", project_dir=str(projects / "p1"),
                   job_dir="x/", commands=["true"])
    opts = SlurmOptions.from_profile("hpc", as_user(settings, carol).profiles["hpc"].options)
    assert "--account=lab-a" in sbatch_argv(spec, opts, batch_script="/b", control_dir="/c", exports=[], job_name="x")
    with pytest.raises(CryocloudError, match="Slurm account"):
        add_user(settings, "erin", "user", slurm_account="bad account")


def test_instances_a_manager_sees_all_a_user_those_of_their_jobs(cryocloud_home: Path, projects: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """GET /api/v1/instances against moto in-process (EC2): alice's job's instance, with its cost so far, is seen by
    alice and by the manager, not by bob; an untagged instance by nobody."""
    import json
    import time

    import moto  # the dev extra's: missing, the test fails (never a skip under CI)

    from cryocloud.storage import tags as tagging

    for var in [v for v in os.environ if v.startswith("AWS_")]:
        monkeypatch.delenv(var)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    people = facility(cryocloud_home, [projects], '\n[profiles.aws]\nbackend = "aws"\nregion = "us-east-1"\n')
    with moto.mock_aws():
        import boto3

        ec2 = boto3.client("ec2", region_name="us-east-1")
        settings = load_settings()
        ledger = Ledger(settings.ledger_path)
        job = ledger.add_job(name="Class2D/job002/", client="relion", job_type="Class2D",
                             project_dir=str(projects / "p1"), job_dir="Class2D/job002/", profile="aws",
                             backend="aws", user="alice", project="p1", state="running", spec="{}",
                             submitted_at=time.time(), control_dir=str(projects / "p1"))
        tags = tagging.make(project="p1", job=f"{job} Class2D/job002/", expires=str(int(time.time() + 3600)),
                            who="alice")
        tags[tagging.LEDGER] = tagging.ledger_id(settings.ledger_path)
        run = ec2.run_instances(ImageId="ami-12c6146b", MinCount=1, MaxCount=1, InstanceType="c7i.large",
                                TagSpecifications=[{"ResourceType": "instance", "Tags": [
                                    {"Key": k, "Value": v} for k, v in tags.items()]}])
        iid = run["Instances"][0]["InstanceId"]
        ledger.add_attempt(job, backend="aws", handle=json.dumps({"instance_id": iid}), usd_per_hour=0.5,
                           started_at=time.time(), state="running")
        ledger.close()
        ec2.run_instances(ImageId="ami-12c6146b", MinCount=1, MaxCount=1, InstanceType="c7i.large")  # not ours
        with TestClient(create_app(settings), client=("10.1.2.3", 5000)) as client:
            seen = {who: client.get("/api/v1/instances", headers=auth(token)).json()
                    for who, token in (("alice", people.alice), ("bob", people.bob), ("boss", people.boss))}
    assert [(r["id"], r["job_id"], r["owner"]) for r in seen["alice"]["instances"]] == [(iid, job, "alice")]
    assert seen["alice"]["instances"][0]["usd_per_hour"] > 0 and seen["alice"]["instances"][0]["cost_so_far_usd"] > 0
    assert [r["id"] for r in seen["boss"]["instances"]] == [iid]
    assert seen["bob"]["instances"] == []

"""A real `cryocloud serve` process: the API over HTTP, the monitor in-process (the one writer), RELION's queue
command handing jobs to it, and the refusal RELION shows when it is down."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from cryocloud.errors import CryocloudError
from cryocloud.monitor.loop import monitor_pid
from cryocloud.server.run import check_bind
from cryocloud.settings import load_settings
from server.support import Served, auth, facility, qsub, submitter_config
from spine.helpers import in_dir, make_job, markers, wait_for

pytestmark = pytest.mark.integration


def get(url: str, token: str) -> dict:  # type: ignore[type-arg]
    with urllib.request.urlopen(urllib.request.Request(url, headers=auth(token)), timeout=30) as r:
        got: dict = json.loads(r.read())  # type: ignore[type-arg]
        return got


def test_another_address_needs_tls_or_insecure_bind() -> None:
    check_bind("127.0.0.1", tls=False, insecure_bind=False)
    check_bind("::1", tls=False, insecure_bind=False)
    with pytest.raises(CryocloudError, match="without TLS") as e:
        check_bind("0.0.0.0", tls=False, insecure_bind=False)
    assert "--insecure-bind" in e.value.hint
    check_bind("0.0.0.0", tls=True, insecure_bind=False)
    check_bind("192.0.2.1", tls=False, insecure_bind=True)


def test_serve_refuses_a_public_address_before_listening(cryocloud_home: Path) -> None:
    from cryocloud.cli.main import main

    assert main(["serve", "--host", "0.0.0.0", "--port", "0"]) == 2
    assert monitor_pid(load_settings()) is None


def test_qsub_hands_relions_job_to_the_server_and_is_refused_when_it_is_down(
        cryocloud_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "projects"
    project = root / "p1"
    project.mkdir(parents=True)
    people = facility(cryocloud_home, [root])
    served = Served(tmp_path / "serve.log")
    try:
        settings = load_settings()
        assert monitor_pid(settings) == served.proc.pid  # the server holds the monitor's lock: one writer
        # the submitter's side: [server] url in its config and a token in its environment
        monkeypatch.setenv("CRYOCLOUD_CONFIG", str(submitter_config(tmp_path, served.url)))
        monkeypatch.setenv("CRYOCLOUD_TOKEN", people.alice)
        make_job(project, "External/job001/", ["echo handed over"])
        done = qsub(project, "External/job001/")
        assert done.returncode == 0, done.stderr
        job_id = int(done.stdout.split()[2])
        url = f"{served.url}/api/v1/jobs/{job_id}"
        assert wait_for(lambda: get(url, people.alice)["state"] == "succeeded", 300)
        assert get(url, people.alice)["user"] == "alice"
        assert markers(project / "External/job001") == ["RELION_JOB_EXIT_SUCCESS"]
        # the CLI of a submitter in facility mode asks the server, never the ledger
        cli = str(Path(sys.executable).parent / "cryocloud")
        with in_dir(project):
            shown = subprocess.run([cli, "status", "External/job001/", "--json"], capture_output=True, text=True,
                                   timeout=60, check=True).stdout
            assert json.loads(shown)[0]["id"] == job_id and json.loads(shown)[0]["user"] == "alice"
            listed = subprocess.run([cli, "status"], capture_output=True, text=True, timeout=60, check=True).stdout
            assert "External/job001/" in listed and "succeeded" in listed
            spent = subprocess.run([cli, "costs", "--by", "user", "--json"], capture_output=True, text=True,
                                   timeout=60, check=True).stdout
            assert [r["user"] for r in json.loads(spent)] == ["alice"]
        make_job(project, "External/job004/", ["sleep 300"])
        with in_dir(project):
            assert qsub(project, "External/job004/").returncode == 0
            stopped = subprocess.run([cli, "cancel", "External/job004/"], capture_output=True, text=True,
                                     timeout=120, check=True).stdout
        assert stopped.endswith("aborted\n"), stopped
        # a wrong token: refused by the server, and RELION is told (run.err + failure marker)
        monkeypatch.setenv("CRYOCLOUD_TOKEN", "cct_wrong")
        make_job(project, "External/job002/", ["echo never"])
        done = qsub(project, "External/job002/")
        assert done.returncode == 2 and "not valid" in done.stderr
        assert markers(project / "External/job002") == ["RELION_JOB_EXIT_FAILURE"]
    finally:
        served.stop()
    assert monitor_pid(load_settings()) is None  # the server's monitor left with it
    logged = served.log.read_text()
    assert "refused POST /api/v1/jobs" in logged and people.alice not in logged and "cct_wrong" not in logged
    monkeypatch.setenv("CRYOCLOUD_TOKEN", people.alice)
    make_job(project, "External/job003/", ["echo never"])
    started = time.monotonic()
    done = qsub(project, "External/job003/")
    assert done.returncode == 2 and "does not answer" in done.stderr and "cryocloud serve" in done.stderr
    assert time.monotonic() - started < 30  # a refusal, never a wait for a server that is not there
    jd = project / "External/job003"
    assert markers(jd) == ["RELION_JOB_EXIT_FAILURE"] and "does not answer" in (jd / "run.err").read_text()
    assert not (cryocloud_home / "run" / "env").exists() or not any((cryocloud_home / "run" / "env").iterdir())

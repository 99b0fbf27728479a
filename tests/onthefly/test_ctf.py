"""CtfFind joins the session's jobs when an estimator is configured: RELION's CtfFind job through cryocloud's
queue after MotionCorr on each batch, and the watcher records each micrograph's CTF resolution. The estimator is a
stand-in (fixtures/standin_ctffind4.py: Debian ships no CTFFIND), so this proves the wiring, not an estimate."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from cryocloud.ledger import Ledger
from cryocloud.session.simulate import Plan, simulate
from cryocloud.settings import load_settings
from relion_support import process_status
from testtools import require_tool

pytestmark = [pytest.mark.integration, pytest.mark.slow]
STANDIN = Path(__file__).parent / "fixtures" / "standin_ctffind4.py"


def test_ctffind_runs_when_an_estimator_is_configured(tmp_path: Path) -> None:
    require_tool("relion_run_ctffind")
    session, project = tmp_path / "session", tmp_path / "project"
    project.mkdir()
    (project / "cryocloud-session.toml").write_text(
        f'pixel_size = 3.0\ndose_per_frame = 0.5\nsettle_seconds = 1\npoll_seconds = 0.3\nctffind_exe = "{STANDIN}"\n'
        "ctf_box = 64\nctf_res_max = 8.0\n")
    simulate(Plan(session, 3, 3600 * 20, size=128, frames=4))
    done = subprocess.run([sys.executable, "-m", "cryocloud", "watch", str(session), "--project", str(project),
                           "--until-idle", "1", "--json"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    final = json.loads(done.stdout.strip().splitlines()[-1])
    assert final["corrected"] == 3 and final["session"]["relion_jobs"]["CtfFind"] == "CtfFind/job003/"
    assert [m["ctf_resolution"] for m in final["recent"]] == [9.0, 9.0, 9.0]
    assert process_status(project)["CtfFind/job003/"] == "succeeded"
    ledger = Ledger(load_settings().ledger_path)
    assert {(j.job_type, j.state) for j in ledger.jobs()} == {("Import", "succeeded"), ("MotionCorr", "succeeded"),
                                                              ("CtfFind", "succeeded")}
    ledger.close()

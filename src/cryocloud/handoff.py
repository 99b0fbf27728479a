"""Hand a submission to the running monitor, which has everything imported and answers in milliseconds.

RELION waits for nothing, but every job pays the submit latency. When the user's monitor runs, `submit`
drops a request file (script, folder, the submitter's environment minus secrets) into
`$CRYOCLOUD_HOME/run/submit/` and waits for the answer; the monitor claims it by renaming it, runs the
same `service.submit_script` a cold submit runs, and writes the answer. With no monitor, or if none
claims the request within CLAIM_WAIT seconds, the caller does the work itself. Same function, same
errors, same files either way.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cryocloud.agent import control
from cryocloud.agent.runner import job_environment
from cryocloud.config import Settings
from cryocloud.errors import CryocloudError

CLAIM_WAIT = 2.0  # s for a live monitor to claim a request before the submitter does the work itself
ANSWER_WAIT = 120.0  # s for the answer once claimed (input discovery of a huge project can take a while)


def request_dir(settings: Settings) -> Path:
    return settings.run_dir / "submit"


def monitor_alive(settings: Settings) -> bool:
    from cryocloud.monitor import _lock

    fd = _lock(settings)
    if fd is None:
        return True
    os.close(fd)
    return False


def hand_off(settings: Settings, script: Path, cwd: Path, env: Mapping[str, str]) -> dict[str, Any] | None:
    """Ask the monitor to submit. None: no monitor took it (the caller submits). Raises what submit raises."""
    if not monitor_alive(settings):
        return None
    folder = request_dir(settings)
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    rid = f"{time.time_ns()}-{os.getpid()}"
    req, taken, answer = folder / f"{rid}.req", folder / f"{rid}.taken", folder / f"{rid}.answer"
    control.write_json(req, {"script": str(script), "cwd": str(cwd), "env": job_environment(env)})
    deadline = time.monotonic() + CLAIM_WAIT
    while req.exists() and time.monotonic() < deadline:
        time.sleep(0.005)
    try:
        req.rename(folder / f"{rid}.withdrawn")  # nobody claimed it: withdraw and do it here
        (folder / f"{rid}.withdrawn").unlink()
        return None
    except FileNotFoundError:
        pass  # claimed
    deadline = time.monotonic() + ANSWER_WAIT
    while time.monotonic() < deadline:
        got = control.read_json(answer)
        if got is not None:
            answer.unlink(missing_ok=True)
            if got.get("ok"):
                return got
            from cryocloud.errors import ConfigError, SubmissionError
            from cryocloud.service import JobFolderBusy, LaunchRefused

            kinds: dict[str, type[CryocloudError]] = {
                "ConfigError": ConfigError, "SubmissionError": SubmissionError, "JobFolderBusy": JobFolderBusy,
                "LaunchRefused": LaunchRefused}
            kind = kinds.get(str(got.get("kind")), CryocloudError)
            raise kind(str(got.get("message")), str(got.get("hint") or ""))
        time.sleep(0.005)
    taken.unlink(missing_ok=True)
    raise CryocloudError("the monitor took the submission but did not answer in time",
                         "check `cryocloud status` before submitting again")


def serve_requests(settings: Settings) -> int:
    """In the monitor: claim and run every pending request. Returns how many were served."""
    folder = request_dir(settings)
    try:
        pending = sorted(p for p in folder.iterdir() if p.suffix == ".req")
    except FileNotFoundError:
        return 0
    served = 0
    for req in pending:
        taken = req.with_suffix(".taken")
        try:
            req.rename(taken)
        except FileNotFoundError:
            continue  # withdrawn by its submitter
        answer = req.with_suffix(".answer")
        data = control.read_json(taken) or {}
        taken.unlink(missing_ok=True)
        control.write_json(answer, _serve(data))
        served += 1
    return served


def _serve(data: dict[str, Any]) -> dict[str, Any]:
    from cryocloud.config import load_settings
    from cryocloud.service import submit_script

    env = {str(k): str(v) for k, v in (data.get("env") or {}).items()}
    try:
        done = submit_script(Path(data["script"]), Path(data["cwd"]), load_settings(env), env)
    except CryocloudError as e:
        return {"ok": False, "kind": type(e).__name__, "message": e.message, "hint": e.hint}
    except Exception as e:  # a bug must not kill the monitor that runs everyone's jobs
        return {"ok": False, "kind": "CryocloudError", "message": f"internal error: {e!r}",
                "hint": "run with CRYOCLOUD_DEBUG=1 and report it"}
    return {"ok": True, "job_id": done.job.id, "name": done.job.name, "profile": done.profile.name}

"""Facility mode from the submitter's side: a `cryocloud serve` takes every submission ([server] url), so the
queue command never opens the ledger. A server that is down, or refuses, is a refusal RELION shows (run.err,
failure marker, a hint), never a wait: the connection and the answer have deadlines."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cryocloud.errors import CryocloudError, JobFolderBusy, JobNotFound, LaunchRefused
from cryocloud.jobs.environment import job_environment
from cryocloud.settings import Settings

ANSWER_WAIT = 30.0  # s: RELION goes on without us; a server that accepts and never answers must not hold qsub
TOKEN_ENV = "CRYOCLOUD_TOKEN"


class ServerRefused(CryocloudError):
    """The server answered with an error. `in_job`: it has written the refusal into the job's run.err already."""

    def __init__(self, message: str, hint: str, kind: str, in_job: bool) -> None:
        super().__init__(message, hint)
        self.kind, self.in_job = kind, in_job


def token_path(settings: Settings) -> Path:
    return settings.config_path.parent / "token"


def token(settings: Settings, env: Mapping[str, str]) -> str:
    """The submitter's API token: $CRYOCLOUD_TOKEN, else the file beside the config (which must be private)."""
    if env.get(TOKEN_ENV):
        return env[TOKEN_ENV].strip()
    path = token_path(settings)
    try:
        if path.stat().st_mode & 0o077:
            raise CryocloudError(f"{path} can be read by others, so it is not used",
                                 f"chmod 600 {path} (and ask for a new token if others may have read it)")
        return path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise CryocloudError(f"no API token for the cryocloud server at {settings.server.url}",
                             f"ask its operator for one (`cryocloud tokens create YOU`) and put it in {path} "
                             f"(chmod 600) or in ${TOKEN_ENV}") from None


def call(settings: Settings, env: Mapping[str, str], method: str, path: str,
         body: dict[str, Any] | None = None, wait: float = ANSWER_WAIT) -> Any:
    """One API call to the configured server; its errors as CryocloudError (ServerRefused when it answered)."""
    url = settings.server.url.rstrip("/") + path
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers={
        "Authorization": f"Bearer {token(settings, env)}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=wait) as answer:
            return json.loads(answer.read() or b"null")
    except urllib.error.HTTPError as e:
        try:
            got = json.loads(e.read())
        except ValueError:
            got = {}
        raise ServerRefused(str(got.get("message") or f"the server answered {e.code}"), str(got.get("hint") or ""),
                            str(got.get("kind") or ""), bool(got.get("in_job"))) from None
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise CryocloudError(f"the cryocloud server at {settings.server.url} does not answer ({reason})",
                             "ask its operator to start it (`cryocloud serve`), then run the job again") from None


def submit_to_server(settings: Settings, script: Path, cwd: Path, env: Mapping[str, str]) -> dict[str, Any]:
    """Hand a RELION job to the server. Raises ServerRefused (kinds kept) or CryocloudError (server down)."""
    body = {"script": str(script if script.is_absolute() else cwd / script), "cwd": str(cwd),
            "env": job_environment(env, settings.pass_env())}
    try:
        got: dict[str, Any] = call(settings, env, "POST", "/api/v1/jobs", body)
    except ServerRefused as e:
        kinds: dict[str, type[CryocloudError]] = {"JobFolderBusy": JobFolderBusy, "LaunchRefused": LaunchRefused}
        if e.kind in kinds:
            raise kinds[e.kind](e.message, e.hint) from None
        raise
    return got


def job_id_on_server(settings: Settings, env: Mapping[str, str], ref: str, cwd: Path) -> int:
    """A job id, or the id of the newest job of a RELION job folder (relative to cwd, or absolute), on the server."""
    if ref.isdigit():
        return int(ref)
    path = (cwd / ref).resolve()
    for row in call(settings, env, "GET", "/api/v1/jobs?limit=10000"):
        if (Path(row["project_dir"]) / row["job_dir"]).resolve() == path:
            return int(row["id"])
    raise JobNotFound(f"no cryocloud job for folder {ref} on the server",
                      "give the job id or a RELION job folder such as Class2D/job002/ from the project folder")

"""What facility mode (`cryocloud serve`) adds for its faces: users and tokens, who may see which job, the
project roots a job may name files under, a job given as data, and storage use. Returns data, prints nothing."""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cryocloud import accounts
from cryocloud.accounts import User
from cryocloud.app.submit import Submitted, choose_profile, submit_script, submit_spec
from cryocloud.errors import CryocloudError, JobNotFound, SubmissionError
from cryocloud.jobs.spec import JobSpec, Resources
from cryocloud.ledger import JobRow, Ledger
from cryocloud.settings import Settings


class PathRefused(SubmissionError):
    """A job named a file outside the server's project roots (or a symlink that leaves them)."""


def as_user(settings: Settings, user: User) -> Settings:
    """The server's settings with the API user as the job's owner (ledger, budgets, accounting), and their Slurm
    account (if any) as the `account` of every profile whose backend takes one (fair share by person)."""
    from cryocloud.backends.registry import BACKENDS

    profiles = settings.profiles
    if user.slurm_account:
        profiles = {name: dataclasses.replace(p, options={**p.options, "account": user.slurm_account})
                    if "account" in BACKENDS[p.backend].profile_keys() else p for name, p in profiles.items()}
    return dataclasses.replace(settings, general=dataclasses.replace(settings.general, user=user.name),
                               profiles=profiles)


def visible_job(ledger: Ledger, user: User, job_id: int) -> JobRow:
    """Job `job_id` if `user` may see it (their own; a manager: any). Another user's job is "not found", so
    ids of other people's jobs reveal nothing."""
    job = ledger.job(job_id)
    if job is None or not (user.manager or job.user == user.name):
        raise JobNotFound(f"no job {job_id} of yours", "GET /api/v1/jobs lists the jobs you can see")
    return job


def under_roots(path: Path, roots: list[str]) -> Path:
    """`path` with every symlink resolved, if it lies under one of `roots` (also resolved); else refused."""
    real = Path(os.path.realpath(path))
    for root in roots:
        if real.is_relative_to(os.path.realpath(root)):
            return real
    if not roots:
        raise PathRefused("this server allows no project folders yet",
                          "its operator sets [server] project_roots = [\"/data/projects\"] in the config")
    raise PathRefused(f"{path} is outside the project folders this server allows",
                      "allowed: " + ", ".join(roots) + " (symlinks are followed before the check)")


def check_inputs(roots: list[str]) -> Any:
    def check(spec: JobSpec) -> None:
        for f in spec.inputs:
            under_roots(Path(spec.project_dir) / f.path, roots)
    return check


def submit_script_as(settings: Settings, user: User, script: Path, cwd: Path, env: Mapping[str, str]) -> Submitted:
    """A RELION job folder's filled script, submitted for an API user. The script, the project folder and every
    input the job names must lie under the server's project roots; nothing is written outside them."""
    roots = settings.server.project_roots
    cwd = under_roots(cwd, roots)
    script = under_roots(script if script.is_absolute() else cwd / script, roots)
    try:
        return submit_script(script, cwd, as_user(settings, user), env, check=check_inputs(roots))
    except CryocloudError as e:
        e.in_job = True  # type: ignore[attr-defined]  # submit_script wrote it into run.err: the client must not
        raise


def submit_command_as(settings: Settings, user: User, body: Mapping[str, Any], env: Mapping[str, str]) -> Submitted:
    """A job given as data: {project_dir, job_dir, commands, profile?, mpi?, threads?, gpus?, wall_time?}."""
    roots = settings.server.project_roots
    try:
        project = under_roots(Path(str(body["project_dir"])), roots)
        job_dir = str(body["job_dir"]).strip("/") + "/"
        commands = [str(c) for c in body["commands"]]
    except (KeyError, TypeError):
        raise SubmissionError("a job given as data needs project_dir, job_dir and commands",
                              'e.g. {"project_dir": "/data/p1", "job_dir": "External/job001", "commands": ["..."]}'
                              ) from None
    folder = under_roots(project / job_dir, roots)
    if not commands or not folder.is_relative_to(project) or folder == project:
        raise SubmissionError("job_dir must be a folder inside project_dir, and commands must not be empty",
                              'e.g. "job_dir": "External/job001"')
    try:
        resources = Resources(mpi=int(body.get("mpi", 1)), threads=int(body.get("threads", 1)),
                              gpus=int(body.get("gpus", 0)), wall_time=body.get("wall_time"))
    except (TypeError, ValueError):
        raise SubmissionError("mpi, threads and gpus must be whole numbers", "e.g. \"threads\": 4") from None
    if not project.is_dir():
        raise SubmissionError(f"{project} is not a folder", "give the project folder the job works in")
    spec = JobSpec(name=str(body.get("name") or job_dir), client="command", job_type="command",
                   project_dir=str(project), job_dir=job_dir, commands=commands, resources=resources,
                   queue=str(body.get("profile") or ""))
    mine = as_user(settings, user)
    profile = choose_profile(spec, mine)
    if spec.queue == profile.name:
        spec = dataclasses.replace(spec, queue="")
    made = [p for p in (folder, *folder.parents) if p.is_relative_to(project) and p != project and not p.exists()]
    folder.mkdir(parents=True, exist_ok=True)
    try:
        return submit_spec(spec, profile, mine, env)
    except CryocloudError:
        for p in made:  # nothing is left of a refused job (deepest folder first; one with files in it stays)
            with contextlib.suppress(OSError):
                p.rmdir()
        raise


def users_view(ledger: Ledger) -> list[dict[str, Any]]:
    return [{"name": u.name, "role": u.role} for u in accounts.users(ledger.db)]


def storage_use(settings: Settings) -> dict[str, Any]:
    """Bytes in the configured store by kind and storage class, with their monthly cost (what `storage du` shows)."""
    from cryocloud.storage.catalog import monthly_usd, usage
    from cryocloud.storage.stores import open_store
    from cryocloud.storage.transfer import run

    try:
        store = open_store("", settings)
        rows = run(usage(store))
    except CryocloudError as e:
        return {"store": settings.storage.url or "(default)", "error": e.message, "hint": e.hint, "rows": []}
    out: list[dict[str, Any]] = [{"kind": kind, "storage_class": tier, "objects": n, "bytes": size,
            "usd_per_month": round(monthly_usd(size, tier), 4)} for (kind, tier), (n, size) in rows.items()]
    return {"store": store.url, "rows": out, "bytes": sum(r["bytes"] for r in out),
            "usd_per_month": round(sum(r["usd_per_month"] for r in out), 4), "projects": _per_project(store)}


def _per_project(store: Any) -> list[dict[str, Any]]:
    """Per project (and "(job staging)", "(storage push)"): the files and packs its snapshots name, their bytes and
    monthly cost at their storage class now; `shared_bytes`: the part other holders name too (deduplicated, so
    the rows add up to more than the store holds)."""
    from cryocloud.storage.catalog import monthly_usd
    from cryocloud.storage.tiers import placements, rules
    from cryocloud.storage.transfer import run

    out: dict[str, dict[str, Any]] = {}
    for p in run(placements(store, rules(store))):
        for h in p.holders:
            row = out.setdefault(h, {"project": h, "objects": 0, "bytes": 0, "usd_per_month": 0.0,
                                     "shared_bytes": 0})
            row["objects"] += 1
            row["bytes"] += p.size
            row["usd_per_month"] += monthly_usd(p.size, p.storage_class)  # unrounded: small projects cost < 1e-6
            row["shared_bytes"] += p.size if len(p.holders) > 1 else 0
    return sorted(out.values(), key=lambda r: str(r["project"]))


def _with_ledger(settings: Settings, work: Any) -> Any:
    ledger = Ledger(settings.ledger_path)
    try:
        with ledger.transaction():
            return work(ledger.db)
    finally:
        ledger.close()


def add_user(settings: Settings, name: str, role: str, slurm_account: str = "") -> User:
    return _with_ledger(settings, lambda db: accounts.add_user(db, name, role, slurm_account))  # type: ignore[no-any-return]


def list_users(settings: Settings) -> list[User]:
    return _with_ledger(settings, accounts.users)  # type: ignore[no-any-return]


def create_token(settings: Settings, name: str) -> tuple[int, str]:
    """(token id, the token): the token is shown once and never stored."""
    return _with_ledger(settings, lambda db: accounts.create_token(db, name))  # type: ignore[no-any-return]


def list_tokens(settings: Settings, name: str | None) -> list[accounts.TokenRow]:
    return _with_ledger(settings, lambda db: accounts.tokens(db, name))  # type: ignore[no-any-return]


def revoke_token(settings: Settings, token_id: int) -> accounts.TokenRow:
    return _with_ledger(settings, lambda db: accounts.revoke(db, token_id))  # type: ignore[no-any-return]


def set_notify(settings: Settings, name: str, webhook: str | None, email: str | None) -> tuple[str, str]:
    """Where user `name` hears of their jobs' ends and budgets (None: unchanged, "": none)."""
    return _with_ledger(settings, lambda db: accounts.set_targets(db, name, webhook, email))  # type: ignore[no-any-return]


def instances_for(settings: Settings, ledger: Ledger, user: User) -> dict[str, Any]:
    """cryocloud's live EC2 instances as the API and the dashboard show them: a manager sees every one tagged by
    cryocloud in the configured region, a user those that run their own jobs. No AWS to ask (no credentials, no
    profile, no credentials) is said, not raised: {"error", "hint"} beside an empty list."""
    from cryocloud.app.instances import list_instances
    from cryocloud.storage import tags as tagging

    if not any(p.backend == "aws" for p in settings.profiles.values()):  # nothing to ask AWS about
        return {"instances": [], "usd_per_hour": 0.0, "error": "no AWS profile is configured on this server",
                "hint": "`cryocloud aws bootstrap` writes them (or `cryocloud sandbox up` to rehearse)"}
    try:
        rows = list_instances(settings, all_users=True)  # jobs launched for API users carry their names as owner
    except CryocloudError as e:
        return {"instances": [], "usd_per_hour": 0.0, "error": e.message, "hint": e.hint}
    if not user.manager:
        mine = {j.id for j in ledger.jobs(user=user.name)}
        owner = tagging.clean(user.name)  # launched for them: their name is the owner tag, their job's id the job's
        rows = [r for r in rows if r["job_id"] in mine and r["owner"] == owner]
    return {"instances": rows, "usd_per_hour": round(sum(float(r["usd_per_hour"]) for r in rows), 4)}

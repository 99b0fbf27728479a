"""Make job folders and scripts exactly as RELION fills cryocloud's template."""

from __future__ import annotations

import os
from pathlib import Path

from cryocloud.jobs.relion import FIELDS, template_text
from gate import wait_until


def fill_template(job_dir: str, commands: list[str], mpi: int = 1, threads: int = 1, queue: str = "default",
                  extras: dict[str, str] | None = None) -> str:
    """What RELION 3.1 writes: every placeholder replaced, the command line once per command."""
    values = {"name": job_dir, "mpi": str(mpi), "threads": str(threads), "cores": str(mpi * threads),
              "dedicated": "1", "nodes": "1", "queue": queue, "outfile": f"{job_dir}run.out",
              "errfile": f"{job_dir}run.err", "extra1": "", "extra2": "", "extra3": ""}
    values.update(extras or {})
    text = template_text()
    for key, placeholder in FIELDS.items():
        if key in values:
            text = text.replace(placeholder, values[key])
    return text.replace("XXXcommandXXX", "\n".join(commands))


def make_job(project: Path, job_dir: str, commands: list[str], **kw: object) -> Path:
    (project / job_dir).mkdir(parents=True, exist_ok=True)
    script = project / job_dir / "run_submit.script"
    script.write_text(fill_template(job_dir, commands, **kw), encoding="utf-8")  # type: ignore[arg-type]
    return script


def wait_for(predicate, timeout: float = 300.0, every: float = 0.1) -> bool:  # type: ignore[no-untyped-def]
    """Poll `predicate` until it holds. The deadline is for a hung run, never for a slow one (a loaded 2-core
    CI box): a test that passes returns as soon as the event happens, whatever the deadline."""
    return wait_until(predicate, timeout, every)


def job_state(job_id: int) -> str:
    from cryocloud.app.jobs import refresh
    from cryocloud.settings import load_settings

    ledger = refresh(load_settings())
    try:
        job = ledger.job(job_id)
        assert job is not None
        return job.state
    finally:
        ledger.close()


def markers(job_dir: Path) -> list[str]:
    return sorted(p.name for p in job_dir.iterdir() if p.name.startswith("RELION_JOB_EXIT_"))


def in_dir(path: Path):  # type: ignore[no-untyped-def]
    """chdir context (RELION calls the queue command from the project folder)."""
    from contextlib import contextmanager

    @contextmanager
    def cd():  # type: ignore[no-untyped-def]
        old = os.getcwd()
        os.chdir(path)
        try:
            yield path
        finally:
            os.chdir(old)

    return cd()


def running_with_monitor(project: Path) -> tuple[int, Path, Path, int]:
    """A local job that runs until stopped (`sleep 300` in External/job001/), once its command runs and the
    monitor is up: (job id, job folder, its agent.json, the monitor's pid)."""
    from cryocloud.app.submit import submit_script
    from cryocloud.monitor.loop import monitor_pid
    from cryocloud.settings import load_settings

    make_job(project, "External/job001/", ["sleep 300"])
    with in_dir(project):
        job = submit_script(Path("External/job001/run_submit.script"), project).job.id
    jd = project / "External/job001"
    agent_json = jd / f".cryocloud/job{job}/agent.json"
    assert wait_for(lambda: agent_json.exists() and "child_pgid" in agent_json.read_text())
    settings = load_settings()
    assert wait_for(lambda: monitor_pid(settings) is not None)
    monitor = monitor_pid(settings)
    assert monitor is not None
    return job, jd, agent_json, monitor

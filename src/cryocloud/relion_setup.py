"""`cryocloud relion setup`: the template and the environment that connect RELION's queue to cryocloud."""

from __future__ import annotations

import shlex
import shutil
import sys
from pathlib import Path

from cryocloud.errors import CryocloudError
from cryocloud.jobs.relion import EXTRAS, template_text
from cryocloud.settings import Settings

TEMPLATE_NAME = ".cryocloud/relion_template.sh"


def qsub_command() -> str:
    """Absolute path of the `cryocloud-qsub` executable (one program, no arguments: what both clients need)."""
    beside = Path(sys.executable).parent / "cryocloud-qsub"
    if beside.exists():
        return str(beside)
    found = shutil.which("cryocloud-qsub")
    if found:
        return found
    raise CryocloudError(
        "cannot find the cryocloud-qsub executable", "install cryocloud with pip so its entry points exist"
    )


def write_template(project: Path) -> Path:
    if not project.is_dir():
        raise CryocloudError(f"{project} is not a folder", "run this in (or point it at) a RELION project folder")
    path = project / TEMPLATE_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(template_text(), encoding="utf-8")
    path.chmod(0o755)
    return path


def relion_environment(template: Path, settings: Settings) -> dict[str, str]:
    """RELION_* (and PIPELINER_*) variables that make 'Submit to queue' go through cryocloud by default."""
    qsub = qsub_command()
    cpus = str(settings.local_cpus)
    env = {
        "RELION_QSUB_COMMAND": qsub,
        "RELION_QSUB_TEMPLATE": str(template),
        "RELION_QUEUE_USE": "true",
        "RELION_QUEUE_NAME": "default",
        "RELION_MINIMUM_DEDICATED": "1",
        "RELION_MPI_MAX": cpus,
        "RELION_THREAD_MAX": cpus,
        "RELION_QSUB_EXTRA_COUNT": str(len(EXTRAS)),
        "PIPELINER_QSUB_COMMAND": qsub,
        "PIPELINER_QSUB_TEMPLATE": str(template),
        "PIPELINER_QUEUE_USE": "true",
    }
    for i, (key, (_, label, help_text)) in enumerate(sorted(EXTRAS.items()), start=1):
        assert key == f"extra{i}"
        env[f"RELION_QSUB_EXTRA{i}"] = label
        env[f"RELION_QSUB_EXTRA{i}_DEFAULT"] = ""
        env[f"RELION_QSUB_EXTRA{i}_HELP"] = help_text
    return env


def export_lines(env: dict[str, str]) -> str:
    return "".join(f"export {k}={shlex.quote(v)}\n" for k, v in env.items())

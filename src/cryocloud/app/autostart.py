"""`cryocloud monitor install`: start the user's monitor at boot and every minute, so that a job is marked in
RELION's view even after its agent and the monitor died together, or the machine rebooted.

A systemd user timer where systemd runs; cron's `@reboot` and every-minute lines where it does not. Each start
is cheap and safe: a monitor that finds another one running leaves at once, and one with no active job leaves
after one pass (which is when it marks the jobs of agents that died). The monitor gets what a job would get of
this environment (jobs/environment.py: PATH, SLURM_CONF, CRYOCLOUD_*, ..., never a secret) and cryocloud's home.
"""

from __future__ import annotations

import os
import shlex
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from cryocloud.errors import CryocloudError
from cryocloud.jobs.environment import job_environment
from cryocloud.proc import monitor_command, run_command
from cryocloud.settings import Settings

UNIT = "cryocloud-monitor"
CRON_BEGIN = "# >>> cryocloud monitor (written by `cryocloud monitor install`; `cryocloud monitor uninstall` removes it)"
CRON_END = "# <<< cryocloud monitor"
ENABLE = ["systemctl", "--user", "enable", "--now", f"{UNIT}.timer"]


@dataclass(frozen=True)
class Autostart:
    how: str  # "systemd" or "cron"
    files: list[Path] = field(default_factory=list)  # what was written (systemd units)
    lines: list[str] = field(default_factory=list)  # what was written (crontab lines)
    enabled: bool = False
    note: str = ""  # what is left to do, when something is


def monitor_env(settings: Settings, env: dict[str, str]) -> dict[str, str]:
    return {**job_environment(env, settings.pass_env()), "CRYOCLOUD_HOME": str(settings.home)}


def unit_dir(env: dict[str, str]) -> Path:
    base = env.get("XDG_CONFIG_HOME") or os.path.expanduser("~/.config")
    return Path(base) / "systemd" / "user"


def _systemd_quote(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%")
    return f'"{escaped}"'


def systemd_units(settings: Settings, env: dict[str, str]) -> dict[str, str]:
    environment = "\n".join(f"Environment={_systemd_quote(f'{k}={v}')}"
                            for k, v in sorted(monitor_env(settings, env).items()))
    log = settings.run_dir / "monitor.log"
    service = (
        "[Unit]\nDescription=cryocloud monitor: marks, relaunches and accounts jobs (leaves when none is active)\n\n"
        f"[Service]\nType=simple\n{environment}\n"
        f"ExecStart={' '.join(_systemd_quote(a) for a in monitor_command())}\n"
        f"StandardOutput=append:{log}\nStandardError=append:{log}\n"
    )
    timer = (
        "[Unit]\nDescription=start the cryocloud monitor at boot and every minute\n\n"
        "[Timer]\nOnBootSec=30s\nOnCalendar=minutely\nAccuracySec=10s\n\n"
        "[Install]\nWantedBy=timers.target\n"
    )
    return {f"{UNIT}.service": service, f"{UNIT}.timer": timer}


def cron_lines(settings: Settings, env: dict[str, str]) -> list[str]:
    assignments = [f"{k}={v}" for k, v in sorted(monitor_env(settings, env).items())]
    log = settings.run_dir / "monitor.log"
    command = f"{shlex.join(['env', *assignments, *monitor_command()])} >> {shlex.quote(str(log))} 2>&1"
    command = command.replace("%", "\\%")  # cron turns a bare % into a newline
    return [CRON_BEGIN, f"@reboot {command}", f"* * * * * {command}", CRON_END]


def systemd_runs() -> bool:
    return Path("/run/systemd/system").is_dir() and shutil.which("systemctl") is not None


def choose(how: str) -> str:
    if how != "auto":
        return how
    if systemd_runs():
        return "systemd"
    if shutil.which("crontab"):
        return "cron"
    raise CryocloudError("neither systemd nor cron runs here, so nothing can start the monitor at boot",
                         "install cron (Debian: apt install cron), or start `cryocloud monitor run` from your own "
                         "init system; `cryocloud monitor install --print` shows what to run")


def install(settings: Settings, env: dict[str, str], how: str = "auto", units: Path | None = None) -> Autostart:
    """Write (and enable) what starts the monitor at boot and every minute. Idempotent."""
    how = choose(how)
    if how == "systemd":
        folder = units or unit_dir(env)
        folder.mkdir(parents=True, exist_ok=True)
        files = []
        for name, text in systemd_units(settings, env).items():
            (folder / name).write_text(text, encoding="utf-8")
            files.append(folder / name)
        for argv in (["systemctl", "--user", "daemon-reload"], ENABLE):
            done = run_command(argv, check=False, timeout=30, hint="is systemd running for your user?")
            if done.returncode != 0:
                why = (done.stderr or done.stdout).strip().splitlines()
                return Autostart("systemd", files, enabled=False, note=(
                    f"the units are written but `{' '.join(argv)}` failed"
                    + (f" ({why[0]})" if why else "") + f": run `{' '.join(ENABLE)}` in a login session, "
                    "or use --cron"))
        return Autostart("systemd", files, enabled=True, note=(
            "user timers run while you are logged in; for them to run after a reboot without a login, "
            "run `loginctl enable-linger` once"))
    lines = cron_lines(settings, env)
    _write_crontab(_without_ours(_read_crontab()) + lines)
    return Autostart("cron", lines=lines, enabled=True)


def uninstall(settings: Settings, env: dict[str, str], units: Path | None = None) -> list[str]:
    """Remove whatever `install` wrote; returns what was removed."""
    removed: list[str] = []
    folder = units or unit_dir(env)
    timer = folder / f"{UNIT}.timer"
    if timer.exists() and shutil.which("systemctl"):
        run_command(["systemctl", "--user", "disable", "--now", f"{UNIT}.timer"], check=False, timeout=30)
    for name in (f"{UNIT}.timer", f"{UNIT}.service"):
        if (folder / name).exists():
            (folder / name).unlink()
            removed.append(str(folder / name))
    if shutil.which("crontab"):
        current = _read_crontab()
        kept = _without_ours(current)
        if kept != current:
            _write_crontab(kept)
            removed.append("the crontab lines")
    return removed


def installed(env: dict[str, str]) -> bool:
    if (unit_dir(env) / f"{UNIT}.timer").exists():
        return True
    return bool(shutil.which("crontab")) and CRON_BEGIN in _read_crontab()


def _read_crontab() -> list[str]:
    done = run_command(["crontab", "-l"], check=False, timeout=30)
    return done.stdout.splitlines() if done.returncode == 0 else []  # exit 1: "no crontab for <user>"


def _without_ours(lines: list[str]) -> list[str]:
    out, inside = [], False
    for line in lines:
        if line == CRON_BEGIN:
            inside = True
        elif line == CRON_END and inside:
            inside = False
        elif not inside:
            out.append(line)
    return out


def _write_crontab(lines: list[str]) -> None:
    run_command(["crontab", "-"], input="\n".join(lines) + "\n", timeout=30,
                hint="check that cron is installed and that you may use it (/etc/cron.allow)")

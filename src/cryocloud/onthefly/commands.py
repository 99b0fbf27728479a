"""`cryocloud watch` and `cryocloud simulate-session`."""

from __future__ import annotations

import json
import signal
import threading
from pathlib import Path
from typing import Any

import click


@click.command()
@click.argument("session_dir", type=click.Path(path_type=Path))
@click.option("--project", type=click.Path(path_type=Path), help="The RELION project folder the session is processed in.")
@click.option("--settings", "settings_file", type=click.Path(path_type=Path),
              help="The session's settings (default: PROJECT/cryocloud-session.toml).")
@click.option("--profile", default="", help="Where MotionCorr/CtfFind run (a profile: local, a Slurm one, aws...).")
@click.option("--upload", default="", metavar="URL", help="Archive every movie there as it arrives (s3://bucket/prefix "
              "or a folder), by content, each verified in the store.")
@click.option("--until-idle", type=float, default=None, metavar="SECONDS",
              help="End once nothing new arrived and all work is done for this long.")
@click.option("--retry-failed", is_flag=True, help="Movies RELION made no micrograph of (e.g. the disk was full) "
              "join a new batch.")
@click.option("--init", is_flag=True, help="Write a commented session settings file and stop.")
@click.option("--status", "show_status", is_flag=True, help="List the session's movies: archived and verified, state.")
@click.option("--json", "as_json", is_flag=True, help="Numbers as JSON (one object per pass while watching).")
@click.option("--pixel-size", type=float, default=0.0, help="With --init: the movies' pixel size (A).")
@click.option("--dose", type=float, default=0.0, help="With --init: dose per frame (e/A^2).")
def watch(session_dir: Path, project: Path | None, settings_file: Path | None, profile: str, upload: str,
          until_idle: float | None, retry_failed: bool, init: bool, show_status: bool, as_json: bool, pixel_size: float,
          dose: float) -> None:
    """Upload and preprocess a microscope session while it is collected.

    \b
    Movies (TIFF, MRC, EER) are taken once complete (size and mtime settled; rsync's .name.XXXXXX
    temporaries ignored), linked into PROJECT/Movies/<session>/ (what RELION's Import reads), and run
    through the same Import -> MotionCorr -> CtfFind jobs on each batch, RELION's own way
    (--only_do_unfinished). Restart it at any time: nothing is processed twice or skipped.

    \b
      cryocloud watch /data/session1 --init --project ~/p1 --pixel-size 0.83 --dose 1.1
      cryocloud watch /data/session1 --project ~/p1 --upload s3://lab-archive/raw
      cryocloud watch /data/session1 --status          # which movies are archived and verified
    """
    from cryocloud.app import watch as app
    from cryocloud.errors import CryocloudError
    from cryocloud.settings import load_settings

    if show_status:
        numbers = app.status(load_settings(), session_dir, project)
        _show_status(numbers, as_json)
        return
    if project is None:
        raise CryocloudError("no --project given", "name the RELION project folder: --project PATH")
    path = app.settings_path(project, settings_file)
    if init:
        click.echo(f"wrote {app.init_settings(path, pixel_size, dose)}: fill in what it asks, then run watch again")
        return
    req = app.WatchRequest(session_dir, project, path, profile, upload, until_idle, retry_failed)
    watcher = app.Watcher(req)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())  # `kill PID`: leave cleanly, as Ctrl-C does
    try:
        final = watcher.loop(lambda n: click.echo(json.dumps(n)), stop) if as_json else _live(watcher, stop)
    except KeyboardInterrupt:
        stop.set()
        click.echo("stopped: run the same command again to go on", err=True)
        return
    if not as_json:
        click.echo(f"done: {final['corrected']} corrected, {final['verified']} archived and verified, "
                   f"{final['rejected']} rejected, {final['failed']} failed")


def _live(watcher: Any, stop: threading.Event) -> dict[str, Any]:
    from rich.live import Live

    from cryocloud.onthefly.view import render

    with Live(refresh_per_second=2, transient=False) as live:
        return dict(watcher.loop(lambda n: live.update(render(n)), stop))


def _show_status(numbers: dict[str, Any], as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(numbers, indent=1))
        return
    from rich.console import Console

    from cryocloud.onthefly.view import status_table

    Console().print(status_table(numbers))


@click.command("simulate-session")
@click.argument("out", type=click.Path(path_type=Path))
@click.option("--rate", default="1000/h", show_default=True, help="Movies per hour (or /min, /s).")
@click.option("--movies", "count", type=int, default=20, show_default=True)
@click.option("--size", type=int, default=256, show_default=True, help="Frame width and height, pixels.")
@click.option("--frames", type=int, default=8, show_default=True)
@click.option("--pixel-size", type=float, default=3.0, show_default=True)
@click.option("--dose", type=float, default=0.5, show_default=True, help="e/A^2 per frame.")
@click.option("--seed", type=int, default=1, show_default=True)
@click.option("--start", type=int, default=1, show_default=True, help="Number of the first movie.")
@click.option("--modes", default="inplace,rename,rsync", show_default=True,
              help="How movies are written, in turn: in place, renamed at the end, through rsync temporaries.")
def simulate_session(out: Path, rate: str, count: int, size: int, frames: int, pixel_size: float, dose: float,
                     seed: int, start: int, modes: str) -> None:
    """Write synthetic movies into OUT the way acquisition software does (a simulated microscope).

    \b
      cryocloud simulate-session /tmp/session1 --rate 1000/h --movies 20
    """
    from cryocloud.errors import CryocloudError
    from cryocloud.session.simulate import Plan, parse_rate, simulate

    if count < 1 or size < 8 or frames < 1:
        raise CryocloudError("--movies, --size and --frames must be positive (size at least 8)", "e.g. --movies 20")
    plan = Plan(out, count, parse_rate(rate), size, frames, pixel_size, dose, seed,
                tuple(m.strip() for m in modes.split(",") if m.strip()), start=start)
    written = simulate(plan, lambda p, _t: click.echo(p))
    click.echo(f"wrote {len(written)} movies into {out}", err=True)

"""monitor run | install | uninstall."""

from __future__ import annotations

import os
from pathlib import Path

import click


@click.group(invoke_without_command=True)
@click.pass_context
def monitor(ctx: click.Context) -> None:
    """The per-user monitor: it records what jobs report, starts queued ones, writes RELION's marker for a job
    whose runner died, and leaves when no job is active. `submit` starts it by itself.

    \b
    cryocloud monitor install     start it at boot and every minute (a systemd user timer, else cron), so a
                                  job is marked even after a crash of its runner and the monitor, or a reboot
    cryocloud monitor uninstall   remove that
    cryocloud monitor run         run it here, in the foreground, until no job is active
    """
    if ctx.invoked_subcommand is None:
        ctx.invoke(run)


@monitor.command()
def run() -> None:
    """Run the monitor in the foreground until no job is active (a second one leaves at once)."""
    from cryocloud.app.daemon import main

    raise SystemExit(main())


@monitor.command()
@click.option("--systemd", "how", flag_value="systemd", help="A systemd user timer (the default where systemd runs).")
@click.option("--cron", "how", flag_value="cron", help="Crontab lines: @reboot and every minute.")
@click.option("--print", "show", is_flag=True, help="Only print what would be written.")
@click.option("--unit-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where the systemd units go (default: ~/.config/systemd/user).")
def install(how: str | None, show: bool, unit_dir: Path | None) -> None:
    """Start the monitor at boot and every minute. Safe to run again: it replaces what it wrote before."""
    from cryocloud.app import autostart
    from cryocloud.settings import load_settings

    settings, env = load_settings(), dict(os.environ)
    if show:
        for name, text in autostart.systemd_units(settings, env).items():
            click.echo(f"# {name} (systemd, in {unit_dir or autostart.unit_dir(env)})\n{text}")
        click.echo("# crontab lines (cron)\n" + "\n".join(autostart.cron_lines(settings, env)))
        return
    done = autostart.install(settings, env, how or "auto", unit_dir)
    where = ", ".join(str(f) for f in done.files) if done.files else "your crontab"
    click.echo(f"monitor autostart ({done.how}) written to {where}" + ("; enabled" if done.enabled else ""))
    if done.note:
        click.echo(("note: " if done.enabled else "not enabled: ") + done.note, err=True)
    if not done.enabled:
        raise click.exceptions.Exit(1)


@monitor.command()
@click.option("--unit-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where the systemd units are (default: ~/.config/systemd/user).")
def uninstall(unit_dir: Path | None) -> None:
    """Remove the monitor's autostart (systemd units and crontab lines)."""
    from cryocloud.app import autostart
    from cryocloud.settings import load_settings

    removed = autostart.uninstall(load_settings(), dict(os.environ), unit_dir)
    click.echo("removed " + ", ".join(removed) if removed else "nothing to remove: no autostart was installed")

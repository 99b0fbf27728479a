"""ledger check | backup."""

from __future__ import annotations

import click


@click.group()
def ledger() -> None:
    """The ledger: every job, attempt and cost (SQLite in cryocloud's home). The monitor backs it up beside
    itself (ledger.sqlite.backup) every hour and whenever it leaves."""


@ledger.command()
@click.option("--restore", is_flag=True, help="Put the last sound backup in place of a damaged ledger "
                                               "(the damaged file is kept beside it).")
def check(restore: bool) -> None:
    """Check the ledger with SQLite's integrity check; exit 1 if it is damaged."""
    from cryocloud.errors import CryocloudError
    from cryocloud.ledger import check_ledger, restore_ledger
    from cryocloud.settings import load_settings

    path = load_settings().ledger_path
    found = check_ledger(path)
    backup = (f"a sound backup holds {found.backup_jobs} jobs ({found.backup})" if found.backup
              else "there is no sound backup")
    if found.ok:
        click.echo(f"the ledger {path} is sound: {found.jobs} jobs; {backup}")
        return
    click.echo(f"the ledger {path} is damaged: {'; '.join(found.problems[:3])}", err=True)
    if not restore:
        hint = ("run `cryocloud ledger check --restore` to put the backup back" if found.backup else
                f"move it aside (mv {path} {path}.damaged): cryocloud starts a new, empty ledger")
        click.echo(f"{backup}\nhint: {hint}; the jobs' folders and RELION markers are not touched", err=True)
        raise click.exceptions.Exit(1)
    try:
        aside = restore_ledger(path)
    except CryocloudError as e:
        click.echo(f"error: {e.message}\nhint: {e.hint}", err=True)
        raise click.exceptions.Exit(2) from None
    click.echo(f"restored the backup ({found.backup_jobs} jobs); the damaged ledger is kept as {aside}. Jobs "
               "submitted after the backup are not in it: their folders, outputs and RELION markers are untouched")


@ledger.command()
def backup() -> None:
    """Back up the ledger now (the monitor does it by itself every hour and when it leaves)."""
    from cryocloud.ledger import Ledger
    from cryocloud.settings import load_settings

    db = Ledger(load_settings().ledger_path)
    try:
        dest = db.backup()
    finally:
        db.close()
    if dest is None:
        click.echo("the ledger failed SQLite's check, so the last backup was kept; run `cryocloud ledger check`",
                   err=True)
        raise click.exceptions.Exit(1)
    click.echo(f"backed up to {dest}")

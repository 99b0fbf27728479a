"""`cryocloud` entry point. Subcommands are imported only when used, so `--help` and `submit` start fast."""

from __future__ import annotations

import importlib
import os
import sys

import click

from cryocloud.errors import CryocloudError

# name -> "module:attribute" of a click command or group. The one list of top-level commands.
COMMANDS: dict[str, tuple[str, str]] = {
    "submit": ("cryocloud.cli.jobs_cmds:submit", "Submit a RELION job script (what RELION's queue calls) or a job file."),
    "run": ("cryocloud.cli.jobs_cmds:run", "Run any command as a job (same logs, abort, cost and ledger)."),
    "status": ("cryocloud.cli.jobs_cmds:status", "Show jobs and their state (all active and recent, or one)."),
    "cancel": ("cryocloud.cli.jobs_cmds:cancel", "Stop a job (by id or RELION job folder); it ends as aborted."),
    "costs": ("cryocloud.cli.costs_cmds:costs", "What jobs cost: wall time, backend, machine, USD."),
    "plan": ("cryocloud.cli.plan_cmds:plan", "Predict hours and USD of a job or workflow on every machine that fits."),
    "spot-prices": ("cryocloud.cli.plan_cmds:spot_prices", "Spot prices per zone next to on-demand (snapshot or live)."),
    "relion": ("cryocloud.cli.relion_cmds:relion", "Connect RELION's 'Submit to queue' to cryocloud."),
    "demo-data": ("cryocloud.cli.relion_cmds:demo_data", "Make a small synthetic RELION project (no download)."),
    "agent": ("cryocloud.cli.jobs_cmds:agent", "Internal: the runner that executes a job on any backend."),
    "monitor": ("cryocloud.cli.monitor_cmds:monitor", "The per-user monitor: install (start at boot), run."),
    "storage": ("cryocloud.cli.storage_cmds:storage", "Move data to/from object storage: push, pull, verify, ls, du, rm, tier."),
    "project": ("cryocloud.cli.storage_cmds:project", "Back up a RELION project and restore it: push, pull, clone, ls, tier."),
    "ledger": ("cryocloud.cli.ledger_cmds:ledger", "Check the ledger of jobs and costs, back it up, restore it."),
    "cleanup": ("cryocloud.cli.instances_cmds:cleanup", "Remove what cryocloud left behind (dry run by default)."),
    "instances": ("cryocloud.cli.instances_cmds:instances", "Cloud instances cryocloud launched: ls (job, cost so far), kill."),
    "aws": ("cryocloud.cli.aws_cmds:aws", "A lab's AWS account made ready for cryocloud: bootstrap."),
    "sandbox": ("cryocloud.cli.sandbox_cmds:sandbox", "A local AWS on this machine (EC2, S3, simulated nodes): up, down, status."),
    "watch": ("cryocloud.onthefly.commands:watch", "Upload and preprocess a microscope session while it is collected."),
    "simulate-session": ("cryocloud.onthefly.commands:simulate_session", "Write synthetic movies like a microscope (tests, demos)."),
    "serve": ("cryocloud.cli.server_cmds:serve", "Serve the REST API and the dashboard (runs the monitor; facility mode)."),
    "users": ("cryocloud.cli.server_cmds:users", "API users of the server: add, list."),
    "tokens": ("cryocloud.cli.server_cmds:tokens", "API tokens: create (shown once), list, revoke."),
}
HIDDEN = {"agent"}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        module_name, _, attr = COMMANDS[cmd_name][0].partition(":")
        cmd: click.Command = getattr(importlib.import_module(module_name), attr)
        cmd.hidden = cmd_name in HIDDEN
        return cmd

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, help_) for name, (_, help_) in sorted(COMMANDS.items()) if name not in HIDDEN]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        name = args[0] if args else ""
        if name and not name.startswith("-") and name not in COMMANDS:
            from cryocloud.errors import close_matches

            raise click.UsageError(f"no command {name!r}; {close_matches(name, set(COMMANDS) - HIDDEN)}")
        return super().resolve_command(ctx, args)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show the full traceback on errors.")
@click.version_option(package_name="cryocloud")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Run cryo-EM jobs where they fit: this workstation, a Slurm cluster, or AWS.

    \b
    Start here, in a RELION project folder:
      cryocloud relion setup         # prints what to put in RELION's Running tab
      cryocloud status               # every job, where it runs, its state and wall time
      cryocloud costs                # what each job cost

    State lives in $CRYOCLOUD_HOME (default ~/.local/share/cryocloud); settings in
    ~/.config/cryocloud/config.toml, each overridable by a CRYOCLOUD_* variable.
    """
    ctx.obj = {"debug": debug}


def _print_error(e: CryocloudError) -> None:
    click.secho(f"cryocloud: error: {e.message}", fg="red", err=True)
    if e.hint:
        click.echo(f"  hint: {e.hint}", err=True)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args or os.environ.get("CRYOCLOUD_DEBUG") == "1"
    try:
        rc = cli.main(args=args, prog_name="cryocloud", standalone_mode=False)
        if isinstance(rc, int) and not isinstance(rc, bool):  # click returns an Exit's code here
            return rc
    except CryocloudError as e:
        if debug:
            raise
        _print_error(e)
        return e.exit_code
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        return 130
    except click.ClickException as e:
        e.show()
        return e.exit_code
    except click.exceptions.Exit as e:
        return int(e.exit_code or 0)
    return 0


def qsub_main() -> int:
    """`cryocloud-qsub SCRIPT`: the one executable RELION and the CCP-EM Pipeliner call as their queue command."""
    return main(["submit", *sys.argv[1:]])

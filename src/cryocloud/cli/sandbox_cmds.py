"""sandbox up | down | status."""

from __future__ import annotations

import sys
from pathlib import Path

import click


@click.group()
def sandbox() -> None:
    """A local AWS on 127.0.0.1, to rehearse the cloud path at zero cost: the moto server as EC2/IAM/STS, SeaweedFS as
    S3 over HTTPS with its own CA, and an instance simulator that boots each launched instance's user-data in a mount
    namespace where the lab's folders and cryocloud's home are hidden (data reach a node only through S3).

    \b
    eval "$(cryocloud sandbox up)"      # start it; the exports point boto3, aws-cli and cryocloud at it
    aws ec2 describe-instances          # any AWS client works with those exports
    CRYOCLOUD_BACKEND=aws relion &      # "Submit to queue": the job runs on a simulated EC2 instance
    cryocloud sandbox status
    cryocloud sandbox down              # stops everything it started, by PID
    """


@sandbox.command()
@click.option("--hide", type=click.Path(path_type=Path), multiple=True,
              help="Another folder the nodes must not see (cryocloud's home is always hidden), e.g. your projects.")
def up(hide: tuple[Path, ...]) -> None:
    """Start the sandbox (or find it up) and print the `export` lines for a shell to eval."""
    from cryocloud.aws import profiles
    from cryocloud.sandbox import box
    from cryocloud.settings import load_settings

    settings = load_settings()
    state, already = box.up(settings, [p.resolve() for p in hide])
    click.echo("# the sandbox was already up" if already else f"# sandbox up in {state['dir']}: lab bucket "
               f"s3://{state['bucket']}/{state['prefix']}, node role {state['role']}")
    made = profiles.ensure(settings.config_path, {
        "region": state["region"], "staging": f"s3://{state['bucket']}/{state['prefix']}", "image": state["image"],
        "python": sys.executable}, "written by `cryocloud sandbox up`")
    click.echo("# profiles " + ", ".join(f"{n} ({how})" for n, how in made) + f" in {settings.config_path}")
    for line in box.exports(state):
        click.echo(line)


@sandbox.command()
def down() -> None:
    """Stop everything `up` started (the simulator ends its nodes first); leaves nothing listening."""
    from cryocloud.sandbox import box
    from cryocloud.settings import load_settings

    stopped = box.down(load_settings())
    click.echo(f"stopped: {', '.join(stopped)}" if stopped else "the sandbox is not up")


@sandbox.command()
def status() -> None:
    """What runs: the EC2 API, S3, the simulator and its nodes; exit 1 when it is not (all) up."""
    from cryocloud.sandbox import box
    from cryocloud.settings import load_settings

    s = box.status(load_settings())
    if not s["parts"]:
        click.echo("the sandbox is not up (cryocloud sandbox up)")
        raise click.exceptions.Exit(1)
    for name, alive in s["parts"].items():
        click.echo(f"{name}: {'running' if alive else 'NOT running'}")
    for iid in s["orphans"]:
        click.echo(f"ended node {iid}: its simulator had died")
    click.echo(f"nodes running: {', '.join(s['nodes']) or 'none'}")
    if not s["up"]:
        click.echo("hint: cryocloud sandbox down, then up, starts it clean", err=True)
        raise click.exceptions.Exit(1)

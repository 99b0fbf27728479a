"""relion setup, demo-data."""

from __future__ import annotations

import os
from pathlib import Path

import click


@click.group()
def relion() -> None:
    """Connect RELION (3.1-5.0, GUI or relion_pipeliner) and the CCP-EM Pipeliner to cryocloud."""


@relion.command()
@click.argument("project", type=click.Path(path_type=Path), default=".")
def setup(project: Path) -> None:
    """Write the submission template into PROJECT (default: here) and print RELION's environment.

    \b
    Use it as:   eval "$(cryocloud relion setup)"   then start relion from that shell.
    The export lines go to stdout (for eval); what to put in RELION's Running tab goes to stderr.
    """
    from cryocloud.relion_setup import export_lines, relion_environment, write_template
    from cryocloud.settings import load_settings

    settings = load_settings()
    template = write_template(project.resolve())
    env = relion_environment(template, settings)
    click.echo(export_lines(env), nl=False)
    click.echo(
        "\nIn RELION's Running tab:\n"
        "  Submit to queue?             Yes\n"
        f"  Queue name:                  default   (or a profile: local, {', '.join(settings.profiles) or 'slurm'})\n"
        f"  Queue submit command:        {env['RELION_QSUB_COMMAND']}\n"
        f"  Standard submission script:  {template}\n"
        "  Wall time (HH:MM:SS), Max cost (USD), Machine: optional (cryocloud's; their ? buttons explain them)\n"
        "The export lines above make these the defaults: run  eval \"$(cryocloud relion setup)\"  before relion.\n"
        f"Jobs run on '{settings.general.default_profile}' unless the Queue name names a profile.",
        err=True,
    )
    from cryocloud.app.autostart import installed

    if not installed(dict(os.environ)):
        click.echo("So that a job is marked in RELION even after a crash or a reboot, start the monitor at boot "
                   "once:  cryocloud monitor install", err=True)


@click.command("demo-data")
@click.argument("project", type=click.Path(path_type=Path))
@click.option("--particles", default=500, show_default=True, help="Number of particle images.")
@click.option("--movies", default=3, show_default=True, help="Number of small movies (0 for none).")
@click.option("--noise", default=2.0, show_default=True, help="Noise standard deviation (signal ~1).")
@click.option("--seed", default=1, show_default=True, help="Random seed: same seed, same data.")
def demo_data(project: Path, particles: int, movies: int, noise: float, seed: int) -> None:
    """Make a small synthetic RELION project in PROJECT: no download needed.

    A phantom map is projected with relion_project into CTF-affected noisy particles
    (Synthetic/particles.star), a 40 A low-pass reference (Synthetic/ref_lp40.mrc), and a few
    drifting movies (Movies/*.mrc) with an Import job's movies.star, ready for RELION jobs.
    """
    try:
        from cryocloud.demo.dataset import make_project
    except ModuleNotFoundError as e:  # the demo extra (numpy, pandas, starfile, mrcfile) is not installed
        if (e.name or "").partition(".")[0] not in ("numpy", "pandas", "starfile", "mrcfile"):
            raise
        from cryocloud.errors import CryocloudError

        raise CryocloudError(f"demo-data needs {e.name}, which is not installed",
                             "pip install 'cryocloud[demo]'") from e

    summary = make_project(project, n_particles=particles, n_movies=movies, noise=noise, seed=seed)
    click.echo(summary)

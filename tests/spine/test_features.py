"""What a backend can do is data (backends/registry.py); a job that asks for more is refused when it is submitted,
with a hint, before anything is recorded."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from cryocloud.app.submit import features_asked
from cryocloud.backends.registry import BACKENDS, Feature
from cryocloud.backends.slurm_text import SlurmOptions
from cryocloud.errors import SubmissionError
from cryocloud.jobs.relion import job_spec_from_script
from cryocloud.settings import Profile, load_settings
from spine.helpers import make_job


def test_a_fan_out_on_the_aws_backend_is_refused_and_local_runs_it() -> None:
    """A fan-out over cloud instances is the later scale-out issue's: AWS refuses it (tests/fanout prove it
    before anything is recorded); the local backend runs fan-outs (its driver, agent/shards.py)."""
    with pytest.raises(SubmissionError, match="aws backend cannot run a fan-out") as e:
        BACKENDS["aws"].require({Feature.FANOUT})
    assert "local or Slurm" in e.value.hint
    BACKENDS["local"].require({Feature.FANOUT})


def test_a_staged_fan_out_is_refused_by_slurm_and_a_plain_one_is_not(tmp_path: Path) -> None:
    spec = replace(job_spec_from_script(make_job(tmp_path, "External/job001/", ["true"]), tmp_path), tasks=4)
    settings = load_settings()
    staged = Profile("hpc", "slurm", {"staging": str(tmp_path / "store")})
    with pytest.raises(SubmissionError, match="staged fan-out") as e:
        BACKENDS["slurm"].require(features_asked(spec, staged, settings))
    assert 'staging = "none"' in e.value.hint
    BACKENDS["slurm"].require(features_asked(spec, Profile("hpc", "slurm"), settings))  # shared disk: fine
    assert features_asked(replace(spec, tasks=1), Profile("hpc", "slurm"), settings) == set()
    assert features_asked(replace(spec, tasks=1), staged, settings) == {Feature.STAGING}


def test_a_slurm_profile_takes_exactly_the_options_its_class_has() -> None:
    keys = BACKENDS["slurm"].profile_keys()
    assert set(keys) == set(SlurmOptions.keys()) | {"mpi_launcher", "pass_env"} and "profile" not in keys

"""What a job is given of its submitter's environment: everything but secrets (DESIGN: secrets never travel)."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

SECRET = re.compile(r"(SECRET|TOKEN|PASSWORD|PASSWD|CREDENTIAL|PRIVATE_KEY|ACCESS_KEY)", re.IGNORECASE)


def job_environment(env: Mapping[str, str]) -> dict[str, str]:
    """The submitter's environment minus secrets, plus what MPI needs to run here."""
    out = {k: v for k, v in env.items() if not SECRET.search(k)}
    if os.geteuid() == 0:  # Open MPI refuses root without these; containers and CI run as root
        out.setdefault("OMPI_ALLOW_RUN_AS_ROOT", "1")
        out.setdefault("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
    return out

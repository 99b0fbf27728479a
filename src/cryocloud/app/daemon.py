"""The monitor's entry point (`python -m cryocloud.app.daemon`, started by monitor.loop.ensure_monitor): the
loop, handed the app's submission handler, with what a submission needs imported up front."""

from __future__ import annotations

from cryocloud.app.submit import answer_submission
from cryocloud.monitor.loop import run_monitor
from cryocloud.settings import load_settings


def main() -> int:
    import gemmi  # noqa: F401  (warm: the first handed-off submission is as fast as the rest)

    import cryocloud.jobs.relion  # noqa: F401

    return run_monitor(load_settings(), answer_submission)


if __name__ == "__main__":
    raise SystemExit(main())

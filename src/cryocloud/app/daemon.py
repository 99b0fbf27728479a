"""The monitor's entry point (`python -m cryocloud.app.daemon`, started by monitor.loop.ensure_monitor): the
loop, handed the app's submission handler, with what a submission needs imported up front."""

from __future__ import annotations

from cryocloud.app.submit import answer_submission
from cryocloud.monitor.loop import run_monitor
from cryocloud.settings import Settings, load_settings


def main() -> int:
    import gemmi  # noqa: F401  (warm: the first handed-off submission is as fast as the rest)

    import cryocloud.jobs.relion  # noqa: F401

    return run_monitor(load_settings(), answer_submission)


if __name__ == "__main__":
    raise SystemExit(main())


class InProcess:
    """The monitor's loop in a thread of a longer-lived process (`cryocloud serve`): it takes the monitor's lock
    for that process, never leaves while the process runs (idle or not), and stops when asked."""

    def __init__(self, settings: Settings) -> None:
        import threading

        from cryocloud.errors import CryocloudError
        from cryocloud.monitor.loop import hold_lock, monitor_pid

        held = hold_lock(settings)
        if held is None:
            raise CryocloudError(
                f"a cryocloud monitor runs already for {settings.home} (pid {monitor_pid(settings)})",
                "the server runs the monitor itself: wait until that one has no active job and leaves, or stop it "
                "(kill PID; its jobs go on), then start the server")
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=run_monitor, args=(settings, answer_submission), name="monitor",
                                       kwargs={"held": held, "stop_event": self.stop_event}, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.stop_event.set()
        self.thread.join(timeout=30)

"""The states of a job and of its attempts: one enum, compared and stored as its plain string values."""

from __future__ import annotations

from enum import StrEnum


class State(StrEnum):
    QUEUED = "queued"
    STARTING = "starting"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    ABORTED = "aborted"
    REQUEUED = "requeued"  # an attempt that the platform interrupted and the monitor put back in the queue
    GONE = "gone"  # a backend's answer: the job ended without the backend knowing how


STARTED = (State.STARTING, State.RUNNING)
ACTIVE = (State.QUEUED, *STARTED)
FINAL = (State.SUCCEEDED, State.FAILED, State.ABORTED)

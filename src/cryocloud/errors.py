"""One error type for everything a user can fix, with a hint saying how."""

from __future__ import annotations

from collections.abc import Iterable


class CryocloudError(Exception):
    """A problem the user can act on: `message` says what is wrong, `hint` what to do about it."""

    exit_code = 2

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} (hint: {self.hint})" if self.hint else self.message


class ConfigError(CryocloudError):
    """The config file or a CRYOCLOUD_* variable is wrong."""


class SubmissionError(CryocloudError):
    """A submission was refused before anything ran."""


class JobFolderBusy(SubmissionError):
    """The job folder already has an active job: refuse without touching that job's markers."""


class LaunchRefused(SubmissionError):
    """Recorded, then refused by the backend at launch (e.g. an unknown partition): already marked failed."""


class JobNotFound(CryocloudError):
    """No job in the ledger matches what the user typed."""


class CommandError(CryocloudError):
    """An external command failed. Carries the argv, exit code and output."""

    def __init__(self, argv: list[str], returncode: int, stdout: str, stderr: str, hint: str = "") -> None:
        tail = (stderr or stdout).strip().splitlines()[-3:]
        detail = "; ".join(tail) if tail else "no output"
        super().__init__(f"`{' '.join(argv)}` exited with {returncode}: {detail}", hint)
        self.argv = argv
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr


def close_matches(word: str, choices: Iterable[str]) -> str:
    """'did you mean X?' text for a misspelled name, or the list of valid names."""
    import difflib

    near = difflib.get_close_matches(word, sorted(choices), n=3, cutoff=0.6)
    if near:
        return "did you mean " + " or ".join(repr(n) for n in near) + "?"
    return "choose one of: " + ", ".join(sorted(choices))

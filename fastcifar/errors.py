"""The exceptions the CLI turns into one line instead of a traceback.

UserError means "the user asked for something we cannot do": the CLI prints it as a single
line on stderr and exits 2. RunStopped is not an error: a signal stopped a training run
after it saved its checkpoint; the CLI prints its line and exits with its status. Anything
else is a bug and keeps its traceback.
"""
import difflib


class UserError(Exception):
    """Bad input, missing data or a missing optional dependency: one clear line."""


class AgreedError(UserError):
    """A UserError that every rank of a distributed run raises at the same point with the
    same message (divergence agreed on by all ranks, an unreadable checkpoint that rank 0
    read for everyone): rank 0 reports it, the others exit quietly."""


class RunStopped(Exception):
    """A signal (SIGTERM, SIGINT) stopped a training run at a step boundary.

    `exit_status` is 128 + the signal number (143, 130), what a shell reports for a
    process the signal ended.
    """

    def __init__(self, message: str, exit_status: int):
        super().__init__(message)
        self.exit_status = exit_status


class MissingExtraError(UserError):
    """An optional backend (ffcv, dali, ...) is needed but not installed (extra None: a
    dependency that an install made with --no-deps can lack)."""

    def __init__(self, package: str, extra: str | None):
        command = f"pip install 'fastcifar[{extra}]'" if extra else f"pip install {package}"
        super().__init__(f"{package} is not installed; install it with: {command}")


def close_names_hint(name: str, known) -> str:
    """'did you mean: resnet20, ...?' when some known names are close, else all of them."""
    known = list(known)
    close = difflib.get_close_matches(name, known, n=5, cutoff=0.5)
    return f"did you mean: {', '.join(close)}?" if close else f"choose from: {', '.join(known)}"

"""The one exception type that means "the user asked for something we cannot do".

The CLI prints a UserError as a single line on stderr and exits non-zero; anything else
is a bug and keeps its traceback.
"""
import difflib


class UserError(Exception):
    """Bad input, missing data or a missing optional dependency: one clear line."""


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

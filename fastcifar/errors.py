"""The one exception type that means "the user asked for something we cannot do".

The CLI prints a UserError as a single line on stderr and exits non-zero; anything else
is a bug and keeps its traceback.
"""


class UserError(Exception):
    """Bad input, missing data or a missing optional dependency: one clear line."""


class MissingExtraError(UserError):
    """An optional backend (ffcv, dali, ...) is needed but not installed."""

    def __init__(self, package: str, extra: str):
        super().__init__(
            f"{package} is not installed; install it with: pip install 'fastcifar[{extra}]'"
        )

"""What a command can fail with: one line on stderr and an exit code."""

from __future__ import annotations

EXIT_FAILED = 1
EXIT_UNKNOWN_INSTANCE = 2
"""Also argparse's code for a usage error: either way, the command was asked for nothing."""


class CliError(Exception):
    """A failure to report as one line (``duro: error: ...``) with ``exit_code``."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


class UnknownInstanceError(CliError):
    def __init__(self, instance_id: str) -> None:
        super().__init__(f"no instance {instance_id!r} in this store", EXIT_UNKNOWN_INSTANCE)
        self.instance_id = instance_id

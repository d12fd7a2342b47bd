"""Which execution is running: what its recorded effects and turn changes are stamped with."""

from __future__ import annotations

from dataclasses import dataclass

from .._records import TurnChanges


@dataclass(frozen=True, slots=True, kw_only=True)
class Identity:
    """Fixed for the life of an ``Execution``."""

    instance_id: str
    execution_id: int
    name: str
    """The orchestration's registered name."""
    version: str
    """The version that runs: the one recorded in ``OrchestrationStarted``."""

    def new_changes(self) -> TurnChanges:
        """An empty turn of this execution."""
        return TurnChanges(
            instance_id=self.instance_id,
            execution_id=self.execution_id,
            name=self.name,
            version=self.version,
        )

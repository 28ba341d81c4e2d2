"""The evaluator's errors and, in ``ANSWERS``, the HTTP answer each one gets.

    ServiceError (shared.errors)
    └── EvaluatorError
        ├── NoStreamState       404  no checkpointed stream state names the system (API)
        ├── ConfigurationError       an objective that cannot be judged as declared (unknown
        │                            feature, no reference...): its evaluation says so
        ├── SegmentError             a ``segment`` parameter that is not ``attribute=value``
        │                            (label metrics report it as a ConfigurationError)
        ├── ReferenceNotFound        the registry has no profile with this hash (permanent,
        │                            unlike a timeout)
        └── Fenced                   another instance took the partition over since this one
                                     loaded it (the store refuses the checkpoint; the runner
                                     gives the partition up)

Only ``NoStreamState`` reaches HTTP; the others are answered on the processing path.
"""

from __future__ import annotations

from fastapi import status

from shared.errors import Answer, Answers, ServiceError

__all__ = [
    "ANSWERS",
    "ConfigurationError",
    "EvaluatorError",
    "Fenced",
    "NoStreamState",
    "ReferenceNotFound",
    "SegmentError",
]


class EvaluatorError(ServiceError):
    """Anything the evaluator refuses or cannot do."""


class NoStreamState(EvaluatorError, LookupError):
    """No checkpoint holds the stream state of the system asked for."""


class ConfigurationError(EvaluatorError, ValueError):
    """The objective cannot be computed for this system (unknown feature, no reference...)."""


class SegmentError(EvaluatorError, ValueError):
    """A ``segment`` parameter that is not ``attribute=value``."""


class ReferenceNotFound(EvaluatorError, LookupError):
    """The registry has no profile with this hash (a permanent answer, unlike a timeout)."""


class Fenced(EvaluatorError, RuntimeError):
    """Another instance took the partition over since this one loaded it."""

    def __init__(self, partition: int, epoch: int) -> None:
        super().__init__(f"partition {partition} was taken over (epoch {epoch} is stale)")
        self.partition = partition


ANSWERS: Answers = {
    NoStreamState: Answer(status.HTTP_404_NOT_FOUND),
}
"""The evaluator's errors as HTTP answers (``shared.errors.install_answers``)."""

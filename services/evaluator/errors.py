"""The evaluator's errors and, in ``ANSWERS``, the HTTP answer each one gets.

    ServiceError (shared.errors)
    └── EvaluatorError
        ├── NoStreamState       404  no checkpointed stream state names the system (API)
        ├── ConfigurationError       an objective that cannot be judged as declared (unknown
        │                            feature, no reference...): its evaluation says so
        ├── SegmentError             a ``segment`` parameter that is not ``attribute=value``
        │                            (label metrics report it as a ConfigurationError)
        └── ReferenceNotFound        the registry has no profile with this hash (permanent,
                                     unlike a timeout)

``store.Fenced`` (another instance now owns the partition; the runner gives the partition up)
stays beside the store that raises it: it never reaches HTTP.
"""

from __future__ import annotations

from fastapi import status

from shared.errors import Answer, Answers, ServiceError

__all__ = [
    "ANSWERS",
    "ConfigurationError",
    "EvaluatorError",
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


ANSWERS: Answers = {
    NoStreamState: Answer(status.HTTP_404_NOT_FOUND),
}
"""The evaluator's errors as HTTP answers (``shared.errors.install_answers``)."""

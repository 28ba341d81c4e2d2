"""The alerts service's errors and, in ``ANSWERS``, the HTTP answer each one gets.

    ServiceError (shared.errors)
    └── AlertsError
        ├── NotFound             404  no such nonconformity, corrective action or silence
        └── Refused              422  a write the record rules refuse (the message names why)
            └── TransitionError  409  an illegal lifecycle step or an unmet guard; the message
                                      names the missing step

The JSON API answers them through the table; the web UI shows the same message and status
on the record's page (``web._RecordForm.after``).
"""

from __future__ import annotations

from fastapi import status

from shared.errors import Answer, Answers, ServiceError

__all__ = ["ANSWERS", "AlertsError", "NotFound", "Refused", "TransitionError"]


class AlertsError(ServiceError):
    """Anything the alerts service refuses."""


class NotFound(AlertsError, LookupError):
    """No record with that id or reference number."""


class Refused(AlertsError, ValueError):
    """A write the record rules refuse; nothing of it is committed."""


class TransitionError(Refused):
    """An illegal transition or an unmet guard; the message names the missing step."""


ANSWERS: Answers = {
    NotFound: Answer(status.HTTP_404_NOT_FOUND),
    Refused: Answer(status.HTTP_422_UNPROCESSABLE_CONTENT),
    TransitionError: Answer(status.HTTP_409_CONFLICT),
}
"""The alerts service's errors as HTTP answers (``shared.errors.install_answers``)."""

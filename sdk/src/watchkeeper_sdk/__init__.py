"""Watchkeeper SDK: log predictions and outcomes from a serving path, never losing one.

    from watchkeeper_sdk import Watchkeeper

    wk = Watchkeeper("https://watchkeeper.example", api_key, system_id="credit-scoring",
                     model_version="2024-06-01")
    event_id = wk.log_prediction({"age": 41, "income": 52_000.0}, prediction=1,
                                 scores={"0": 0.2, "1": 0.8})
    ...
    wk.log_outcome(event_id, actual=0)

See sdk/README.md for batching, retries, the disk spool and the full-queue policy.
"""

from watchkeeper_sdk._aio import AsyncWatchkeeper
from watchkeeper_sdk._client import Watchkeeper, default_spool_dir
from watchkeeper_sdk._engine import Stats
from watchkeeper_sdk._errors import (
    ClientClosedError,
    ConfigurationError,
    DeliveryError,
    EventKind,
    InvalidEventError,
    RejectedEvent,
    SpoolError,
    WatchkeeperError,
)
from watchkeeper_sdk._events import FeatureValue, Scalar, new_event_id
from watchkeeper_sdk._version import __version__

__all__ = [
    "AsyncWatchkeeper",
    "ClientClosedError",
    "ConfigurationError",
    "DeliveryError",
    "EventKind",
    "FeatureValue",
    "InvalidEventError",
    "RejectedEvent",
    "Scalar",
    "SpoolError",
    "Stats",
    "Watchkeeper",
    "WatchkeeperError",
    "__version__",
    "default_spool_dir",
    "new_event_id",
]

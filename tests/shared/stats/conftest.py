"""Factories shared by the stats tests: reference/current data and Evidently as the oracle."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import pytest

# Evidently 0.7.23 warns while importing (numpy.core is deprecated; litestar's Dependency is
# deprecated). Those warnings are about Evidently's own dependencies, not about the numbers we
# compare, so they are ignored for the import only.
_IMPORT_WARNINGS = (
    ("numpy.core is deprecated", DeprecationWarning),
    ("Call to deprecated function 'Dependency'", Warning),
    ("Use of deprecated class 'DependencyKwarg'", Warning),
)


def _import_evidently() -> SimpleNamespace:
    with warnings.catch_warnings():
        for message, category in _IMPORT_WARNINGS:
            warnings.filterwarnings("ignore", message=message, category=category)
        from evidently import DataDefinition, Dataset, Report
        from evidently.legacy.calculations import stattests
        from evidently.metrics import DriftedColumnsCount, ValueDrift
    return SimpleNamespace(
        DataDefinition=DataDefinition,
        Dataset=Dataset,
        Report=Report,
        ValueDrift=ValueDrift,
        DriftedColumnsCount=DriftedColumnsCount,
        stattests=stattests,
    )


@pytest.fixture(scope="session")
def evidently() -> SimpleNamespace:
    return _import_evidently()


@dataclass(frozen=True)
class EvidentlyVerdict:
    value: float
    drifted: bool


EvidentlyDrift = Callable[..., dict[tuple[str, str], EvidentlyVerdict]]


@pytest.fixture(scope="session")
def evidently_drift(evidently: SimpleNamespace) -> EvidentlyDrift:
    """Run Evidently's ValueDrift for (column, method) cases; returns value and verdict."""

    def run(
        reference: pd.DataFrame,
        current: pd.DataFrame,
        cases: Sequence[tuple[str, str]],
        *,
        numerical: Sequence[str] = (),
        categorical: Sequence[str] = (),
    ) -> dict[tuple[str, str], EvidentlyVerdict]:
        definition = evidently.DataDefinition(
            numerical_columns=list(numerical), categorical_columns=list(categorical)
        )
        report = evidently.Report(
            [evidently.ValueDrift(column=c, method=m) for c, m in cases], include_tests=True
        )
        snapshot = report.run(
            evidently.Dataset.from_pandas(current, data_definition=definition),
            evidently.Dataset.from_pandas(reference, data_definition=definition),
        )
        result: dict[str, Any] = snapshot.dict()
        values = {
            (m["config"]["column"], m["config"]["method"]): float(m["value"])
            for m in result["metrics"]
        }
        verdicts = {
            (t["metric_config"]["params"]["column"], t["metric_config"]["params"]["method"]): t[
                "status"
            ]
            == "FAIL"
            for t in result["tests"]
        }
        return {case: EvidentlyVerdict(values[case], verdicts[case]) for case in cases}

    return run


@pytest.fixture(scope="session")
def evidently_drift_share(evidently: SimpleNamespace) -> Callable[..., tuple[float, bool]]:
    """Evidently's DriftedColumnsCount: (share of drifted columns, dataset drifted)."""

    def run(
        reference: pd.DataFrame,
        current: pd.DataFrame,
        *,
        method: str,
        numerical: Sequence[str] = (),
        categorical: Sequence[str] = (),
    ) -> tuple[float, bool]:
        definition = evidently.DataDefinition(
            numerical_columns=list(numerical), categorical_columns=list(categorical)
        )
        report = evidently.Report(
            [evidently.DriftedColumnsCount(method=method)], include_tests=True
        )
        snapshot = report.run(
            evidently.Dataset.from_pandas(current, data_definition=definition),
            evidently.Dataset.from_pandas(reference, data_definition=definition),
        )
        result: dict[str, Any] = snapshot.dict()
        share = float(result["metrics"][0]["value"]["share"])
        (test,) = result["tests"]
        return share, test["status"] == "FAIL"

    return run


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20_260_101)


@pytest.fixture(scope="session")
def nannyml() -> Iterator[Any]:
    """NannyML 0.13 as the oracle of performance estimation, its usage telemetry off.

    Its estimators warn about pandas and LightGBM internals while they run; those are NannyML's
    own, so the tests call it under ``oracles.quiet()``.
    """
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("NML_DISABLE_USAGE_LOGGING", "1")
        import nannyml

        yield nannyml

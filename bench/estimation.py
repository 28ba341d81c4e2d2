"""Performance estimation side by side with NannyML 0.13.1: mean absolute error of the estimates
against the realised values, per model, shift pattern and metric.

Run with ``make bench-estimation`` (or ``python bench/estimation.py``). The cases are the tests'
(``tests/shared/stats/estimation_cases.py``): CBPE on two classifiers (boosted trees, close to
calibrated; a logistic regression made overconfident) x three shift patterns x six 2,000-row
chunks after a 10,000-row reference; DLE on two models of a heteroscedastic regression (one
fitted well, one misspecified), twelve 10,000-row references each x four shift patterns (the
tests' three and ``threshold``) x six chunks. Prints two tables and one JSON line.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("NML_DISABLE_USAGE_LOGGING", "1")  # NannyML's usage telemetry

from tests.shared.stats import test_cbpe_nannyml as cbpe_cases  # noqa: E402
from tests.shared.stats import test_dle_nannyml as dle_cases  # noqa: E402
from tests.shared.stats.estimation_cases import (  # noqa: E402
    CLASSIFIER_SHIFTS,
    CLASSIFIERS,
    REGRESSION_EXTRA_SHIFTS,
    REGRESSION_MODELS,
    REGRESSION_SHIFTS,
    classification_case,
    quiet,
)


def cbpe(nannyml: Any) -> dict[str, Any]:
    print(
        "== CBPE: MAE of the estimates against the realised values "
        "(ours / NannyML's / ours before calibration) =="
    )
    print(f"{'model':24} {'shift':18} " + " ".join(f"{m:>23}" for m in cbpe_cases.METRICS))
    figures: dict[str, Any] = {}
    for model in CLASSIFIERS:
        for shift in CLASSIFIER_SHIFTS:
            case = classification_case(model, shift)
            started = time.perf_counter()
            profile = cbpe_cases.profile_of(case)
            fit_s = time.perf_counter() - started
            assert profile.performance is not None
            calibration = profile.performance.calibration["1"]
            _, theirs = cbpe_cases.nannyml_cbpe(nannyml, case)
            mine: dict[str, list[float]] = {m: [] for m in cbpe_cases.METRICS}
            their: dict[str, list[float]] = {m: [] for m in cbpe_cases.METRICS}
            raw: dict[str, list[float]] = {m: [] for m in cbpe_cases.METRICS}
            for k, chunk in enumerate(cbpe_cases.chunks(case.analysis)):
                truth = cbpe_cases.realised(chunk)
                values = cbpe_cases.ours(chunk, calibration)["values"]
                as_given = cbpe_cases.ours(chunk, None)["values"]
                for metric in cbpe_cases.METRICS:
                    mine[metric].append(abs(values[metric] - truth[metric]))
                    raw[metric].append(abs(as_given[metric] - truth[metric]))
                    their[metric].append(
                        abs(float(theirs[(metric, "value")].iloc[k]) - truth[metric])
                    )
            row = {
                m: tuple(round(float(np.mean(errors[m])), 4) for errors in (mine, their, raw))
                for m in cbpe_cases.METRICS
            }
            cells = " ".join(f"{a:.4f}/{b:.4f}/{c:.4f}" for a, b, c in row.values())
            print(f"{model:24} {shift:18} {cells}")
            figures[f"cbpe:{model}:{shift}"] = {
                **row,
                "calibrated": calibration.applied,
                "profile_s": round(fit_s, 2),
            }
    return figures


def dle(nannyml: Any) -> dict[str, Any]:
    print(
        "\n== DLE: MAE of the estimates against the realised values (ours / NannyML's), "
        f"{len(dle_cases.SEEDS)} references per model =="
    )
    shifts = (*REGRESSION_SHIFTS, *REGRESSION_EXTRA_SHIFTS)
    mine, their, fits = dle_cases.side_by_side(nannyml, REGRESSION_MODELS, shifts)
    figures: dict[str, Any] = {
        "dle_fit_s": (round(min(fits), 2), round(float(np.median(fits)), 2), round(max(fits), 2))
    }
    print(f"{'model':13} {'shift':12} {'mae':>15} {'rmse':>15}")
    for model in REGRESSION_MODELS:
        for shift in (*shifts, "all"):
            cells = []
            for metric in ("mae", "rmse"):
                keys = [
                    k for k in mine if k[0] == model and k[2] == metric and shift in (k[1], "all")
                ]
                a = float(np.mean([e for key in keys for e in mine[key]]))
                b = float(np.mean([e for key in keys for e in their[key]]))
                cells.append(f"{a:.4f}/{b:.4f}")
                figures[f"dle:{model}:{shift}:{metric}"] = (round(a, 5), round(b, 5))
            print(f"{model:13} {shift:12} {cells[0]:>15} {cells[1]:>15}")
    low, median, high = figures["dle_fit_s"]
    print(f"profile with the loss model: {low}-{high} s (median {median}) per 10,000-row reference")
    return figures


def main() -> None:
    parts = sys.argv[1:] or ["cbpe", "dle"]  # python bench/estimation.py dle: DLE only
    with quiet():
        import nannyml
    figures: dict[str, Any] = {}
    for part in parts:
        figures.update({"cbpe": cbpe, "dle": dle}[part](nannyml))
    print(json.dumps(figures))


if __name__ == "__main__":
    main()

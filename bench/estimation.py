"""Performance estimation side by side with NannyML 0.13.1: mean absolute error of the estimates
against the realised values, per model, shift pattern and metric.

Run with ``make bench-estimation`` (or ``python bench/estimation.py``). The cases are the tests'
(``tests/shared/stats/estimation_cases.py``): CBPE on two classifiers (boosted trees, close to
calibrated; a logistic regression made overconfident) x three shift patterns x six 2,000-row
chunks after a 10,000-row reference; DLE on a heteroscedastic regression, three references x
three shift patterns x six chunks. Prints two tables and one JSON line.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("NML_DISABLE_USAGE_LOGGING", "1")  # NannyML's usage telemetry

from tests.shared.stats import test_cbpe_nannyml as cbpe_cases  # noqa: E402
from tests.shared.stats import test_dle_nannyml as dle_cases  # noqa: E402
from tests.shared.stats.estimation_cases import (  # noqa: E402
    CHUNK,
    CHUNKS,
    CLASSIFIER_SHIFTS,
    CLASSIFIERS,
    REFERENCE_ROWS,
    REGRESSION_SHIFTS,
    classification_case,
    quiet,
    regression_frame,
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
    print("\n== DLE: MAE of the estimates against the realised values (ours / NannyML's) ==")
    mine: dict[tuple[str, str], list[float]] = {}
    their: dict[tuple[str, str], list[float]] = {}
    fits = []
    for seed in dle_cases.SEEDS:
        reference = regression_frame(REFERENCE_ROWS, seed)
        started = time.perf_counter()
        model = dle_cases.loss_model(reference)
        fits.append(time.perf_counter() - started)
        for p, shift in enumerate(REGRESSION_SHIFTS):
            analysis = pd.concat(
                [regression_frame(CHUNK, 1_000 * seed + 10 * k + p, shift) for k in range(CHUNKS)],
                ignore_index=True,
            )
            theirs = dle_cases.nannyml_dle(nannyml, reference, analysis)
            for k in range(CHUNKS):
                chunk = analysis.iloc[k * CHUNK : (k + 1) * CHUNK]
                error = chunk["actual"] - chunk["prediction"]
                truth = {"mae": error.abs().mean(), "rmse": float(np.sqrt((error**2).mean()))}
                acc = dle_cases.estimate(model, chunk)
                ours = {
                    "mae": dle_cases.estimated_mae(acc),
                    "rmse": dle_cases.estimated_rmse(acc),
                }
                for metric, value in ours.items():
                    their_value = float(theirs[(metric, "value")].iloc[k])
                    mine.setdefault((shift, metric), []).append(abs(value - truth[metric]))
                    their.setdefault((shift, metric), []).append(abs(their_value - truth[metric]))
    figures: dict[str, Any] = {"dle_fit_s": round(float(np.mean(fits)), 2)}
    print(f"{'shift':18} {'mae':>17} {'rmse':>17}")
    for shift in (*REGRESSION_SHIFTS, "all"):
        cells = []
        for metric in ("mae", "rmse"):
            keys = [k for k in mine if k[1] == metric and shift in (k[0], "all")]
            a = float(np.mean([e for key in keys for e in mine[key]]))
            b = float(np.mean([e for key in keys for e in their[key]]))
            cells.append(f"{a:.4f}/{b:.4f}")
            figures[f"dle:{shift}:{metric}"] = (round(a, 5), round(b, 5))
        print(f"{shift:18} {cells[0]:>17} {cells[1]:>17}")
    print(f"loss model fit: {figures['dle_fit_s']} s per 10,000-row reference (mean of 3)")
    return figures


def main() -> None:
    with quiet():
        import nannyml
    figures = cbpe(nannyml)
    figures.update(dle(nannyml))
    print(json.dumps(figures))


if __name__ == "__main__":
    main()

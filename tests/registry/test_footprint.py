"""The registry process stays small: it never imports pandas or scipy (about 95 MB resident).

``make bench-registry`` measures the peak memory of a 1 GB upload; this guards the import
footprint it depends on, by profiling a small upload in a fresh interpreter.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = r"""
import sys
from pathlib import Path
import numpy as np
import services.registry.app  # everything the registry process imports at start
from services.registry.references import plan_columns, profile_parquet, validate_to_parquet
from shared.contracts import FeatureSpec, Task

work = Path(sys.argv[1])
rng = np.random.default_rng(0)
n = 20_000
rows = zip(
    np.round(rng.lognormal(10, 1, n), 1),
    np.array(["north", "south"])[rng.integers(0, 2, n)],
    np.array(["true", "false", ""])[rng.integers(0, 3, n)],
    rng.integers(0, 2, n),
    rng.random(n),
    rng.integers(0, 2, n),
)
lines = ["income,region,existing_customer,prediction,score_1,actual"]
lines += [",".join(str(v) for v in row) for row in rows]
(work / "reference.csv").write_text("\n".join(lines) + "\n")
features = [
    FeatureSpec(name="income", type="numeric", min=0),
    FeatureSpec(name="region", type="categorical", categories=["north", "south"]),
    FeatureSpec(name="existing_customer", type="boolean", nullable=True),
]
rules = plan_columns(features=features, task=Task.BINARY_CLASSIFICATION, classes=["0", "1"],
                     score_classes=["1"], prediction_column="prediction", target_column="actual")
validated = validate_to_parquet(work / "reference.csv", "csv", rules, work / "out.parquet")
profile, _ = profile_parquet(validated, collect_budget=1_000)
assert profile.n_rows == n
assert profile.performance is not None  # outcomes: the calibration is fitted too
heavy = sorted(m for m in ("pandas", "scipy", "sklearn", "evidently") if m in sys.modules)
print(",".join(heavy) or "none")
"""


def test_profiling_an_upload_imports_neither_pandas_nor_scipy(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "none"

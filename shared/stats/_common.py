"""Small pieces every stats module needs: category keys, JSON-able arrays, the no-data error."""

from __future__ import annotations

import base64
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = [
    "FloatArray",
    "InsufficientData",
    "IntArray",
    "Scalar",
    "State",
    "as_float_array",
    "category_key",
    "category_keys",
    "combine_moments",
    "decode_array",
    "encode_array",
    "merge_value_counts",
    "rng_from_state",
    "rng_state",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
State = dict[str, Any]
"""A checkpoint of an accumulator: plain JSON types only (orjson/json can write it as is)."""

Scalar = str | int | float | bool


class InsufficientData(ValueError):
    """The window holds too little data for the metric to be defined (no events, one class...)."""


def as_float_array(values: npt.ArrayLike) -> FloatArray:
    """A flat float64 copy-free view where possible; ``None`` becomes NaN."""
    return np.asarray(values, dtype=np.float64).reshape(-1)


def _float_keys(values: FloatArray) -> npt.NDArray[np.str_]:
    # Integral floats print as integers so that 1.0 from a float column and 1 from a JSON
    # event are the same category (pandas value_counts treats them as equal too).
    integral = np.isfinite(values) & (values == np.trunc(values)) & (np.abs(values) < 2.0**53)
    if integral.all():
        ints: npt.NDArray[np.str_] = values.astype(np.int64).astype(np.str_)
        return ints
    keys = values.astype(np.str_)
    if integral.any():
        keys = keys.astype(object)
        keys[integral] = values[integral].astype(np.int64).astype(np.str_)
        keys = keys.astype(np.str_)
    return keys


def category_keys(values: npt.ArrayLike) -> tuple[npt.NDArray[np.str_], npt.NDArray[np.bool_]]:
    """Categorical values as strings plus a missing mask (None/NaN), one entry per input value.

    Categories are compared as strings everywhere (reference profile, accumulators, confusion
    counts) so that checkpoints are JSON and a category read back from JSON is the same key.
    Booleans become ``"True"``/``"False"``, integral numbers print without a decimal point.
    """
    arr = np.asarray(values)
    if arr.ndim != 1:
        arr = arr.reshape(-1)
    if arr.dtype == np.bool_:
        return np.where(arr, "True", "False"), np.zeros(arr.shape, dtype=np.bool_)
    if arr.dtype.kind in "US":
        return arr.astype(np.str_), np.zeros(arr.shape, dtype=np.bool_)
    if arr.dtype.kind in "iu":
        return arr.astype(np.str_), np.zeros(arr.shape, dtype=np.bool_)
    if arr.dtype.kind == "f":
        missing = np.isnan(arr)
        return _float_keys(arr.astype(np.float64)), missing
    items: list[Any] = arr.tolist()
    kinds = set(map(type, items))
    if kinds == {str}:  # the common cases, without pandas' type inference
        return arr.astype(np.str_), np.zeros(arr.shape, dtype=np.bool_)
    if kinds == {int} and min(items) > -(2**53) and max(items) < 2**53:
        ints: npt.NDArray[np.str_] = np.asarray(items, dtype=np.int64).astype(np.str_)
        return ints, np.zeros(arr.shape, dtype=np.bool_)
    import pandas as pd  # here, not at the top: only mixed object arrays need it, and it is heavy

    missing = np.asarray(pd.isna(arr), dtype=np.bool_)
    present = arr[~missing]
    inferred = pd.api.types.infer_dtype(present, skipna=False)
    keys = np.full(arr.shape, "", dtype=object)
    if inferred in ("floating", "integer", "mixed-integer-float", "decimal"):
        keys[~missing] = _float_keys(present.astype(np.float64))
    elif inferred == "boolean":
        keys[~missing] = np.where(present.astype(np.bool_), "True", "False")
    else:
        keys[~missing] = present.astype(np.str_)
    return keys.astype(np.str_), missing


def category_key(value: Scalar) -> str:
    """The key :func:`category_keys` gives one value."""
    keys, missing = category_keys(np.asarray([value], dtype=object))
    if missing[0]:
        raise ValueError("a missing value has no category key")
    return str(keys[0])


def combine_moments(
    n_a: int, mean_a: float, m2_a: float, n_b: int, mean_b: float, m2_b: float
) -> tuple[int, float, float]:
    """Chan et al.'s parallel update of (count, mean, sum of squared deviations).

    Used instead of a running sum of squares, which loses all precision when the mean is large
    relative to the spread.
    """
    n = n_a + n_b
    if n_b == 0:
        return n_a, mean_a, m2_a
    if n_a == 0:
        return n_b, mean_b, m2_b
    delta = mean_b - mean_a
    mean = mean_a + delta * n_b / n
    m2 = m2_a + m2_b + delta * delta * n_a * n_b / n
    return n, mean, m2


def encode_array(array: npt.NDArray[Any]) -> dict[str, str]:
    """A 1-D numeric array as base64 of its little-endian bytes: exact and compact in JSON."""
    dtype = array.dtype.newbyteorder("<")
    data = np.ascontiguousarray(array, dtype=dtype).tobytes()
    return {"dtype": dtype.str, "data": base64.b64encode(data).decode("ascii")}


def decode_array(state: dict[str, str]) -> npt.NDArray[Any]:
    raw = base64.b64decode(state["data"])
    return np.frombuffer(raw, dtype=np.dtype(state["dtype"])).copy()


def rng_state(rng: np.random.Generator) -> State:
    """The generator's exact position; 128-bit integers are strings (orjson refuses big ints)."""
    state = rng.bit_generator.state
    if state["bit_generator"] != "PCG64":
        raise ValueError("only PCG64 generators can be checkpointed")
    return {
        "state": str(state["state"]["state"]),
        "inc": str(state["state"]["inc"]),
        "has_uint32": int(state["has_uint32"]),
        "uinteger": int(state["uinteger"]),
    }


def rng_from_state(state: State) -> np.random.Generator:
    bit_generator = np.random.PCG64()
    bit_generator.state = {
        "bit_generator": "PCG64",
        "state": {"state": int(state["state"]), "inc": int(state["inc"])},
        "has_uint32": int(state["has_uint32"]),
        "uinteger": int(state["uinteger"]),
    }
    return np.random.Generator(bit_generator)


def merge_value_counts(
    values: FloatArray, counts: IntArray, more_values: FloatArray, more_counts: IntArray, limit: int
) -> tuple[FloatArray, IntArray] | None:
    """Counts per distinct value of both (values sorted); None when there are more than
    ``limit`` distinct values (the caller stops counting)."""
    merged, inverse = np.unique(np.concatenate([values, more_values]), return_inverse=True)
    if merged.size > limit:
        return None
    summed = np.bincount(
        inverse, weights=np.concatenate([counts, more_counts]), minlength=merged.size
    ).astype(np.int64)
    return merged, summed

"""Label metrics of one window, accumulated as the labels arrive (pure).

A window's labels are not re-read at each revision: every label joined to one of its
predictions is added, when it arrives, to the :class:`LabelSet` of the revision it belongs to
(its *bucket*: revision ``k`` holds the labels timed before cut-off ``c_k``, see ``windows``).
Emitting revision ``k`` merges buckets up to ``k`` into ``cumulative`` and computes every label
objective from it, so a revision costs the size of the accumulators, not of the window.

What is accumulated follows the label objectives at the time (:func:`label_needs`): one
confusion matrix without scores for accuracy, precision, recall and F1, one with the scores of
each positive label for ROC AUC, log loss, Brier score and calibration, regression sums, and
per-group counts for equal opportunity (with the labelled positive predictions for equalized
odds); label delays and the count of labels always. A need that appears after the window got
labels is computed on the labels after it appeared (and says so). A segmented objective's need
(``estimation.segmented``) accumulates only the labels of its segment's predictions. Every
performance value comes with its sampling error (``performance.sampling_error``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson

from shared.contracts import Objective, Task
from shared.stats import (
    ConfusionAccumulator,
    FairnessAccumulator,
    InsufficientData,
    OperationsAccumulator,
    QuantileSketch,
    RegressionAccumulator,
    accuracy,
    brier,
    category_keys,
    equal_opportunity_difference,
    expected_calibration_error,
    f1,
    label_coverage,
    label_delay_percentile,
    log_loss,
    mae,
    mape,
    precision,
    r2,
    recall,
    rmse,
    roc_auc,
)
from shared.stats.fairness import GroupConfusionAccumulator, equalized_odds_difference
from shared.stats.performance import sampling_error

from .columns import objects
from .decoding import numeric_values
from .estimation import SegmentError, segment_of, segment_rows, segmented, split_segment
from .judge import ConfigurationError, Measurement, percentile_of
from .plan import NeedKey, positive_label

__all__ = ["LabelBatch", "LabelSet", "LabelWindow", "label_needs", "measure_labels"]

SCORED = frozenset({"roc_auc", "log_loss", "brier", "calibration_error"})
REGRESSION = frozenset({"mae", "rmse", "mape", "r2"})
PARTIAL = "objective started during the window; computed on part of it"

LabelAccumulator = ConfusionAccumulator | RegressionAccumulator | FairnessAccumulator
"""(A ``GroupConfusionAccumulator`` is a ``FairnessAccumulator``.)"""


def need_of(objective: Objective) -> NeedKey | None:
    """What a label objective reads (None: only the count and the delays), behind its segment."""
    try:
        return segmented(objective, _unsegmented_need(objective))
    except SegmentError:
        return None  # measured as an error (the registry refuses such a segment)


def _unsegmented_need(objective: Objective) -> NeedKey | None:
    metric = objective.metric
    if metric in REGRESSION:
        return ("regression",)
    if metric in SCORED:
        return ("confusion", positive_label(objective))
    if metric in ("accuracy", "precision", "recall", "f1"):
        return ("confusion",)
    if metric == "equal_opportunity_difference":
        return ("fairness", objective.parameters.get("attribute", ""), positive_label(objective))
    if metric == "equalized_odds_difference":
        attribute = objective.parameters.get("attribute", "")
        return ("fairness_odds", attribute, positive_label(objective))
    return None


def label_needs(objectives: Iterable[Objective]) -> list[NeedKey]:
    needs = {need_of(o): None for o in objectives}
    return [n for n in needs if n is not None]


def _new(key: NeedKey) -> LabelAccumulator:
    key, _ = split_segment(key)
    if key[0] == "regression":
        return RegressionAccumulator()
    if key[0] == "fairness":
        return FairnessAccumulator(positive_label=key[2])
    if key[0] == "fairness_odds":
        return GroupConfusionAccumulator(positive_label=key[2])
    return ConfusionAccumulator(positive_label=key[1] if len(key) > 1 else None)


def _from_state(key: NeedKey, state: dict[str, Any]) -> LabelAccumulator:
    key, _ = split_segment(key)
    if key[0] == "regression":
        return RegressionAccumulator.from_state(state)
    if key[0] == "fairness":
        return FairnessAccumulator.from_state(state)
    if key[0] == "fairness_odds":
        return GroupConfusionAccumulator.from_state(state)
    return ConfusionAccumulator.from_state(state)


class LabelBatch:
    """Labels joined to predictions of one window, one revision bucket: columns of texts as
    the join state stores them, parsed once when a need reads them."""

    def __init__(
        self,
        *,
        predicted: Sequence[str | None],
        actual: Sequence[str | None],
        scores: Sequence[str | None],
        attributes: Sequence[str | None],
        delay_s: npt.NDArray[np.float64],
        partitions: npt.NDArray[np.int64],
        offsets: npt.NDArray[np.int64],
    ) -> None:
        self.size = len(actual)
        self._texts = {
            "predicted": predicted,
            "actual": actual,
            "scores": scores,
            "attributes": attributes,
        }
        self._parsed: dict[str, list[Any]] = {}
        self._keys: dict[str, tuple[npt.NDArray[np.str_], npt.NDArray[np.bool_]]] = {}
        self.delay_s = delay_s
        self.partitions = partitions
        self.offsets = offsets

    def parsed(self, name: str) -> list[Any]:
        found = self._parsed.get(name)
        if found is None:
            texts = self._texts[name]
            body = ",".join(["null" if t is None else t for t in texts])
            found = self._parsed[name] = list(orjson.loads("[" + body + "]"))
        return found

    def keys(self, name: str) -> tuple[npt.NDArray[np.str_], npt.NDArray[np.bool_]]:
        """``category_keys`` of a parsed column (keys, missing), computed once."""
        found = self._keys.get(name)
        if found is None:
            found = self._keys[name] = category_keys(objects(self.parsed(name)))
        return found

    def prepare(self, needs: Sequence[NeedKey]) -> None:
        """Parse (once, for the whole batch) the columns ``needs`` read."""
        if not needs:
            return
        self.parsed("predicted")
        self.parsed("actual")
        if any(split_segment(k)[1] is not None for k in needs):
            self.parsed("attributes")
        needs = [split_segment(k)[0] for k in needs]
        if any(k[0] == "confusion" for k in needs):
            self.keys("predicted")
            self.keys("actual")
        if any(k[0] == "confusion" and len(k) > 1 for k in needs):
            self.parsed("scores")
        if any(k[0] in ("fairness", "fairness_odds") for k in needs):
            self.parsed("attributes")

    def take(self, rows: npt.NDArray[np.intp]) -> LabelBatch:
        if rows.size == self.size:
            return self
        chosen = rows.tolist()
        texts = {name: [values[i] for i in chosen] for name, values in self._texts.items()}
        taken = LabelBatch(
            predicted=texts["predicted"],
            actual=texts["actual"],
            scores=texts["scores"],
            attributes=texts["attributes"],
            delay_s=self.delay_s[rows],
            partitions=self.partitions[rows],
            offsets=self.offsets[rows],
        )
        for name, values in self._parsed.items():
            taken._parsed[name] = [values[i] for i in chosen]
        for name, (keys, missing) in self._keys.items():
            taken._keys[name] = (keys[rows], missing[rows])
        return taken


def _attribute(labels: LabelBatch, attribute: str) -> npt.NDArray[Any]:
    return objects([None if a is None else a.get(attribute) for a in labels.parsed("attributes")])


def _in_segment(labels: LabelBatch, segment: tuple[str, str]) -> LabelBatch:
    return labels.take(np.flatnonzero(segment_rows(_attribute(labels, segment[0]), segment)))


def _update(acc: LabelAccumulator, key: NeedKey, labels: LabelBatch) -> None:
    """Add ``labels`` to ``acc``, the accumulator of the unsegmented need ``key``."""
    if isinstance(acc, RegressionAccumulator):
        acc.update(
            numeric_values(labels.parsed("actual")), numeric_values(labels.parsed("predicted"))
        )
    elif isinstance(acc, FairnessAccumulator):
        acc.update_labelled(
            _attribute(labels, key[1]),
            objects(labels.parsed("predicted")),
            objects(labels.parsed("actual")),
        )
    elif acc.positive_label is None:
        acc.update_keys(labels.keys("actual"), labels.keys("predicted"))
    else:
        label = key[1]
        scores = np.fromiter(
            (
                math.nan if s is None or s.get(label) is None else float(s[label])
                for s in labels.parsed("scores")
            ),
            dtype=np.float64,
            count=labels.size,
        )
        acc.update_keys(labels.keys("actual"), labels.keys("predicted"), scores)


class LabelSet:
    """The accumulators of a set of labels of one window (mergeable, bounded)."""

    def __init__(self) -> None:
        self.n = 0
        self.delays = QuantileSketch()
        self.accumulators: dict[NeedKey, LabelAccumulator] = {}
        self.offsets: dict[int, list[int]] = {}
        """Outcome offsets per partition: [first, last]."""

    def update(self, needs: Sequence[NeedKey], labels: LabelBatch) -> None:
        if not labels.size:
            return
        self.n += labels.size
        self.delays.update(labels.delay_s)
        partitions = labels.partitions
        first = int(partitions[0])
        groups = [first] if (partitions == first).all() else np.unique(partitions).tolist()
        for partition in groups:
            chosen = labels.offsets if len(groups) == 1 else labels.offsets[partitions == partition]
            low, high = int(chosen.min()), int(chosen.max())
            span = self.offsets.setdefault(partition, [low, high])
            span[0] = min(span[0], low)
            span[1] = max(span[1], high)
        if not needs:
            return
        for key in needs:
            acc = self.accumulators.get(key)
            if acc is None:
                acc = self.accumulators[key] = _new(key)
            base, segment = split_segment(key)
            chosen = labels if segment is None else _in_segment(labels, segment)
            if chosen.size:
                _update(acc, base, chosen)

    def merge(self, other: LabelSet) -> None:
        self.n += other.n
        self.delays.merge(other.delays)
        for key, acc in other.accumulators.items():
            mine = self.accumulators.get(key)
            if mine is None:
                self.accumulators[key] = _from_state(key, acc.to_state())
            else:
                mine.merge(acc)  # type: ignore[arg-type]
        for partition, (first, last) in other.offsets.items():
            span = self.offsets.setdefault(partition, [first, last])
            span[0] = min(span[0], first)
            span[1] = max(span[1], last)

    def to_state(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "delays": self.delays.to_state(),
            "accumulators": [[list(k), a.to_state()] for k, a in self.accumulators.items()],
            "offsets": {str(p): span for p, span in self.offsets.items()},
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> LabelSet:
        labels = cls()
        labels.n = int(state["n"])
        labels.delays = QuantileSketch.from_state(state["delays"])
        for key, acc in state["accumulators"]:
            need = tuple(key)
            labels.accumulators[need] = _from_state(need, acc)
        labels.offsets = {int(p): list(span) for p, span in state["offsets"].items()}
        return labels


class LabelWindow:
    """Label state of one event-time window: labels in emitted revisions (``cumulative``),
    labels waiting for their revision (``buckets`` by revision index), and what the results
    need from the window's predictions (count, offsets, model version)."""

    def __init__(self, *, start: int, size: int) -> None:
        self.start = start
        self.size = size
        self.closed = False
        self.total = 0
        """Predictions accepted into the window (known once it closed)."""
        self.model_version = ""
        self.offsets: dict[int, list[int]] = {}
        self.emitted: int | None = None
        """Index of the newest revision emitted (None: revision 0 is still to come)."""
        self.revisions: dict[str, int] = {}
        """Newest revision number emitted per objective id."""
        self.cumulative = LabelSet()
        self.buckets: dict[int, LabelSet] = {}
        self.needs: dict[NeedKey, int] = {}
        """Each need, with the number of labels the window had before it was accumulated."""
        self.labels = 0

    def add(self, k: int, needs: Sequence[NeedKey], labels: LabelBatch) -> None:
        for key in needs:
            self.needs.setdefault(key, self.labels)
        self.buckets.setdefault(k, LabelSet()).update(needs, labels)
        self.labels += labels.size

    def merge_through(self, k: int | None) -> None:
        """Move buckets up to revision ``k`` (all of them when None) into ``cumulative``."""
        for key in sorted(self.buckets):
            if k is None or key <= k:
                self.cumulative.merge(self.buckets.pop(key))

    def next_revision(self, objective_id: str) -> int:
        revision = self.revisions.get(objective_id, -1) + 1
        self.revisions[objective_id] = revision
        return revision

    def to_json(self) -> str:
        return orjson.dumps(
            {
                "start": self.start,
                "size": self.size,
                "closed": self.closed,
                "total": self.total,
                "model_version": self.model_version,
                "offsets": {str(p): span for p, span in self.offsets.items()},
                "emitted": self.emitted,
                "revisions": self.revisions,
                "cumulative": self.cumulative.to_state(),
                "buckets": {str(k): b.to_state() for k, b in self.buckets.items()},
                "needs": [[list(k), v] for k, v in self.needs.items()],
                "labels": self.labels,
            }
        ).decode()

    @classmethod
    def from_json(cls, text: str) -> LabelWindow:
        data: dict[str, Any] = orjson.loads(text)
        window = cls(start=int(data["start"]), size=int(data["size"]))
        window.closed = bool(data["closed"])
        window.total = int(data["total"])
        window.model_version = str(data["model_version"])
        window.offsets = {int(p): list(span) for p, span in data["offsets"].items()}
        window.emitted = None if data["emitted"] is None else int(data["emitted"])
        window.revisions = {str(k): int(v) for k, v in data["revisions"].items()}
        window.cumulative = LabelSet.from_state(data["cumulative"])
        window.buckets = {int(k): LabelSet.from_state(v) for k, v in data["buckets"].items()}
        window.needs = {tuple(k): int(v) for k, v in data["needs"]}
        window.labels = int(data["labels"])
        return window


def measure_labels(objective: Objective, task: Task, window: LabelWindow) -> Measurement:
    """A label metric over the labels of the window's emitted revisions."""
    metric = objective.metric
    labels = window.cumulative
    n = labels.n
    if metric == "label_coverage":
        ops = OperationsAccumulator()
        ops.predictions, ops.labelled = window.total, n
        return Measurement(label_coverage(ops), window.total)
    if metric == "label_delay_percentile":
        ops = OperationsAccumulator()
        ops.label_delay_s = labels.delays
        return Measurement(label_delay_percentile(ops, percentile_of(objective)), n)
    if n == 0:
        raise InsufficientData("no labelled predictions in the window")
    try:
        segment_of(objective)
    except SegmentError as exc:
        raise ConfigurationError(str(exc)) from None
    need = need_of(objective)
    if metric in REGRESSION and task is not Task.REGRESSION:
        raise ConfigurationError(f"{metric} needs a regression system")
    if need is None:
        raise ConfigurationError(f"metric {metric!r} is not a label metric")
    acc = labels.accumulators.get(need)
    if acc is None:
        raise InsufficientData("no labels accumulated since the objective started")
    detail = PARTIAL if window.needs.get(need, 0) > 0 else None
    value: float
    if isinstance(acc, GroupConfusionAccumulator):
        privileged = objective.parameters.get("privileged")
        return Measurement(equalized_odds_difference(acc, privileged=privileged), n, detail=detail)
    if isinstance(acc, FairnessAccumulator):
        value = equal_opportunity_difference(acc, privileged=objective.parameters.get("privileged"))
        return Measurement(value, n, detail=detail)
    if isinstance(acc, RegressionAccumulator):
        value = {"mae": mae, "rmse": rmse, "mape": mape, "r2": r2}[metric](acc)
        n_samples = acc.n
    else:
        explicit = objective.parameters.get("positive_label")
        if metric == "accuracy":
            value, n_samples = accuracy(acc), acc.n
        elif metric in ("precision", "recall", "f1"):
            fn = {"precision": precision, "recall": recall, "f1": f1}[metric]
            value, n_samples = fn(acc, positive_label=explicit), acc.n
        else:
            scored = {
                "roc_auc": roc_auc,
                "log_loss": log_loss,
                "brier": brier,
                "calibration_error": expected_calibration_error,
            }[metric]
            value, n_samples = scored(acc), acc.n_scored
    return Measurement(
        value,
        n_samples,
        detail=detail,
        sampling_error=sampling_error(
            metric, acc, positive_label=objective.parameters.get("positive_label")
        ),
    )

"""Evaluator: joins outcomes to predictions, closes windows, judges objectives."""

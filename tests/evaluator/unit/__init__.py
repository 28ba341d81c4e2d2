"""Unit tests of the evaluator's pure modules (no Kafka, no database), one file per module."""

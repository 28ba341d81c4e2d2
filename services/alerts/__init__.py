"""Alerts: turns breaching evaluations into nonconformities (ISO/IEC 42001 clause 10.2)."""

"""Ingest: validates prediction and outcome events and produces them to the bus."""

"""The library every Watchkeeper service uses: contracts, bus, database, settings, metrics."""

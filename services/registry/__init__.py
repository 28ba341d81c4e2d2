"""Registry: AI systems, their feature schemas and versioned objectives (ISO/IEC 42001 6.2)."""

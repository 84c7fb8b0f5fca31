"""Word lists of the data generator (bench.generate)."""

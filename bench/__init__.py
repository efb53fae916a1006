"""rewards-engine's own benchmark harness: `python -m bench --help`."""

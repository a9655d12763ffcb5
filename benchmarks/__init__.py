"""Scripts that print speed and memory figures: `uv run python benchmarks/NAME.py`."""

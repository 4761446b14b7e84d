"""A local emulator of Azure ML managed online endpoints: same REST API, real score.py instances."""

"""Benchmarks: functions that return numbers (units in their docstrings); the CLI prints and saves."""

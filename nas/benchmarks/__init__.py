"""Tabular benchmarks: a trial is a table lookup (NAS-Bench-201)."""

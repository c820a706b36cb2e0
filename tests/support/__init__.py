"""Test-only builders: tiny real models the tests and benchmarks make themselves (never shipped)."""

"""Test harness: a real Prometheus (re-exported from `costoperator.promserver`) and exporters.

Importable as `harness` from any test: `tests/` has no `__init__.py`, so pytest's default
`prepend` import mode puts `tests/` itself on `sys.path` when it loads `tests/conftest.py`.
"""

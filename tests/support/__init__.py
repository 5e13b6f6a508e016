"""Test support: real processes and in-process fakes shared by tests/, bench/ and deploy/.

Importable as `support` because tests/ is on the path: pytest puts it there
(`pythonpath` in pyproject.toml); bench/ and deploy/ scripts add it themselves.
"""

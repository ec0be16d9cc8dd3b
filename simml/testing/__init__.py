"""Test kit for simml users and backends: a pytest plugin (fixtures) and the backend contract suite."""

"""Tests of the demo Oracle, the load generator and ``oracle-sidecar demo``."""

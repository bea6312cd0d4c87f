"""oracle-sidecar: monitoring that runs beside a Python gRPC service, not inside it."""

__version__ = "0.1.0"

"""Seeing what the service does: Prometheus metrics, the health report, structured logs."""

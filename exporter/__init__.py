"""sparkwatch: a Prometheus exporter for long-running Apache Spark services."""

__version__ = "0.1.0"

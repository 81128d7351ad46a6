"""HTTP on Faust's web server: the collector, lookups, health, metrics, OpenAPI."""

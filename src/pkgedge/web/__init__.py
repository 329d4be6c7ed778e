"""HTTP APIs beside the pipeline: the admin API (purge, stats, metrics, health)."""

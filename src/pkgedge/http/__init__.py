"""HTTP protocol helpers: dates, Cache-Control, header utilities (all pure)."""

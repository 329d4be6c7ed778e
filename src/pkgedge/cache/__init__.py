"""The edge cache: memory tier, eviction policies and the on-disk tier."""

"""The origin: a package index (PEP 503/691/592/629/658/700/714/792, legacy JSON, uploads)."""

"""Sockets and processes: the HTTP/1.1 protocol, the admin listener and the workers."""

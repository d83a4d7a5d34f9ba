"""Data the targets read: the Mozilla TLS table, Tempo's routes with their limits, the ports services listen on."""

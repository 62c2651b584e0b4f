"""Background jobs run by the server: flushing, sweeping, cleanup and mail."""

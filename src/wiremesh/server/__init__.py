"""The wiremesh coordination server."""

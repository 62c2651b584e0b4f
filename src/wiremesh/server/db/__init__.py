"""Database plumbing: metadata, engines, sessions and migrations."""

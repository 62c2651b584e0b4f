"""Changes that peers and other replicas must learn, recorded with the change, read in order."""

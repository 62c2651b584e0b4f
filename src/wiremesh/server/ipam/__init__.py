"""Virtual IP address management inside each organization's network."""

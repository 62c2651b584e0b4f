"""``wiremesh relay``: a public WireGuard host that forwards between devices of one org."""

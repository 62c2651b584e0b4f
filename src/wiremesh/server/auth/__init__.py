"""Bearer tokens, secret hashing and the principal behind every request."""

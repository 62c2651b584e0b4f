"""SMTP settings per organization with a global fallback, and the mail outbox."""

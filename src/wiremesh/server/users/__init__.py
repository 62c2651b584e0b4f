"""People who sign in: their accounts and their server-admin flag."""

"""Organizations (tenants) and who belongs to them, with which role."""

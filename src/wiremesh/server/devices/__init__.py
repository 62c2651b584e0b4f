"""Enrolled devices (``virtual_ip_mapping``) and the setup keys that enroll them."""

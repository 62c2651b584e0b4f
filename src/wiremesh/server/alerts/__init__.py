"""Offline alerts: mail an org's admins when a device goes offline, and when it is back.

Alerts depend one way on their neighbours: presence calls ``transitions.alert_on_transition``
through its transition hook, and the mails go through the mail outbox. Neither presence nor
mail imports this package.
"""

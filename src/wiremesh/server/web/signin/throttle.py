"""Failed sign-ins, limited per client address and per account.

Mailed links are limited per address too, so nobody can flood someone's inbox.

Passwords are chosen by people and may be guessable, so unlike the random bearer secrets a
spent budget refuses the next attempt *before* the password is checked: a guesser cannot go
on at full speed hoping for a hit. The per-account budget slows a guesser spread over many
addresses; both refill over time, so nobody is locked out for good.
"""

from __future__ import annotations

import math

from fastapi import Request

from wiremesh.server.ratelimit import TokenBuckets
from wiremesh.server.state import AppState

ACCOUNT_BURST = 10
ACCOUNT_PER_MINUTE = 5.0
LINK_MAILS_BURST = 3
LINK_MAILS_PER_HOUR = 6.0
"""Mailed links per address: enough for a person who retries, too few to flood an inbox."""


def _accounts(request: Request, state: AppState) -> TokenBuckets:
    buckets: TokenBuckets | None = getattr(request.app.state, "sign_in_accounts", None)
    if buckets is None:
        # Never refilled faster than an address's budget (``auth_failure_per_minute``).
        per_minute = min(ACCOUNT_PER_MINUTE, state.settings.auth_failure_per_minute)
        buckets = TokenBuckets(ACCOUNT_BURST, per_minute / 60)
        request.app.state.sign_in_accounts = buckets
    return buckets


def wait_before_trying(request: Request, state: AppState, email: str) -> int | None:
    """Seconds the client must wait before another attempt, or None when it may try now."""
    waits: list[float] = []
    if state.auth_throttle is not None:
        address = state.auth_throttle.client(request.scope)
        wait = state.auth_throttle.buckets.retry_after(address)
        if wait is not None:
            waits.append(wait)
    account_wait = _accounts(request, state).retry_after(email)
    if account_wait is not None:
        waits.append(account_wait)
    return max(1, math.ceil(max(waits))) if waits else None


def count_failure(request: Request, state: AppState, email: str) -> None:
    if state.auth_throttle is not None:
        state.auth_throttle.failed(request.scope, "bad_password")
    _accounts(request, state).take(email)


def may_mail_link(request: Request, email: str) -> bool:
    """Whether another link may be mailed to ``email`` now (spends one when it may). The
    page answers the same either way, so this tells nobody anything."""
    buckets: TokenBuckets | None = getattr(request.app.state, "link_mails", None)
    if buckets is None:
        buckets = TokenBuckets(LINK_MAILS_BURST, LINK_MAILS_PER_HOUR / 3600)
        request.app.state.link_mails = buckets
    if buckets.retry_after(email) is not None:
        return False
    buckets.take(email)
    return True

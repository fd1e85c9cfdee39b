"""User-facing errors: raised where bad input is found, shown as one line by the CLI and with st.error by the UI."""
from __future__ import annotations


class UserError(ValueError):
    """Bad input from the user. The message says what was wrong (with the value) and what to do."""


class HubUnreachableError(UserError):
    """A Hugging Face Hub id was requested but the Hub cannot be reached (offline or blocked)."""

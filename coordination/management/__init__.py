"""ltpdash's management commands (in commands/), and what they share."""

import getpass


def os_user() -> str:
    """Who runs a command, for the record of what it changed (routing, tokens, roles)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (some containers)
        return "unknown"

"""The one base class of the errors a user can fix: bad input, config, data or results.

``patchpnp``'s command line catches :class:`PatchpnpError` and prints its message
(exit status 2) instead of a traceback. This module imports nothing, so catching it
costs a command nothing: ``patchpnp tables`` and ``patchpnp check-config`` run
without torch.
"""

from __future__ import annotations

__all__ = ["PatchpnpError"]


class PatchpnpError(Exception):
    """A problem the message explains (which file, key or value, and what was expected)."""

"""SSH backend package: :class:`SshBackend` (gangs as GPU leases on the hosts themselves), the
fleet's hosts and how they are reached, and the validated cluster ``options``. See docs/ssh.md."""

from jupyter_neo.backends.ssh.backend import SshBackend
from jupyter_neo.backends.ssh.options import SshOptions, parse_options

__all__ = ["SshBackend", "SshOptions", "parse_options"]

"""Controller side of the agent protocol: ship the agent over a byte stream, then talk frames."""

from jupyter_neo.transport.bundle import agent_bundle, stub_argv
from jupyter_neo.transport.connection import AgentConnection
from jupyter_neo.transport.streams import ByteStream, SubprocessStream

__all__ = ["AgentConnection", "ByteStream", "SubprocessStream", "agent_bundle", "stub_argv"]

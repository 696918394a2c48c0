"""The hosts of an SSH fleet: reaching one, asking it what it has, and running the agent's verbs.

Every remote step is ``python3 -c INSTALL DIR HASH VERB ...`` over :class:`SshCommands`: the agent
zip runs its own verb (``leases inventory``, ``leases take``, ``keep``, ``release``), so the code
that runs on a host is the stdlib-only agent package, typed and tested like the rest of it, and
the zip crosses the wire only to a host that lacks this version. Every failure becomes a
:class:`HostError` that names the host and says what to fix.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from jupyter_neo.backends.ssh.options import HostEntry, SshOptions
from jupyter_neo.errors import BackendError
from jupyter_neo.model import HostHold, HostStatus
from jupyter_neo.transport.bundle import INSTALL, NEED_ZIP, agent_bundle
from jupyter_neo.transport.commands import Completed
from jupyter_neo.transport.ssh import SshCommands, SshTarget, ssh_failure

MIN_PYTHON = (3, 8)
COMMAND_NOT_FOUND = 127


class HostError(BackendError):
    """One host cannot be used; the message starts with ``host NAME (destination)``."""

    def __init__(self, host: Host, what: str, hint: str | None = None) -> None:
        super().__init__(f"host {host.describe()}: {what}", hint)
        self.host = host
        self.what = what


@dataclass(frozen=True)
class Host:
    """A configured host and how to reach it."""

    name: str
    target: SshTarget
    gpus: int
    internal_address: str | None = None

    def describe(self) -> str:
        dest = self.target.describe()
        return self.name if dest == self.name else f"{self.name} ({dest})"


def hosts_of(options: SshOptions, gpus_per_node: int) -> list[Host]:
    """The fleet's hosts with their connection settings (per host over the cluster's)."""

    def pick(entry: HostEntry, key: str) -> Any:
        value = getattr(entry, key)
        return value if value is not None else getattr(options, key)

    return [
        Host(
            name=entry.label,
            target=SshTarget(
                entry.address,
                user=pick(entry, "user"),
                port=pick(entry, "port"),
                identity=pick(entry, "identity"),
                jump=pick(entry, "jump"),
                config_file=options.ssh_config,
                options=tuple(options.ssh_options),
                connect_timeout=options.connect_timeout_s,
                multiplex=options.multiplex,
            ),
            gpus=entry.gpus or gpus_per_node,
            internal_address=entry.internal_address,
        )
        for entry in options.hosts
    ]


@dataclass
class HostReport:
    """What one host has right now (``leases inventory``), or why it cannot be used."""

    host: Host
    hostname: str = ""
    machine_id: str = ""
    address: str = ""
    gpus: int = 0
    gpu_model: str | None = None
    holders: list[dict[str, Any]] = field(default_factory=list)
    problem: HostError | None = None

    @property
    def order(self) -> tuple[str, str, str]:
        """The global acquisition order: the host's own name and machine id, the same for every
        user however they alias it, so racing gangs take contested hosts in the same order."""
        return (self.hostname or self.host.name, self.machine_id, self.host.name)

    def free(self) -> int:
        if self.problem is not None:
            return 0
        held = {s for h in self.holders for s in h["slots"] if s < self.gpus}
        return self.gpus - len(held)

    def status(self) -> HostStatus:
        return HostStatus(
            name=self.host.name,
            destination=self.host.target.describe(),
            hostname=self.hostname or None,
            gpus=self.gpus,
            gpu_model=self.gpu_model,
            free=self.free(),
            held=[
                HostHold(
                    reservation=str(h["reservation"]),
                    owner=str(h["owner"]),
                    gpus=list(h["slots"]),
                    expires_in=float(h["expires_in"]),
                )
                for h in self.holders
            ],
            problem=self.problem.what if self.problem else None,
        )


class HostAccess:
    """Runs the agent's verbs on one host."""

    def __init__(self, host: Host, options: SshOptions) -> None:
        self.host = host
        self.options = options
        self.cmd = SshCommands(host.target, what="host")
        self.cmd.missing_hint = "install the OpenSSH client (ssh)"
        self.cmd.hang_hint = f"is {host.name} up? try: ssh {host.target.destination} true"

    def zip_dir(self, owner: str) -> str:
        return self.options.base_dir.replace("{user}", owner or "neo")

    async def verb(self, owner: str, *args: str, timeout: float = 60.0) -> str:
        """Run ``agent.pyz ARGS`` on the host (installing the zip first if it lacks it); its stdout."""
        bundle = agent_bundle()
        argv = [self.options.python, "-c", INSTALL, self.zip_dir(owner), bundle.digest, *args]
        done = await self._run(argv, b"", timeout)
        if done.returncode == NEED_ZIP:
            done = await self._run(argv, bundle.data, timeout)
        if not done.ok:
            raise self.error(done, args[0])
        return done.stdout

    async def verb_json(self, owner: str, *args: str, timeout: float = 60.0) -> dict[str, Any]:
        out = await self.verb(owner, *args, timeout=timeout)
        try:
            doc = json.loads(out.strip().splitlines()[-1])
        except (ValueError, IndexError):
            raise HostError(self.host, f"{args[0]}: unexpected answer {out.strip()[-200:]!r}") from None
        if not isinstance(doc, dict):
            raise HostError(self.host, f"{args[0]}: unexpected answer {out.strip()[-200:]!r}")
        return doc

    async def _run(self, argv: list[str], stdin: bytes, timeout: float) -> Completed:
        try:
            return await self.cmd.run(argv, stdin=stdin, timeout=timeout + self.options.connect_timeout_s)
        except BackendError as exc:
            raise HostError(self.host, f"no answer: {exc.message}", exc.hint) from None

    def error(self, done: Completed, verb: str) -> HostError:
        """Sort a failed remote step into what the user can fix."""
        failure = ssh_failure(done)
        if failure is not None:
            return HostError(self.host, *failure)
        py = self.options.python
        if done.returncode == COMMAND_NOT_FOUND or "no such file or directory" in done.stderr.lower():
            return HostError(
                self.host,
                f"{py} is not on the host (needed to run the agent)",
                "install python3 (3.8 or newer) there, or set options.python to its path",
            )
        return HostError(self.host, f"{verb} failed: {done.detail()}")

    async def inventory(self, owner: str) -> HostReport:
        """Ask the host for its name, Python, GPUs and leases; a problem is kept, not raised."""
        report = HostReport(self.host)
        try:
            doc = await self.verb_json(owner, "leases", "inventory", self.options.lease_dir, timeout=30)
            self._read(report, doc)
        except HostError as exc:
            report.problem = exc
        return report

    def _read(self, report: HostReport, doc: dict[str, Any]) -> None:
        report.hostname = str(doc.get("hostname", ""))
        report.machine_id = str(doc.get("machine_id", ""))
        report.address = self.host.internal_address or str(doc.get("address") or report.hostname)
        report.holders = list(doc.get("holders") or [])
        version = tuple(int(p) for p in str(doc.get("python", "0.0")).split(".")[:2] if p.isdigit())
        if version < MIN_PYTHON:
            raise HostError(self.host, f"python {doc.get('python')} is too old (the agent needs 3.8+)")
        gpus = doc.get("gpus")
        report.gpus = self.host.gpus
        if gpus is None:  # no nvidia-smi: trust the configuration
            return
        if doc.get("smi_error"):
            raise HostError(self.host, f"nvidia-smi failed: {doc['smi_error']}", "check the GPU driver there")
        report.gpu_model = str(gpus[0]["name"]) if gpus else None
        if len(gpus) < self.host.gpus:
            raise HostError(
                self.host,
                f"nvidia-smi reports {len(gpus)} GPU(s), the cluster entry says {self.host.gpus}",
                "fix the host's GPUs (driver, failed GPU) or set gpus: for this host",
            )

"""SSH fleet configuration and the ssh command line: what reaches ``ssh`` is what the user wrote.

No host is contacted: ``ssh -G`` (which prints the effective configuration and connects nowhere)
is the real OpenSSH client deciding whether the user's own config already multiplexes a host.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from jupyter_neo.backends.ssh.fleet import hosts_of
from jupyter_neo.backends.ssh.options import parse_options
from jupyter_neo.config import parse_config_text
from jupyter_neo.errors import ConfigError
from jupyter_neo.transport.commands import Completed
from jupyter_neo.transport.ssh import SshTarget, ssh_failure

LAMBDA = """
clusters:
  - name: lambda-1cc
    backend: ssh
    provider: lambda
    region: us-east-1
    residency: [us]
    gpu_type: H100
    gpus_per_node: 8
    price_per_gpu_hour: 2.99
    options:
      user: ubuntu
      identity: ~/.ssh/lambda.pem
      hosts:
        - gpu-1
        - {address: 10.0.0.12, port: 2222, name: gpu-2}
        - {address: ops@10.0.0.13, gpus: 4, jump: bastion.example, internal_address: 192.168.1.13}
"""


def test_a_fleet_entry_needs_no_node_count_and_per_host_settings_win() -> None:
    cluster = parse_config_text(LAMBDA).clusters[0]
    assert cluster.nodes == 3 and cluster.total_gpus == 24
    hosts = hosts_of(parse_options(cluster.name, cluster.options), cluster.gpus_per_node)
    assert [h.name for h in hosts] == ["gpu-1", "gpu-2", "10.0.0.13"]
    assert [h.gpus for h in hosts] == [8, 8, 4]
    argv = hosts[1].target.argv("true")
    assert argv[argv.index("-l") + 1] == "ubuntu" and argv[argv.index("-p") + 1] == "2222"
    assert argv[argv.index("-i") + 1] == "~/.ssh/lambda.pem"
    assert argv[-3:] == ["10.0.0.12", "--", "true"]
    third = hosts[2].target.argv("true")
    assert third[third.index("-J") + 1] == "bastion.example" and "ops@10.0.0.13" in third
    assert hosts[2].internal_address == "192.168.1.13"


@pytest.mark.parametrize(
    ("options", "words"),
    [
        ({"hosts": []}, "options.hosts"),
        ({"hosts": ["a b"]}, "not an ssh destination"),
        ({"hosts": ["gpu-1", {"address": "gpu-1"}]}, "used twice"),
        ({"hosts": ["gpu-1"], "lease_ttl": "soon"}, "options.lease_ttl"),
        ({"hosts": ["gpu-1"], "base_dir": "pods"}, "absolute path"),
        ({"hosts": ["gpu-1"], "colour": "red"}, "options.colour"),
    ],
)
def test_bad_fleet_options_name_the_cluster_and_the_key(options: dict[str, object], words: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_options("fleet", options)
    assert "cluster 'fleet'" in err.value.message and words in err.value.message


def test_connection_sharing_is_added_unless_the_users_config_multiplexes(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.write_text("Host gpu-1\n  HostName 10.0.0.11\n")
    argv = SshTarget("gpu-1", config_file=str(plain), control_dir="/tmp/x").argv("true")
    assert "ControlMaster=auto" in argv and any(a.startswith("ControlPath=/tmp/x/") for a in argv)
    assert argv[:3] == ["ssh", "-F", str(plain)] and "BatchMode=yes" in argv
    own = tmp_path / "own"
    own.write_text("Host gpu-1\n  ControlMaster auto\n  ControlPath ~/.ssh/cm-%C\n")
    argv = SshTarget("gpu-1", config_file=str(own)).argv("true")
    assert not any("Control" in a for a in argv), "the user's ControlMaster settings are left to ssh"
    assert "ControlMaster" not in " ".join(SshTarget("gpu-1", multiplex=False).argv("true"))


@pytest.mark.parametrize(
    ("stderr", "words"),
    [
        ("Host key verification failed.", "host key mismatch"),
        ("root@10.0.0.1: Permission denied (publickey).", "authentication refused"),
        ("ssh: connect to host 10.0.0.9 port 22: No route to host", "unreachable"),
        ("ssh: Could not resolve hostname nope: Name or service not known", "unreachable"),
    ],
)
def test_ssh_client_failures_are_sorted_into_what_a_user_can_fix(stderr: str, words: str) -> None:
    failure = ssh_failure(Completed(("ssh",), 255, "", stderr))
    assert failure is not None and failure[0].startswith(words)
    assert ssh_failure(Completed(("ssh",), 1, "", stderr)) is None, "exit 1 is the remote command's"

"""Hosts on this machine: one network namespace each, joined by a bridge (needs root and `ip`).

Each `Host` is a namespace with its own loopback and one interface `eth0` holding its own address
on a /24; the other end of its veth pair is a port of a bridge in the root namespace, which holds
the subnet's first address (where the harness's forwarders listen, see `forwarder.py`). Setting a
host's bridge port down cuts it off the network without touching its processes.

Every name carries the creating process's id, so `remove_leftovers` can delete what a harness
killed before its clean-up left behind (namespaces, bridge, veths) without touching a live run's.
"""

from __future__ import annotations

import ipaddress
import os
import re
import subprocess
from dataclasses import dataclass, field

# Interface names are at most 15 characters: "rb" + 6 hex digits of the pid + a run letter.
_PREFIX = "rbmh"
_NAMESPACE = re.compile(rf"^{_PREFIX}-(?P<pid>[0-9a-f]+)-")
_INTERFACE = re.compile(r"^rb(?P<pid>[0-9a-f]{6})[a-z](b|v\d+p?)$")


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], check=check, capture_output=True, text=True)


@dataclass(frozen=True)
class Host:
    """One host: a network namespace with its own address, reached through a bridge port."""

    name: str
    namespace: str
    address: str
    # The root namespace's end of its veth pair (a bridge port).
    port: str

    def command(self, argv: list[str]) -> list[str]:
        """`argv` run inside this host's namespace (`ip netns exec` execs it: same pid)."""
        return ["ip", "netns", "exec", self.namespace, *argv]

    def pids(self) -> list[int]:
        """Every process living in this host's namespace."""
        listed = _ip("netns", "pids", self.namespace, check=False).stdout.split()
        return [int(pid) for pid in listed if pid.isdigit()]


@dataclass
class VirtualNetwork:
    """A bridge and the hosts plugged into it; `close()` removes all of it (idempotent)."""

    subnet: ipaddress.IPv4Network
    run: str = "a"
    hosts: dict[str, Host] = field(default_factory=dict)
    _created: bool = False

    @property
    def bridge(self) -> str:
        return f"rb{os.getpid():06x}{self.run}b"

    @property
    def router_address(self) -> str:
        """The bridge's address in the root namespace (where forwarders listen)."""
        return str(self.subnet.network_address + 1)

    def create(self) -> None:
        """Creates the bridge with the subnet's first address."""
        self._created = True
        _ip("link", "add", self.bridge, "type", "bridge")
        _ip("addr", "add", f"{self.router_address}/{self.subnet.prefixlen}", "dev", self.bridge)
        _ip("link", "set", self.bridge, "up")

    def add_host(self, name: str) -> Host:
        """A new namespace plugged into the bridge, with the next free address."""
        index = len(self.hosts) + 1
        host = Host(
            name=name,
            namespace=f"{_PREFIX}-{os.getpid():x}-{self.run}-{name}",
            address=str(self.subnet.network_address + 1 + index),
            port=f"rb{os.getpid():06x}{self.run}v{index}",
        )
        self.hosts[name] = host
        peer = f"{host.port}p"
        _ip("netns", "add", host.namespace)
        _ip("link", "add", host.port, "type", "veth", "peer", "name", peer)
        _ip("link", "set", peer, "netns", host.namespace)
        _ip("-n", host.namespace, "link", "set", peer, "name", "eth0")
        _ip("-n", host.namespace, "addr", "add", f"{host.address}/{self.subnet.prefixlen}", "dev", "eth0")
        _ip("-n", host.namespace, "link", "set", "eth0", "up")
        _ip("-n", host.namespace, "link", "set", "lo", "up")
        _ip("link", "set", host.port, "master", self.bridge)
        _ip("link", "set", host.port, "up")
        return host

    def disconnect(self, host: Host) -> None:
        """Cuts `host` off: its bridge port goes down (packets both ways are dropped)."""
        _ip("link", "set", host.port, "down")

    def reconnect(self, host: Host) -> None:
        """Plugs `host` back in."""
        _ip("link", "set", host.port, "up")

    def close(self) -> None:
        """Deletes every namespace (their veths go with them) and the bridge; never raises.

        The processes inside must be stopped first: a namespace with live processes is only
        unnamed by `ip netns del`, not destroyed."""
        for host in self.hosts.values():
            _ip("netns", "del", host.namespace, check=False)
            _ip("link", "del", host.port, check=False)
        if self._created:
            _ip("link", "del", self.bridge, check=False)


def free_subnet(preferred: int = 0) -> ipaddress.IPv4Network:
    """A 10.77.N.0/24 no interface of this machine has an address in (10.77.0.0/24 first)."""
    used = [
        ipaddress.ip_interface(word)
        for line in _ip("-o", "-4", "addr", "show").stdout.splitlines()
        for word in line.split()
        if re.fullmatch(r"\d+\.\d+\.\d+\.\d+/\d+", word)
    ]
    for third in [preferred, *range(1, 255)]:
        subnet = ipaddress.IPv4Network(f"10.77.{third}.0/24")
        if not any(interface.network.overlaps(subnet) for interface in used):
            return subnet
    raise RuntimeError("no free 10.77.N.0/24 subnet")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_leftovers() -> list[str]:
    """Deletes the namespaces and interfaces of harness runs whose process is gone (a run killed
    before its clean-up); returns their names. A live run's are left alone."""
    removed: list[str] = []
    for line in _ip("netns", "list", check=False).stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        match = _NAMESPACE.match(name)
        if match and not _alive(int(match["pid"], 16)):
            for pid in _ip("netns", "pids", name, check=False).stdout.split():
                # Processes of a dead harness run, left in its namespace: ours to end.
                subprocess.run(["kill", "-9", pid], check=False, capture_output=True)
            _ip("netns", "del", name, check=False)
            removed.append(name)
    for line in _ip("-o", "link", "show", check=False).stdout.splitlines():
        parts = line.split(":")
        if len(parts) < 2:
            continue
        interface = parts[1].strip().split("@")[0]
        match = _INTERFACE.match(interface)
        if match and not _alive(int(match["pid"], 16)):
            _ip("link", "del", interface, check=False)
            removed.append(interface)
    return removed

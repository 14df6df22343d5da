"""Hosts for tests: Linux network namespaces on one bridge (``ip netns``, veth pairs).

Each host is a namespace with its own loopback and one address on the bridge's subnet
(``10.231.N.0/24``); the test process is the bridge's own end, ``10.231.N.1``: it reaches
every host, and serves what the hosts call out to (a subscriber, a photo). A process runs on
a host through ``ip netns exec`` with the environment it is given and nothing else.

Every name carries the test process's id (``phmh-<pid>-<role>``, links ``phmh<pid>...``), so
two runs never collide, and what a crashed run left behind (its process is gone) is removed
by the next one. ``Network.close`` ends every process and removes every namespace and link,
whatever state the setup reached.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PREFIX = "phmh"
_NETNS = re.compile(rf"^{PREFIX}-(\d+)-\S+")
_LINK = re.compile(rf"^\d+:\s+({PREFIX}(\d+)(?:br|v\d+))[@:]")


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check,
                          timeout=30)


def unavailable() -> str | None:
    """Return why network namespaces cannot be made here, or None when they can."""
    if shutil.which("ip") is None:
        return "iproute2's `ip` is not installed"
    if os.geteuid() != 0:
        return "creating network namespaces (ip netns add) needs root"
    probe = f"{PREFIX}-{os.getpid()}-probe"
    made = _ip("netns", "add", probe, check=False)
    if made.returncode:
        return f"`ip netns add` failed here: {made.stderr.strip()}"
    _ip("netns", "delete", probe, check=False)
    return None


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return False  # ours from before this process made anything: a reused pid's leftovers
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _delete_netns(name: str) -> None:
    """Kill what still runs in a namespace of ours, then delete it."""
    pids = _ip("netns", "pids", name, check=False).stdout.split()
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid), signal.SIGKILL)
    _ip("netns", "delete", name, check=False)


def remove_stale() -> list[str]:
    """Remove the namespaces and links of earlier runs whose process is gone; return them."""
    removed = []
    for line in _ip("netns", "list", check=False).stdout.splitlines():
        found = _NETNS.match(line)
        if found and not _alive(int(found.group(1))):
            _delete_netns(line.split()[0])
            removed.append(line.split()[0])
    for line in _ip("-o", "link", "show", check=False).stdout.splitlines():
        found = _LINK.match(line)
        if found and not _alive(int(found.group(2))):
            _ip("link", "delete", found.group(1), check=False)
            removed.append(found.group(1))
    return removed


def _free_subnet() -> int:
    """Return N such that no address of this machine is in 10.231.N.0/24."""
    used = _ip("-o", "-4", "addr", "show", check=False).stdout
    start = os.getpid() % 200 + 20
    for n in [*range(start, 255), *range(1, start)]:
        if f" 10.231.{n}." not in used:
            return n
    raise RuntimeError("every 10.231.N.0/24 is in use on this machine")


@dataclass(frozen=True)
class Host:
    """One namespace: its role, its name and its address."""

    role: str
    netns: str
    address: str


class Network:
    """A bridge with hosts on it, and the processes started on them."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = Path(workdir)
        self.pid = os.getpid()
        self.bridge = f"{PREFIX}{self.pid}br"
        self.hosts: dict[str, Host] = {}
        self.procs: list[tuple[str, subprocess.Popen]] = []
        self.subnet = -1
        self.stop_last: tuple[str, ...] = ()
        """Roles whose processes stop only once the others have (the backing services)."""

    @property
    def cidr(self) -> str:
        """The subnet of every host, exactly: what ALLOWED_CIDRS lets through."""
        return f"10.231.{self.subnet}.0/24"

    @property
    def gateway(self) -> str:
        """The test process's own address on the bridge."""
        return f"10.231.{self.subnet}.1"

    def create(self) -> None:
        """Make the bridge and give the test process its address on it."""
        self.subnet = _free_subnet()
        _ip("link", "add", self.bridge, "type", "bridge")
        _ip("addr", "add", f"{self.gateway}/24", "dev", self.bridge)
        _ip("link", "set", self.bridge, "up")

    def add_host(self, role: str, last_octet: int) -> Host:
        """Make a namespace with one veth on the bridge, at 10.231.N.<last_octet>."""
        host = Host(role, f"{PREFIX}-{self.pid}-{role}", f"10.231.{self.subnet}.{last_octet}")
        veth = f"{PREFIX}{self.pid}v{len(self.hosts)}"
        _ip("netns", "add", host.netns)
        self.hosts[role] = host
        _ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", host.netns)
        _ip("link", "set", veth, "master", self.bridge, "up")
        _ip("-n", host.netns, "addr", "add", f"{host.address}/24", "dev", "eth0")
        _ip("-n", host.netns, "link", "set", "eth0", "up")
        _ip("-n", host.netns, "link", "set", "lo", "up")
        return host

    def run(self, host: Host, name: str, command: str | list[str],
            env: dict[str, str]) -> subprocess.Popen:
        """Start ``command`` (a shell line, or argv) on ``host`` with exactly ``env``."""
        argv = ["sh", "-c", command] if isinstance(command, str) else list(command)
        log = open(self.log_path(host, name), "ab")  # noqa: SIM115 - the child keeps it
        proc = subprocess.Popen(["ip", "netns", "exec", host.netns, *argv], cwd=ROOT, env=env,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        self.procs.append((f"{host.role}/{name}", proc))
        return proc

    def exec(self, host: Host, argv: list[str], env: dict[str, str],
             timeout: float = 120) -> str:
        """Run one command on ``host`` to its end; return its output (raise if it failed)."""
        done = subprocess.run(["ip", "netns", "exec", host.netns, *argv], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=timeout)
        if done.returncode:
            raise RuntimeError(f"{argv} on {host.role} failed:\n{done.stdout}{done.stderr}")
        return done.stdout

    def log_path(self, host: Host, name: str) -> Path:
        """Where one process's output goes."""
        return self.workdir / f"{host.role}-{name}.log"

    def log(self, host: Host, name: str) -> str:
        """Return what one process printed."""
        path = self.log_path(host, name)
        return path.read_text(errors="replace") if path.exists() else ""

    def check_running(self) -> None:
        """Raise, with its output, when a process started here has exited."""
        for name, proc in self.procs:
            if proc.poll() is not None:
                role, _, process = name.partition("/")
                tail = self.log(self.hosts[role], process)[-3000:]
                raise RuntimeError(f"{name} exited with {proc.returncode}:\n{tail}")

    def close(self, grace: float = 15) -> None:
        """End every process (TERM, then KILL after ``grace`` s; ``stop_last`` after the
        others), delete every namespace, then the bridge."""
        first = [p for p in self.procs if p[0].partition("/")[0] not in self.stop_last]
        for wave in (first, [p for p in self.procs if p not in first]):
            for _, proc in wave:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
            deadline = time.monotonic() + grace
            for _, proc in wave:
                try:
                    proc.wait(max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(10)
        self.procs.clear()
        for host in self.hosts.values():
            _delete_netns(host.netns)  # its veth pair goes with it
        self.hosts.clear()
        _ip("link", "delete", self.bridge, check=False)

    def leftovers(self) -> list[str]:
        """Return the namespaces and links of this run that still exist."""
        names = [line.split()[0] for line in _ip("netns", "list").stdout.splitlines()
                 if line.startswith(f"{PREFIX}-{self.pid}-")]
        links = [m.group(1) for line in _ip("-o", "link", "show").stdout.splitlines()
                 if (m := _LINK.match(line)) and int(m.group(2)) == self.pid]
        return names + links

"""What a local node makes on this machine, and how it is all undone, even after a crash.

A node claims, under a lock: a pod network (a /24 of 10.213.0.0/16 that no route of this machine
overlaps, on a bridge of its own whose first address is the node's address, the host address
pods reach), and a cgroup of its own in every cgroup hierarchy (the kubelet's `cgroupRoot`; the
node's processes and containerd's shims run in its `node` child, the pods in `kubepods`). The
claim is recorded in /run/wfclock/nodes/<name>.json with its owner's process id and start time.

`release` undoes it: kills every process in the node's cgroups, unmounts everything under the
node's folder (the kubelet's bind mount of its root dir, pod volumes, containerd's rootfs, shm and
network-namespace mounts), removes the cgroups and the bridge (the pods' veths go with their
network namespaces), the folder and the record. Each start first releases the claims of owners
that are gone (a test run killed with -9), so a start after a crash starts clean.

The kubelet sets six kernel tunables at start (vm.overcommit_memory, kernel.panic, ...); they are
put back as they were once the node is up, so the machine keeps its own settings.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import ipaddress
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

REGISTRY = Path("/run/wfclock/nodes")
POD_NETWORKS = ipaddress.ip_network("10.213.0.0/16")

# What the kubelet's container manager writes (pkg/kubelet/cm/container_manager_linux.go).
KUBELET_SYSCTLS = {
    "vm/overcommit_memory": 1,
    "vm/panic_on_oom": 0,
    "kernel/panic": 10,
    "kernel/panic_on_oops": 1,
    "kernel/keys/root_maxkeys": 1000000,
    "kernel/keys/root_maxbytes": 25000000,
}
SYSCTLS_SAVED = REGISTRY / "sysctls-before-kubelet.json"
CONTAINER_LOG_LINKS = Path("/var/log/containers")
DEVICE_PLUGIN_SOCKET = Path("/var/lib/kubelet/device-plugins/kubelet.sock")


@dataclass
class Claim:
    name: str
    root: str
    bridge: str
    subnet: str
    cgroup: str
    owner_pid: int
    owner_started: str

    @property
    def host_ip(self) -> str:
        """The node's address: the bridge's, the one pods reach this machine on."""
        return str(next(ipaddress.ip_network(self.subnet).hosts()))

    @property
    def record(self) -> Path:
        return REGISTRY / f"{self.name}.json"


def _started(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


@contextlib.contextmanager
def _locked() -> Iterator[None]:
    REGISTRY.mkdir(parents=True, exist_ok=True)
    with open(REGISTRY / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _claims() -> list[Claim]:
    claims = []
    for record in sorted(REGISTRY.glob("*.json")):
        if record == SYSCTLS_SAVED:
            continue
        with contextlib.suppress(ValueError, TypeError, OSError):
            claims.append(Claim(**json.loads(record.read_text())))
    return claims


def release_stale() -> list[str]:
    """Releases the claims whose owners are gone; returns their names."""
    with _locked():
        return _release_stale()


def _release_stale() -> list[str]:
    released = []
    for stale in _claims():
        if _started(stale.owner_pid) != stale.owner_started:
            _release(stale)
            released.append(stale.name)
    return released


def claim(name: str, root: Path) -> Claim:
    """Releases the claims of dead owners, then claims a pod network and cgroups for `name`."""
    with _locked():
        _release_stale()
        taken = [ipaddress.ip_network(c.subnet) for c in _claims()] + _routed_networks()
        subnet = next(
            (
                s
                for s in POD_NETWORKS.subnets(new_prefix=24)
                if not any(s.overlaps(t) for t in taken)
            ),
            None,
        )
        if subnet is None:
            raise RuntimeError(f"no free /24 in {POD_NETWORKS} for a pod network")
        mine = Claim(
            name=name,
            root=str(root),
            bridge=f"wfc{subnet.network_address.packed[2]}",
            subnet=str(subnet),
            cgroup=f"/wfclock/{name}",
            owner_pid=os.getpid(),
            owner_started=_started(os.getpid()) or "",
        )
        _save_sysctls()
        mine.record.write_text(json.dumps(asdict(mine), indent=2))
        try:
            _add_bridge(mine)
            for hierarchy in cgroup_hierarchies():
                for path in ("/wfclock", mine.cgroup, f"{mine.cgroup}/node"):
                    _make_cgroup(hierarchy, path)
        except BaseException:
            _release(mine)
            raise
    return mine


def release(mine: Claim) -> None:
    """Undoes everything `mine` stands for (see the module's docstring)."""
    with _locked():
        _release(mine)


def kubelet_started() -> None:
    """Puts back the kernel tunables the kubelet set at its start."""
    with _locked():
        _restore_sysctls()


def _release(claim: Claim) -> None:
    _killcgroup_processes(claim.cgroup)
    unmount_under(Path(claim.root))
    _remove_cgroups(claim.cgroup)
    subprocess.run(["ip", "link", "delete", claim.bridge], capture_output=True)
    shutil.rmtree(claim.root, ignore_errors=True)
    claim.record.unlink(missing_ok=True)
    _remove_kubelet_fixed_paths(claim, last=not _claims())
    _restore_sysctls()


def _remove_kubelet_fixed_paths(claim: Claim, last: bool) -> None:
    """Two paths of the kubelet's that no setting moves: the links to its containers' logs in
    /var/log/containers and its device-plugin socket (pkg/kubelet/kubelet.go, devicemanager)."""
    for link in CONTAINER_LOG_LINKS.glob("*") if CONTAINER_LOG_LINKS.is_dir() else ():
        if link.is_symlink() and os.readlink(link).startswith(claim.root + "/"):
            link.unlink(missing_ok=True)
    if not last:
        return
    if DEVICE_PLUGIN_SOCKET.is_socket():
        DEVICE_PLUGIN_SOCKET.unlink(missing_ok=True)
    # Written beside it only when a device plugin registers (none does here).
    (DEVICE_PLUGIN_SOCKET.parent / "kubelet_internal_checkpoint").unlink(missing_ok=True)
    for folder in (
        DEVICE_PLUGIN_SOCKET.parent,
        DEVICE_PLUGIN_SOCKET.parent.parent,
        CONTAINER_LOG_LINKS,
    ):
        with contextlib.suppress(OSError):  # kept when not empty: not only ours
            folder.rmdir()


def leftovers(claim: Claim) -> list[str]:
    """What of `claim` is still on the machine (empty once it is released)."""
    root = Path(claim.root)
    found = [f"folder {root}"] if root.exists() else []
    found += [f"mount {point}" for point in mounts_under(root)]
    found += [f"process {pid}" for pid in sorted(cgroup_processes(claim.cgroup))]
    for hierarchy in cgroup_hierarchies():
        if (hierarchy / claim.cgroup.lstrip("/")).exists():
            found.append(f"cgroup {hierarchy / claim.cgroup.lstrip('/')}")
    if subprocess.run(["ip", "link", "show", claim.bridge], capture_output=True).returncode == 0:
        found.append(f"bridge {claim.bridge}")
    if claim.record.exists():
        found.append(f"record {claim.record}")
    links = CONTAINER_LOG_LINKS.glob("*") if CONTAINER_LOG_LINKS.is_dir() else ()
    found += [
        f"log link {link}"
        for link in links
        if link.is_symlink() and os.readlink(link).startswith(claim.root + "/")
    ]
    return found


# --- the pod network ---------------------------------------------------------------------------


def _routed_networks() -> list[ipaddress.IPv4Network]:
    out = subprocess.run(
        ["ip", "-json", "-4", "route", "show", "table", "all"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    networks = []
    for route in json.loads(out or "[]"):
        dst = route.get("dst", "")
        if dst and dst != "default":
            with contextlib.suppress(ValueError):
                networks.append(ipaddress.ip_network(dst, strict=False))
    return networks


def _add_bridge(claim: Claim) -> None:
    prefix = ipaddress.ip_network(claim.subnet).prefixlen
    for argv in (
        ["ip", "link", "add", "name", claim.bridge, "type", "bridge"],
        ["ip", "addr", "add", f"{claim.host_ip}/{prefix}", "dev", claim.bridge],
        ["ip", "link", "set", claim.bridge, "up"],
    ):
        result = subprocess.run(argv, capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} failed: {result.stderr.strip()}")


# --- cgroups -----------------------------------------------------------------------------------


def cgroup_hierarchies() -> list[Path]:
    """Every mounted cgroup hierarchy (v1 controllers, named ones, the v2 `unified` mount)."""
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        fstype = fields[fields.index("-") + 1]
        if fstype in ("cgroup", "cgroup2"):
            found.append(Path(fields[4]))
    return found


def _make_cgroup(hierarchy: Path, path: str) -> None:
    folder = hierarchy / path.lstrip("/")
    folder.mkdir(exist_ok=True)
    # A new v1 cpuset is empty: it takes its parent's CPUs and memory nodes before it takes tasks.
    for name in ("cpuset.cpus", "cpuset.mems"):
        if (folder / name).exists() and not (folder / name).read_text().strip():
            (folder / name).write_text((folder.parent / name).read_text())


def joining(path: str) -> Callable[[], None]:
    """A function that moves the calling process into `path` in every hierarchy (for a child to
    run before it executes its program, so all it starts stays in the node's cgroup)."""
    procs = [hierarchy / path.lstrip("/") / "cgroup.procs" for hierarchy in cgroup_hierarchies()]

    def join() -> None:
        pid = str(os.getpid())
        for file in procs:
            file.write_text(pid)

    return join


def cgroup_processes(path: str) -> set[int]:
    pids = set()
    for hierarchy in cgroup_hierarchies():
        top = hierarchy / path.lstrip("/")
        if not top.is_dir():
            continue
        for procs in top.rglob("cgroup.procs"):
            with contextlib.suppress(OSError):
                pids.update(int(p) for p in procs.read_text().split())
    return pids


def _killcgroup_processes(path: str, timeout: float = 20) -> None:
    for hierarchy in cgroup_hierarchies():
        top = hierarchy / path.lstrip("/")
        if (top / "freezer.state").exists():
            for state in top.rglob("freezer.state"):
                with contextlib.suppress(OSError):
                    state.write_text("THAWED")
    deadline = time.monotonic() + timeout
    while pids := cgroup_processes(path):
        if time.monotonic() > deadline:
            raise RuntimeError(f"processes {sorted(pids)} in cgroup {path} outlived SIGKILL")
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.1)


def _remove_cgroups(path: str) -> None:
    for hierarchy in cgroup_hierarchies():
        top = hierarchy / path.lstrip("/")
        if not top.is_dir():
            continue
        folders = sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts))
        for folder in [*folders, top]:
            with contextlib.suppress(FileNotFoundError):
                _rmdir_retrying(folder)
        # The shared parent (/wfclock) goes when no other node uses it.
        with contextlib.suppress(OSError):
            top.parent.rmdir()


def _rmdir_retrying(folder: Path, timeout: float = 10) -> None:
    # A cgroup whose last task just died can be busy for a moment.
    deadline = time.monotonic() + timeout
    while True:
        try:
            folder.rmdir()
            return
        except OSError as exc:
            if exc.errno != 16 or time.monotonic() > deadline:  # EBUSY
                raise RuntimeError(f"cannot remove cgroup {folder}: {exc}") from exc
            time.sleep(0.1)


# --- mounts ------------------------------------------------------------------------------------

_MNT_DETACH = 2
_libc = ctypes.CDLL("libc.so.6", use_errno=True)


def mounts_under(root: Path) -> list[str]:
    prefix = str(root).rstrip("/") + "/"
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].encode().decode("unicode_escape")
        if point == str(root) or point.startswith(prefix):
            found.append(point)
    return found


def unmount_under(root: Path) -> None:
    """Unmounts every mount at or below `root`, deepest first (lazily, so busy ones go too)."""
    for _ in range(20):
        points = mounts_under(root)
        if not points:
            return
        for point in sorted(points, key=lambda p: -p.count("/")):
            if _libc.umount2(point.encode(), _MNT_DETACH) != 0:
                errno = ctypes.get_errno()
                if errno not in (2, 22):  # ENOENT, EINVAL: gone already, or not a mount point
                    raise RuntimeError(f"cannot unmount {point}: {os.strerror(errno)}")
    raise RuntimeError(f"mounts left under {root}: {mounts_under(root)}")


# --- the kubelet's kernel tunables -------------------------------------------------------------


def _sysctl(key: str) -> Path:
    return Path("/proc/sys") / key


def _save_sysctls() -> None:
    """Keeps the machine's values before any kubelet of ours ran (once, under the lock)."""
    if SYSCTLS_SAVED.exists():
        return
    values = {key: int(_sysctl(key).read_text()) for key in KUBELET_SYSCTLS}
    SYSCTLS_SAVED.write_text(json.dumps(values, indent=2))


def _restore_sysctls() -> None:
    """Puts back each tunable that still holds the kubelet's value; forgets the saved values
    when no node is left."""
    if not SYSCTLS_SAVED.exists():
        return
    saved = json.loads(SYSCTLS_SAVED.read_text())
    for key, value in saved.items():
        if int(_sysctl(key).read_text()) == KUBELET_SYSCTLS[key] != value:
            _sysctl(key).write_text(str(value))
    if not _claims():
        SYSCTLS_SAVED.unlink(missing_ok=True)

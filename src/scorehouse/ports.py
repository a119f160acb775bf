"""Who holds a local TCP port: free, or listened on by which processes (Linux /proc)."""

from __future__ import annotations

import contextlib
import errno
import os
import socket
from pathlib import Path

LISTEN = "0A"  # TCP state LISTEN in /proc/net/tcp


def port_busy(host: str, port: int) -> bool:
    """True while a socket listens on host:port.

    SO_REUSEADDR as the servers set it themselves (uvicorn does): a port whose last
    connections sit in TIME_WAIT is free for them, so it counts as free here too.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return True
            raise
    return False


def listeners(port: int) -> set[int]:
    """PIDs of the processes holding a socket that listens on `port` (empty if unknown:
    no /proc, or processes of other users whose descriptors cannot be read)."""
    inodes = _listening_inodes(port)
    if not inodes:
        return set()
    found: set[int] = set()
    for fd_dir in Path("/proc").glob("[0-9]*/fd"):
        with contextlib.suppress(OSError):
            for fd in os.scandir(fd_dir):
                with contextlib.suppress(OSError):
                    if os.readlink(fd.path) in inodes:
                        found.add(int(fd_dir.parent.name))
                        break
    return found


def describe(pid: int) -> str:
    """`pid 123 (python -m http.server ...)`, or just the PID when its command is unreadable."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return f"pid {pid}"
    cmdline = cmdline.strip()
    return f"pid {pid} ({cmdline[:80]}{'...' if len(cmdline) > 80 else ''})"


def _listening_inodes(port: int) -> set[str]:
    inodes: set[str] = set()
    for table in ("tcp", "tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
                fields = line.split()
                if fields[3] == LISTEN and int(fields[1].rsplit(":", 1)[1], 16) == port:
                    inodes.add(f"socket:[{fields[9]}]")
    return inodes

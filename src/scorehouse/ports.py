"""Who holds a local TCP port: free, or listened on by which processes (psutil)."""

from __future__ import annotations

import errno
import socket

import psutil


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
    processes of other users whose sockets cannot be read)."""
    try:
        connections = psutil.net_connections(kind="tcp")
    except psutil.AccessDenied:
        return set()
    return {
        c.pid
        for c in connections
        if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port and c.pid
    }


def describe(pid: int) -> str:
    """`pid 123 (python -m http.server ...)`, or just the PID when its command is unreadable."""
    try:
        cmdline = " ".join(psutil.Process(pid).cmdline()).strip()
    except psutil.Error:
        return f"pid {pid}"
    return f"pid {pid} ({cmdline[:80]}{'...' if len(cmdline) > 80 else ''})"

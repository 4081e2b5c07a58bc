"""The TCP sockets of a process tree, read with ``ss``: servers under test must use 127.0.0.1 only."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

_LOOPBACK = ("127.0.0.1", "[::ffff:127.0.0.1]", "[::1]")
_WILDCARD = ("*", "0.0.0.0", "[::]")


def process_tree(pid: int) -> set[int]:
    """``pid`` and all its descendants (from /proc)."""
    tree, todo = set(), [pid]
    while todo:
        current = todo.pop()
        tree.add(current)
        for task in Path(f"/proc/{current}/task").glob("*"):
            children = (task / "children").read_text().split() if (task / "children").exists() else []
            todo += [int(child) for child in children if int(child) not in tree]
    return tree


def tcp_sockets(pids: set[int]) -> list[tuple[str, str, str, str]]:
    """(state, local address, peer address, process name) of every TCP socket the processes ``pids`` hold."""
    if shutil.which("ss") is None:
        pytest.skip("ss (iproute2) is not installed, so the sockets of the server cannot be listed")
    lines = subprocess.run(["ss", "-tanpH"], capture_output=True, text=True, check=True).stdout.splitlines()
    sockets = []
    for line in lines:
        owners = {int(p) for p in re.findall(r"pid=(\d+)", line)}
        if owners & pids:
            state, _, _, local, peer = line.split()[:5]
            sockets.append((state, local, peer, re.search(r'\(\("([^"]*)"', line).group(1)))
    return sockets


def off_loopback(sockets: list[tuple[str, str, str, str]]) -> list[tuple[str, str, str, str]]:
    """The sockets bound to, or talking with, an address other than loopback."""
    def host(address: str) -> str:
        return address.rsplit(":", 1)[0]

    return [s for s in sockets
            if host(s[1]) not in _LOOPBACK or host(s[2]) not in _LOOPBACK + (_WILDCARD if s[0] == "LISTEN" else ())]

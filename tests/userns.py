"""Run a command as INNER inside a new user namespace that maps its uids and gids
0..COUNT-1 to the host's OUTER..OUTER+COUNT-1, as a rootless container runtime (LXC,
podman with subuids) maps a container: what memfs sees is the host uid OUTER+INNER.
Run as root (it writes the child's maps). Usage: userns.py OUTER COUNT INNER CMD..."""

import ctypes
import os
import sys

CLONE_NEWUSER = 0x10000000


def main() -> int:
    outer, count, inner = (int(a) for a in sys.argv[1:4])
    cmd = sys.argv[4:]
    ready_r, ready_w = os.pipe()
    mapped_r, mapped_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        if ctypes.CDLL(None, use_errno=True).unshare(CLONE_NEWUSER) != 0:
            os._exit(120)
        os.write(ready_w, b"x")
        os.read(mapped_r, 1)  # the parent has written our maps
        os.setresgid(inner, inner, inner)
        os.setresuid(inner, inner, inner)
        os.execvp(cmd[0], cmd)
    os.read(ready_r, 1)
    for name in ("uid_map", "gid_map"):
        with open(f"/proc/{pid}/{name}", "w") as f:
            f.write(f"0 {outer} {count}\n")
    os.write(mapped_w, b"x")
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


if __name__ == "__main__":
    sys.exit(main())

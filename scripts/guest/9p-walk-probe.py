#!/usr/bin/env python3
"""Asks a 9P2000.L server to walk '..' out of its export's root.

Usage: 9p-walk-probe.py SOCKET ANAME NAME

Connects to the unix socket SOCKET (e.g. the <uds-path>_<port> socket a
guest's vsock connections reach), attaches ANAME as uname root (n_uname 0),
then walks ['..', NAME] from the root and, if the server allows it, opens
and reads what it found. Prints one line:
  escaped: read N bytes of ../NAME: <first bytes>   (exit status 1)
  escaped: <how far the walk left the root>         (exit status 1)
  refused: <what the server answered>               (exit status 0)
A server that keeps its clients inside the export refuses the walk
(Rlerror) or answers '..' at the root with the root itself, as '..' of '/'
is '/' in a Unix path. See docs/9p.md.
"""
import socket
import struct
import sys

NOTAG, NOFID = 0xFFFF, 0xFFFFFFFF
RLERROR = 7
TLOPEN, TVERSION, TATTACH, TWALK, TREAD = 12, 100, 104, 110, 116


def s(text):
    data = text.encode()
    return struct.pack("<H", len(data)) + data


class Conn:
    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(10)
        self.sock.connect(path)

    def _read_exact(self, n):
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("the server closed the connection")
            buf += chunk
        return buf

    def rpc(self, mtype, tag, body):
        """Sends one T-message; returns (R-type, body) of the reply."""
        msg = struct.pack("<BH", mtype, tag) + body
        self.sock.sendall(struct.pack("<I", len(msg) + 4) + msg)
        size, rtype, rtag = struct.unpack("<IBH", self._read_exact(7))
        if rtag != tag:
            raise ConnectionError(f"reply tag {rtag}, expected {tag}")
        return rtype, self._read_exact(size - 7)


def errno_text(body):
    (code,) = struct.unpack("<I", body[:4])
    return f"Rlerror {code}"


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__.split("\n\n")[1])
    path, aname, name = sys.argv[1:]
    c = Conn(path)
    rtype, body = c.rpc(TVERSION, NOTAG, struct.pack("<I", 65536) + s("9P2000.L"))
    if rtype == RLERROR or s("9P2000.L") not in body:
        sys.exit(f"probe: no 9P2000.L from the server: {body!r}")
    rtype, body = c.rpc(TATTACH, 1, struct.pack("<II", 0, NOFID) + s("root") + s(aname) + struct.pack("<I", 0))
    if rtype == RLERROR:
        sys.exit(f"probe: attach {aname} failed: {errno_text(body)}")
    root_qid = body[:13]
    rtype, body = c.rpc(TWALK, 2, struct.pack("<IIH", 0, 1, 2) + s("..") + s(name))
    if rtype == RLERROR:
        print(f"refused: walk ['..', {name!r}] from the root: {errno_text(body)}")
        return 0
    (nwqid,) = struct.unpack("<H", body[:2])
    qids = [body[2 + 13 * i: 15 + 13 * i] for i in range(nwqid)]
    if not qids or qids[0] == root_qid:
        print(f"refused: '..' from the root stays at the root ({nwqid} of 2 names walked)")
        return 0
    if nwqid < 2:
        print(f"escaped: '..' from the root is another directory (no {name!r} there)")
        return 1
    rtype, body = c.rpc(TLOPEN, 3, struct.pack("<II", 1, 0))
    if rtype == RLERROR:
        print(f"escaped: walked to ../{name}, but its open failed: {errno_text(body)}")
        return 1
    rtype, body = c.rpc(TREAD, 4, struct.pack("<IQI", 1, 0, 4096))
    if rtype == RLERROR:
        print(f"escaped: opened ../{name}, but its read failed: {errno_text(body)}")
        return 1
    (count,) = struct.unpack("<I", body[:4])
    print(f"escaped: read {count} bytes of ../{name}: {body[4:4 + min(count, 60)]!r}")
    return 1


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""A small QMP client (QEMU Machine Protocol) on a unix socket, standard
library only. QEMU listens with `-qmp unix:PATH,server=on,wait=off`.

Usage:
  qmp.py SOCKET COMMAND [ARGUMENTS-JSON]   run one command, print its return
  qmp.py SOCKET --wait-migration [--timeout S] [--interval S]
                                           poll query-migrate until the
                                           migration ends; print its last
                                           answer
  qmp.py SOCKET --wait-socket [--timeout S]
                                           wait until QEMU answers on SOCKET

A command's return value is printed as one line of JSON. A QMP error is
printed to stderr as "qmp: CLASS: DESCRIPTION" and the exit status is 1;
--wait-migration exits 0 only when the status is "completed". Asynchronous
events that arrive meanwhile are skipped (--events prints them to stderr).

As a module: `with Qmp(path) as q: q.command("query-status")`.
"""

import argparse
import json
import socket
import sys
import time


class QmpError(Exception):
    """An error answer from QEMU: its class and description."""

    def __init__(self, cls, desc):
        super().__init__(f"{cls}: {desc}")
        self.cls = cls
        self.desc = desc


class Qmp:
    """One QMP session: greeting read and capabilities negotiated on open."""

    def __init__(self, path, timeout=30.0, show_events=False):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.file = self.sock.makefile("rb")
        self.show_events = show_events
        self.events = []
        self.next_id = 0
        greeting = self._read()
        if "QMP" not in greeting:
            raise QmpError("Protocol", f"no QMP greeting: {greeting}")
        self.version = greeting["QMP"].get("version", {}).get("qemu", {})
        self.command("qmp_capabilities")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        self.file.close()
        self.sock.close()

    def _read(self):
        line = self.file.readline()
        if not line:
            raise QmpError("Protocol", "QEMU closed the QMP socket")
        return json.loads(line)

    def command(self, name, arguments=None):
        """Sends a command, returns its "return" value or raises QmpError."""
        self.next_id += 1
        msg = {"execute": name, "id": self.next_id}
        if arguments:
            msg["arguments"] = arguments
        self.sock.sendall(json.dumps(msg).encode() + b"\n")
        while True:
            answer = self._read()
            if "event" in answer:
                self.events.append(answer)
                if self.show_events:
                    print(json.dumps(answer), file=sys.stderr)
                continue
            if answer.get("id") != self.next_id:
                continue
            if "error" in answer:
                err = answer["error"]
                raise QmpError(err.get("class", "?"), err.get("desc", ""))
            return answer.get("return")

    def wait_migration(self, timeout, interval):
        """Polls query-migrate until the status is final; returns the last
        answer (with "status" "timeout" added if the time ran out)."""
        end = time.monotonic() + timeout
        while True:
            info = self.command("query-migrate")
            if info.get("status") in ("completed", "failed", "cancelled"):
                return info
            if time.monotonic() > end:
                info["status-at-timeout"] = info.get("status")
                info["status"] = "timeout"
                return info
            time.sleep(interval)


def wait_socket(path, timeout):
    end = time.monotonic() + timeout
    while True:
        try:
            with Qmp(path, timeout=5.0):
                return True
        except (OSError, QmpError):
            if time.monotonic() > end:
                return False
            time.sleep(0.05)


def main():
    ap = argparse.ArgumentParser(description="A small QMP client.")
    ap.add_argument("socket")
    ap.add_argument("command", nargs="?")
    ap.add_argument("arguments", nargs="?", help="the command's arguments as a JSON object")
    ap.add_argument("--wait-migration", action="store_true")
    ap.add_argument("--wait-socket", action="store_true")
    ap.add_argument("--timeout", type=float, default=300.0)
    ap.add_argument("--interval", type=float, default=0.05)
    ap.add_argument("--events", action="store_true", help="print events to stderr")
    args = ap.parse_args()

    if args.wait_socket:
        ok = wait_socket(args.socket, args.timeout)
        if not ok:
            print(f"qmp: nothing answered on {args.socket}", file=sys.stderr)
        return 0 if ok else 1
    try:
        with Qmp(args.socket, show_events=args.events) as q:
            if args.wait_migration:
                info = q.wait_migration(args.timeout, args.interval)
                print(json.dumps(info))
                return 0 if info.get("status") == "completed" else 1
            if not args.command:
                ap.error("a COMMAND, --wait-migration or --wait-socket is needed")
            arguments = json.loads(args.arguments) if args.arguments else None
            print(json.dumps(q.command(args.command, arguments)))
            return 0
    except QmpError as e:
        print(f"qmp: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"qmp: {args.socket}: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

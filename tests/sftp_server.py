"""A real SFTP server for tests: paramiko's server side on 127.0.0.1 in a thread, password auth, files kept
under a temporary root. Started and stopped by the tests themselves (see the ``sftp_server`` fixture)."""

from __future__ import annotations

import os
import socket
import threading
from pathlib import Path

import paramiko


class _Auth(paramiko.ServerInterface):
    def __init__(self, username: str, password: str):
        self.username, self.password = username, password

    def get_allowed_auths(self, username):
        return "password"

    def check_auth_password(self, username, password):
        ok = username == self.username and password == self.password
        return paramiko.AUTH_SUCCESSFUL if ok else paramiko.AUTH_FAILED

    def check_channel_request(self, kind, chanid):
        return paramiko.OPEN_SUCCEEDED if kind == "session" else paramiko.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED


class _Handle(paramiko.SFTPHandle):
    def stat(self):
        return paramiko.SFTPAttributes.from_stat(os.fstat(self.fh.fileno()))


class _Files(paramiko.SFTPServerInterface):
    """Plain files below ``root``; paths may not leave it."""

    def __init__(self, server, root, *args, **kwargs):
        super().__init__(server, *args, **kwargs)
        self.root = Path(root).resolve()

    def _path(self, path: str) -> Path:
        full = (self.root / path.lstrip("/")).resolve()
        if full != self.root and self.root not in full.parents:
            raise PermissionError(path)
        return full

    def _guard(self, fn):
        try:
            return fn()
        except OSError as exc:
            return paramiko.SFTPServer.convert_errno(exc.errno or 13)

    def open(self, path, flags, attr):
        def go():
            full = self._path(path)
            fd = os.open(full, flags | getattr(os, "O_BINARY", 0), 0o644)
            mode = (
                "ab" if flags & os.O_APPEND else "r+b" if flags & os.O_RDWR else "wb" if flags & os.O_WRONLY else "rb"
            )
            h = _Handle(flags)
            h.fh = h.readfile = h.writefile = os.fdopen(fd, mode)
            h.filename = str(full)
            return h

        return self._guard(go)

    def stat(self, path):
        return self._guard(lambda: paramiko.SFTPAttributes.from_stat(os.stat(self._path(path))))

    lstat = stat

    def list_folder(self, path):
        def go():
            full = self._path(path)
            return [paramiko.SFTPAttributes.from_stat(os.stat(full / n), n) for n in sorted(os.listdir(full))]

        return self._guard(go)

    def rename(self, oldpath, newpath):
        def go():
            os.rename(self._path(oldpath), self._path(newpath))
            return paramiko.SFTP_OK

        return self._guard(go)

    posix_rename = rename

    def remove(self, path):
        def go():
            os.remove(self._path(path))
            return paramiko.SFTP_OK

        return self._guard(go)

    def mkdir(self, path, attr):
        def go():
            os.mkdir(self._path(path))
            return paramiko.SFTP_OK

        return self._guard(go)


class SFTPServer:
    def __init__(self, root: Path, username: str = "hub", password: str = "sftp-test-password"):
        self.root, self.username, self.password = Path(root), username, password
        self.key = paramiko.ECDSAKey.generate()
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.host, self.port = self.sock.getsockname()
        self.transports: list[paramiko.Transport] = []
        self.logins = 0
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, name="test-sftp", daemon=True)
        self.thread.start()

    @property
    def host_key_line(self) -> str:
        return f"{self.key.get_name()} {self.key.get_base64()}"

    def _serve(self):
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            t = paramiko.Transport(conn)
            t.add_server_key(self.key)
            t.set_subsystem_handler("sftp", paramiko.SFTPServer, _Files, str(self.root))
            self.transports.append(t)
            try:
                t.start_server(server=_Auth(self.username, self.password))
                self.logins += 1
            except (paramiko.SSHException, EOFError, OSError):
                continue

    def files(self, folder: str) -> list[Path]:
        d = self.root / folder
        return sorted(d.iterdir(), key=lambda p: p.stat().st_mtime_ns) if d.exists() else []

    def stop(self):
        self._stop.set()
        try:
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes the accept() (closing alone may not, on Linux)
        except OSError:
            pass
        self.sock.close()
        for t in self.transports:
            t.close()
        self.thread.join(timeout=5)

"""``multipart/*`` bodies, written and read the same way by the SFCC connector (OCAPI ``/s/-/dw/batch``,
``multipart/mixed``) and by its sandbox (the batch route, and the first file part of the OCI Impex upload's
``multipart/form-data``). Stdlib only: the sandbox imports it without Django."""

from __future__ import annotations

import re


def build_multipart(parts: list[tuple[dict, str]], boundary: str) -> bytes:
    """``parts`` (headers, body text) as one body with ``boundary``."""
    chunks = []
    for headers, body in parts:
        head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        chunks.append(f"--{boundary}\r\n{head}\r\n{body}\r\n")
    chunks.append(f"--{boundary}--\r\n")
    return "".join(chunks).encode()


def parse_multipart(body: bytes, boundary: str) -> list[tuple[dict, str]]:
    """The parts of ``body``: (headers with lower-case names, body text), up to the closing boundary."""
    out = []
    for chunk in body.decode("utf-8", "replace").split(f"--{boundary}")[1:]:
        if chunk.startswith("--"):
            break
        head, _, payload = chunk.lstrip("\r\n").partition("\r\n\r\n")
        headers = {}
        for line in head.split("\r\n"):
            if ":" in line:
                k, v = line.split(":", 1)
                headers[k.strip().lower()] = v.strip()
        out.append((headers, payload[:-2] if payload.endswith("\r\n") else payload))
    return out


def first_file_part(body: bytes, content_type: str) -> bytes | None:
    """The content of the first file part of a ``multipart/form-data`` body, or None."""
    m = re.search(r'boundary="?([^";]+)"?', content_type or "")
    if not content_type.lower().startswith("multipart/form-data") or not m:
        return None
    sep = b"--" + m.group(1).encode()
    for chunk in body.split(sep)[1:]:
        if chunk.startswith(b"--"):
            break
        head, _, payload = chunk.lstrip(b"\r\n").partition(b"\r\n\r\n")
        if b"filename=" in head.lower() or b'name="file' in head.lower():
            return payload[:-2] if payload.endswith(b"\r\n") else payload
    return None

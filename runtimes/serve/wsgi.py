"""What the node reads of a WSGI request (cheroot serves it): the body, whether framed by Content-Length or
sent with ``Transfer-Encoding: chunked`` (RFC 9112 7.1; cheroot decodes the chunks and marks the input as
terminated, ``wsgi.input_terminated``), the client's Accept, the query parameters in order, and the absolute base
URL the client used (for Retrieve URLs)."""
from __future__ import annotations

from urllib.parse import parse_qsl, quote

READ_BLOCK = 1 << 20


class BodyError(ValueError):
    """A body that cannot be taken: ``status`` is the HTTP status line to answer with."""

    def __init__(self, status: str, message: str):
        super().__init__(message)
        self.status = status


def chunked(environ) -> bool:
    return bool(environ.get("wsgi.input_terminated")) or "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()


def body(environ, limit: int, hint: str) -> bytes:
    """The request body of 1 to ``limit`` bytes. ``hint`` says what to send, for the error of an empty body."""
    stream = environ["wsgi.input"]
    if chunked(environ):
        data = bytearray()
        try:
            while block := stream.read(min(READ_BLOCK, limit + 1 - len(data))):
                data += block
                if len(data) > limit:
                    raise BodyError("413 Payload Too Large", f"the body is over {limit} bytes; {hint}")
        except (ValueError, OSError) as e:  # cheroot's decoder: a malformed chunk size or delimiter
            raise BodyError("400 Bad Request", f"the chunked body is malformed ({e})") from None
        data = bytes(data)
    else:
        try:
            size = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            raise BodyError("400 Bad Request", "Content-Length is not a number") from None
        if size > limit:
            raise BodyError("413 Payload Too Large", f"the body is {size} bytes, over {limit}; {hint}")
        data = stream.read(size) if size else b""
    if not data:
        raise BodyError("400 Bad Request", f"the request has no body: {hint}")
    return data


def warning(text: str) -> tuple[str, str]:
    """A ``Warning`` header field as PS3.18 uses it (RFC 7234 5.5: code 299, the agent, a quoted text) carrying
    ``text``: quotes and backslashes escaped, non-ASCII replaced (header values are Latin-1), at most 300
    characters."""
    text = " ".join(text.split())[:300].replace("\\", "\\\\").replace('"', '\\"')
    return "Warning", '299 dcube-edge "' + text.encode("ascii", "replace").decode() + '"'


def accept(environ, params: list[tuple[str, str]] | None = None) -> str | None:
    """The client's acceptable media types: the ``accept`` query parameter where given (PS3.18 8.3.3.1), else the
    Accept header field."""
    for name, value in params if params is not None else query(environ):
        if name == "accept":
            return value
    return environ.get("HTTP_ACCEPT")


def query(environ) -> list[tuple[str, str]]:
    """The query parameters in the order given, blank values kept (``PatientID=`` is Universal Matching)."""
    return parse_qsl(environ.get("QUERY_STRING", ""), keep_blank_values=True)


def base_url(environ, prefix: str) -> str:
    """The absolute URL of ``prefix`` on this server, as the client addressed it (Host header, PEP 3333's URL
    reconstruction)."""
    scheme = environ.get("wsgi.url_scheme", "http")
    host = environ.get("HTTP_HOST")
    if not host:
        host = environ.get("SERVER_NAME", "localhost")
        port = environ.get("SERVER_PORT", "")
        if port and port != ("443" if scheme == "https" else "80"):
            host = f"{host}:{port}"
    return f"{scheme}://{host}{quote(environ.get('SCRIPT_NAME', ''))}{prefix}"

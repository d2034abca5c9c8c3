"""The streaming sources `polaroid.read_stream` captures, each built as the matching
`stream_*` function takes its arguments: `read_stream(sources.web_socket(url),
max_rows=1000)`. Each returns the source's request message."""

from __future__ import annotations

from polaroid.streams import grpc_request as grpc
from polaroid.streams import message_queue_request as message_queue
from polaroid.streams import rest_request as rest_api
from polaroid.streams import web_socket_request as web_socket

__all__ = ["grpc", "message_queue", "rest_api", "web_socket"]

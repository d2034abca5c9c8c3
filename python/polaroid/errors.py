"""Server errors as Python exceptions: one class per kind, carrying the server's message."""

from __future__ import annotations

import grpc


class PolaroidError(Exception):
    """Base of every error Polaroid raises; `code` is the gRPC status code."""

    code: grpc.StatusCode = grpc.StatusCode.UNKNOWN

    def __init__(self, message: str, code: grpc.StatusCode | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class InvalidArgumentError(PolaroidError, ValueError):
    """The request is malformed: unknown column, wrong type, bad expression or handle."""

    code = grpc.StatusCode.INVALID_ARGUMENT


class NotFoundError(PolaroidError, LookupError):
    """The handle, file or job does not exist (or expired, or was dropped)."""

    code = grpc.StatusCode.NOT_FOUND


class UnauthenticatedError(PolaroidError, PermissionError):
    """No token, or one the server does not know: `connect(..., token=...)`."""

    code = grpc.StatusCode.UNAUTHENTICATED


class PermissionDeniedError(PolaroidError, PermissionError):
    """The request reaches outside what the caller may access (e.g. the data roots)."""

    code = grpc.StatusCode.PERMISSION_DENIED


class ResourceExhaustedError(PolaroidError):
    """A configured limit was hit: result size, message size, concurrency."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class FailedPreconditionError(PolaroidError):
    """Valid, but the state it depends on changed (e.g. a source file under a plan)."""

    code = grpc.StatusCode.FAILED_PRECONDITION


class UnavailableError(PolaroidError, ConnectionError):
    """The server (or something it needs) could not be reached, after retries."""

    code = grpc.StatusCode.UNAVAILABLE


class DeadlineExceededError(PolaroidError, TimeoutError):
    """The call's deadline passed, after retries."""

    code = grpc.StatusCode.DEADLINE_EXCEEDED


class UnimplementedError(PolaroidError, NotImplementedError):
    """The server does not offer this call."""

    code = grpc.StatusCode.UNIMPLEMENTED


class CancelledError(PolaroidError):
    """The work was cancelled."""

    code = grpc.StatusCode.CANCELLED


class InternalError(PolaroidError):
    """A failure on the server that is not the caller's doing."""

    code = grpc.StatusCode.INTERNAL


_BY_CODE: dict[grpc.StatusCode, type[PolaroidError]] = {
    cls.code: cls
    for cls in (
        InvalidArgumentError,
        NotFoundError,
        UnauthenticatedError,
        PermissionDeniedError,
        ResourceExhaustedError,
        FailedPreconditionError,
        UnavailableError,
        DeadlineExceededError,
        UnimplementedError,
        CancelledError,
        InternalError,
    )
}


def from_rpc_error(error: grpc.RpcError) -> PolaroidError:
    """The exception for a failed call, with the server's message."""
    code = error.code() if hasattr(error, "code") else grpc.StatusCode.UNKNOWN
    details = error.details() if hasattr(error, "details") else str(error)
    cls = _BY_CODE.get(code, PolaroidError)
    return cls(details or code.name, code)

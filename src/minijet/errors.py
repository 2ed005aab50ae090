"""Errors a user or operator can cause.

Each is shown as one line (never a traceback) by the command-line tools, and crosses gRPC
as a status code plus message, so a client raises the same class the server raised.
"""
import grpc


class MinijetError(Exception):
    """Base of every error that is reported to the user as one clear line."""

    code = grpc.StatusCode.UNKNOWN
    retryable = False  # raised by a server: the same call may succeed later


class InvalidArgument(MinijetError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class NotFound(MinijetError):
    code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(MinijetError):
    code = grpc.StatusCode.ALREADY_EXISTS


class FailedPrecondition(MinijetError):
    """The request is valid but the system's state does not allow it (e.g. safe mode)."""

    code = grpc.StatusCode.FAILED_PRECONDITION


class Unavailable(MinijetError):
    """A daemon cannot be reached, or cannot serve the request right now."""

    code = grpc.StatusCode.UNAVAILABLE
    retryable = True


class Unauthenticated(MinijetError):
    code = grpc.StatusCode.UNAUTHENTICATED


class PermissionDenied(MinijetError):
    """The caller is known but may not do this (minijet.acl)."""

    code = grpc.StatusCode.PERMISSION_DENIED


class ConfigError(MinijetError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class ChecksumError(MinijetError):
    """Stored or received data does not match its checksum."""

    code = grpc.StatusCode.DATA_LOSS


class NoSpace(MinijetError):
    """No dataserver has room for a block."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED


BY_CODE = {cls.code: cls for cls in (InvalidArgument, NotFound, AlreadyExists,
                                      FailedPrecondition, Unavailable, Unauthenticated,
                                      PermissionDenied, ChecksumError, NoSpace)}


def _subclasses(cls: type) -> list[type]:
    return [cls] + [s for c in cls.__subclasses__() for s in _subclasses(c)]


def by_name(name: str, code: grpc.StatusCode) -> type[MinijetError]:
    """The MinijetError class a server named (any loaded subclass), else the one of `code`."""
    for cls in _subclasses(MinijetError):
        if cls.__name__ == name:
            return cls
    return BY_CODE.get(code, MinijetError)

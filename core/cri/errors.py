"""The engine's errors as gRPC status codes, for every RPC (:func:`rpc`).

A :class:`~dockyard.errors.DockyardError` becomes the code a kubelet expects
(NotFound -> NOT_FOUND, InvalidParameter -> INVALID_ARGUMENT, Conflict ->
FAILED_PRECONDITION or ALREADY_EXISTS for a name in use); anything else is
INTERNAL with its message, and logged with its traceback.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any, TypeVar

import grpc

from ..errors import Conflict, DockyardError, InvalidParameter, NotFound

log = logging.getLogger("dockyard.cri")

_F = TypeVar("_F", bound=Callable[..., Any])


class CriError(Exception):
    """An error with its own gRPC code, raised by the CRI's handlers."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code


def code_of(exc: BaseException) -> grpc.StatusCode:
    if isinstance(exc, CriError):
        return exc.code
    if isinstance(exc, NotFound):
        return grpc.StatusCode.NOT_FOUND
    if isinstance(exc, InvalidParameter):
        return grpc.StatusCode.INVALID_ARGUMENT
    if isinstance(exc, Conflict):
        return grpc.StatusCode.ALREADY_EXISTS if "already in use" in str(exc) else grpc.StatusCode.FAILED_PRECONDITION
    if isinstance(exc, DockyardError):
        return grpc.StatusCode.INTERNAL if exc.status >= 500 else grpc.StatusCode.FAILED_PRECONDITION
    return grpc.StatusCode.INTERNAL


def rpc(method: _F) -> _F:
    """Wrap a servicer method ``(self, request, context)``: an exception becomes
    ``context.abort`` with its code and message."""

    @functools.wraps(method)
    def wrapper(self: Any, request: Any, context: grpc.ServicerContext) -> Any:
        try:
            return method(self, request, context)
        except grpc.RpcError:
            raise
        except Exception as exc:  # every error reaches the kubelet as a status
            code = code_of(exc)
            if code == grpc.StatusCode.INTERNAL:
                log.exception("CRI %s failed", method.__name__)
            else:
                log.debug("CRI %s: %s", method.__name__, exc)
            context.abort(code, str(exc) or type(exc).__name__)

    return wrapper  # type: ignore[return-value]

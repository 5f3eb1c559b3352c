"""Request AI application gateway endpoints from a ClearML task, on any ClearML server.

Writes the same runtime keys and system tag as ``Task.request_external_endpoint``, which
refuses to run on the open-source server (it needs the enterprise feature set).
"""

from .endpoints import GatewayError, list_endpoints, request_endpoint, wait_for_endpoint

__all__ = ["GatewayError", "list_endpoints", "request_endpoint", "wait_for_endpoint"]
__version__ = "0.1.0"

"""Ask the gateway's router for an endpoint by writing the task's runtime keys and system tag.

These are the keys and the tag `Task.request_external_endpoint` writes, minus its
`feature_set == "advanced"` check, which only enterprise servers pass.
"""

import os
import time
from typing import Any, Dict, List, Optional, Tuple

from clearml import Task
from clearml.backend_api import Session
from clearml.utilities.networking import get_private_ip

PROTOCOLS = ("http", "tcp")
MODES = ("path", "subdomain")
# The router only looks at tasks with this system tag.
TAG = "external_service"

# protocol -> (`_SERVICE` value, address key, port key)
_KEYS = {
    "http": ("EXTERNAL", "_ADDRESS", "_PORT"),
    "tcp": ("EXTERNAL_TCP", "external_address", "external_tcp_port"),
}
_UPSTREAM_PORT = "upstream_task_port"
# Written by clearml-agent from docker `-p` args: "host:container,hostA-hostB:contA-contB".
_PORT_MAPPING = "_external_host_tcp_port_mapping"
# Written by this gateway's router: the task's own address once `external_address` is its own.
_TARGET_ADDRESS = "_ROUTER_TARGET_ADDRESS"


class GatewayError(RuntimeError):
    """A ClearML API call failed."""


def _key(base: str, suffix: Optional[str]) -> str:
    return f"{base}__{suffix}" if suffix else base


class _TaskApi:
    """Raw API calls about one task: the SDK's task methods for this are feature-set gated or
    private, and raw calls let one `tasks.edit` carry both the keys and the tag."""

    def __init__(self, task: Any = None) -> None:
        if isinstance(task, Task):
            self.task_id, self.session = task.id, task.session
            return
        current = Task.current_task()
        self.task_id = task or os.environ.get("CLEARML_TASK_ID") or (current.id if current else None)
        if not self.task_id:
            raise GatewayError("no task: pass one, or run inside a ClearML task (CLEARML_TASK_ID)")
        self.session = current.session if current and current.id == self.task_id else Session()

    def call(self, endpoint: str, body: Dict[str, Any], missing_ok: bool = False) -> Optional[Dict]:
        """The call's `data`; None if `missing_ok` and the server lacks the endpoint (404)."""
        service, action = endpoint.split(".", 1)
        response = self.session.send_request(service, action, json=body)
        if response is None:
            raise GatewayError(f"{endpoint}: the SDK is in offline mode")
        if missing_ok and response.status_code == 404:
            return None
        try:
            envelope = response.json()
        except ValueError:
            envelope = None
        envelope = envelope if isinstance(envelope, dict) else {}
        if response.status_code != 200:
            msg = (envelope.get("meta") or {}).get("result_msg") or response.text[:200]
            raise GatewayError(f"{endpoint} failed ({response.status_code}): {msg}")
        return envelope.get("data") or {}

    def get(self) -> Dict[str, Any]:
        return self.call("tasks.get_by_id", {"task": self.task_id})["task"]

    def runtime(self) -> Dict[str, Any]:
        return dict(self.get().get("runtime") or {})


def _task_address() -> str:
    # Same source as the SDK: the agent's idea of the host IP first.
    return os.environ.get("CLEARML_AGENT_HOST_IP") or get_private_ip()


def _host_port(runtime: Dict[str, Any], port: int) -> int:
    """The host port docker publishes `port` on, per the agent's mapping (else `port`)."""
    for item in str(runtime.get(_PORT_MAPPING) or "").split(","):
        host, _, inner = item.partition(":")
        try:
            host_first = int(host.split("-")[0])
            low, high = int(inner.split("-")[0]), int(inner.split("-")[-1])
        except ValueError:
            continue
        if low <= port <= high:
            return host_first + port - low
    return port


def _free_suffix(runtime: Dict[str, Any]) -> Optional[str]:
    """No suffix for the first unnamed endpoint, then "1", "2", ... like the SDK.

    Taken means any protocol's keys: the SDK only looks at one protocol's port key, so an unnamed
    tcp request after an unnamed http one overwrites its `_SERVICE`.
    """

    def taken(suffix: Optional[str]) -> bool:
        return any(_key(base, suffix) in runtime for base in ("_SERVICE", "_PORT", "external_tcp_port"))

    if not taken(None):
        return None
    index = 1
    while taken(str(index)):
        index += 1
    return str(index)


def _route_type(api: _TaskApi, route: str) -> str:
    """The static route's type from `routers.get_routes` (enterprise); `path` if unknown."""
    data = api.call("routers.get_routes", {"name": f"^{route}$"}, missing_ok=True) or {}
    routes = data.get("routes") or []
    return (routes[0].get("type") if routes else None) or "path"


def _answer(runtime: Dict[str, Any], protocol: str, suffix: Optional[str]) -> Dict[str, Any]:
    """What the router answered for one endpoint (`endpoint` None if not yet)."""
    _, address_key, port_key = _KEYS[protocol]
    endpoint = browser = None
    if protocol == "http":
        port = runtime.get(_key(port_key, suffix))
        endpoint = runtime.get(_key("endpoint", suffix))
        browser = runtime.get(_key("browser_endpoint", suffix))
    else:
        address, published = runtime.get(_key(address_key, suffix)), runtime.get(_key(port_key, suffix))
        port = runtime.get(_key(_UPSTREAM_PORT, suffix), published)
        target = runtime.get(_key(_TARGET_ADDRESS, suffix))
        # Until the router answers, these hold the task's own address and port.
        routed = str(published) != str(port) or (target is not None and address != target)
        if address and published and routed:
            endpoint = f"{address}:{published}"
    return {
        "endpoint": endpoint,
        "browser_endpoint": browser,
        "port": port,
        "protocol": protocol,
        "name": suffix,
    }


def request_endpoint(
    port: int,
    protocol: str = "http",
    name: Optional[str] = None,
    static_route: Optional[str] = None,
    mode: Optional[str] = None,
    task: Any = None,
    wait: float = 0.0,
    poll_interval: float = 1.0,
) -> Optional[Dict[str, Any]]:
    """Asks the router to expose `port` of this task; like `Task.request_external_endpoint`.

    :param port: the port the application listens on (in its container)
    :param protocol: ``http`` or ``tcp``
    :param name: endpoint name (key suffix); unnamed endpoints get "", "1", "2", ...
    :param static_route: serve it under this static route (route name) instead of its own URL
    :param mode: the static route's type, ``path`` or ``subdomain``; asked from the server
        (enterprise) when not given, else ``path``
    :param task: a ``Task``, a task id, or None for the current task (or ``CLEARML_TASK_ID``)
    :param wait: seconds to wait for the router's answer (0: do not wait; True: 90)
    :param poll_interval: seconds between polls while waiting
    :return: None if not waiting or on timeout, else a dict like the SDK's:
        ``endpoint``, ``browser_endpoint``, ``port``, ``protocol``, ``name``
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}, not {protocol!r}")
    if mode is not None and mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
    if mode is not None and not static_route:
        raise ValueError("mode needs static_route")
    api = _TaskApi(task)
    if static_route and mode is None:
        mode = _route_type(api, static_route)

    # Read right before the edit: the server merges nothing, so write back every key we read.
    doc = api.get()
    runtime = dict(doc.get("runtime") or {})
    suffix = _free_suffix(runtime) if name is None else (str(name) or None)
    port = _host_port(runtime, int(port))
    service, address_key, port_key = _KEYS[protocol]
    runtime[_key("_SERVICE", suffix)] = service
    runtime[_key(address_key, suffix)] = _task_address()
    runtime[_key(port_key, suffix)] = port
    if protocol == "tcp":
        runtime[_key(_UPSTREAM_PORT, suffix)] = port
    if static_route:
        runtime[_key("_ROUTER_ENDPOINT_MODE", suffix)] = mode
        runtime[_key("_ROUTER_ENDPOINT_MODE_PARAM", suffix)] = static_route
    tags = list(doc.get("system_tags") or [])
    # One edit for keys and tag, so the router never sees the tag with half the keys.
    body = {"task": api.task_id, "force": True, "runtime": runtime}
    if TAG not in tags:
        body["system_tags"] = tags + [TAG]
    api.call("tasks.edit", body)

    if not wait:
        return None
    # `wait=True` as in the SDK would otherwise mean one second.
    return _wait(api, protocol, suffix, 90.0 if wait is True else float(wait), poll_interval)


def _wait(api: _TaskApi, protocol: str, suffix: Optional[str], timeout: float, interval: float) -> Optional[Dict]:
    deadline = time.monotonic() + timeout
    while True:
        answer = _answer(api.runtime(), protocol, suffix)
        if answer["endpoint"] or answer["browser_endpoint"]:
            return answer
        if time.monotonic() >= deadline:
            return None
        time.sleep(max(0.0, min(interval, deadline - time.monotonic())))


def wait_for_endpoint(
    protocol: str = "http",
    name: Optional[str] = None,
    task: Any = None,
    timeout: float = 90.0,
    poll_interval: float = 1.0,
) -> Optional[Dict[str, Any]]:
    """Waits for the router's answer to an endpoint requested earlier; None on timeout."""
    return _wait(_TaskApi(task), protocol, str(name) if name else None, timeout, poll_interval)


def _requested(runtime: Dict[str, Any]) -> List[Tuple[Optional[str], str]]:
    """(suffix, protocol) of every `_SERVICE[__suffix]` key."""
    out = []
    for key, value in runtime.items():
        if key != "_SERVICE" and not key.startswith("_SERVICE__"):
            continue
        protocol = next((p for p, keys in _KEYS.items() if keys[0] == value), None)
        if protocol:
            out.append((key.partition("__")[2] or None, protocol))
    return sorted(out, key=lambda item: (item[0] is not None, item[0] or ""))


def list_endpoints(task: Any = None) -> List[Dict[str, Any]]:
    """Every endpoint the task asked for, answered or not (``endpoint`` None while pending)."""
    runtime = _TaskApi(task).runtime()
    return [_answer(runtime, protocol, suffix) for suffix, protocol in _requested(runtime)]

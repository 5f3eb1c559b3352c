"""Drive the real `clearml` SDK against a ClearML API server (the emulator, in tests).

Loads a task, optionally asks it for an external endpoint, optionally waits for the router's
answer, and prints one line `SDK_RESULT=<json>` on stdout describing what the SDK saw.
Connection settings come from the usual CLEARML_* environment variables.
"""

import argparse
import json
import sys
import time

from clearml import Task
from clearml.backend_api import Session


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("task_id")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--protocol", choices=["http", "tcp"], default="http")
    parser.add_argument("--name", default=None, help="endpoint_name")
    parser.add_argument("--static-route", default=None, help="static_route (route name)")
    parser.add_argument("--wait", action="store_true", help="request with wait=True")
    parser.add_argument(
        "--wait-only",
        action="store_true",
        help="do not request, only wait_for_external_endpoint()",
    )
    parser.add_argument("--interval", type=float, default=3.0, help="wait_interval_seconds")
    parser.add_argument("--timeout", type=float, default=90.0, help="wait_timeout_seconds")
    args = parser.parse_args()

    task = Task.get_task(task_id=args.task_id)
    started = time.monotonic()
    if args.wait_only:
        result = task.wait_for_external_endpoint(
            wait_interval_seconds=args.interval,
            wait_timeout_seconds=args.timeout,
            protocol=args.protocol,
            endpoint_name=args.name,
        )
    else:
        result = task.request_external_endpoint(
            args.port,
            protocol=args.protocol,
            wait=args.wait,
            wait_interval_seconds=args.interval,
            wait_timeout_seconds=args.timeout,
            endpoint_name=args.name,
            static_route=args.static_route,
        )
    elapsed = time.monotonic() - started

    reloaded = Task.get_task(task_id=args.task_id)
    report = {
        "result": result,
        "elapsed_sec": elapsed,
        "runtime": reloaded.data.runtime or {},
        "system_tags": sorted(reloaded.get_system_tags() or []),
        "status": str(reloaded.status),
        "endpoints": reloaded.list_external_endpoints(),
        "session": {
            "feature_set": Session.feature_set,
            "api_version": Session.api_version,
            "server_version": Session.server_version,
        },
    }
    print("SDK_RESULT=" + json.dumps(report, sort_keys=True, default=str))
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())

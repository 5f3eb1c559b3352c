"""`clearml-gateway-endpoint`: request or list a task's gateway endpoints from a shell."""

import argparse
import json
import sys
from typing import List, Optional

from .endpoints import MODES, PROTOCOLS, GatewayError, list_endpoints, request_endpoint


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="clearml-gateway-endpoint", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    request = commands.add_parser("request", help="ask for an endpoint and print its URL")
    request.add_argument("--port", type=int, required=True, help="port the application listens on")
    request.add_argument("--type", choices=PROTOCOLS, default="http", dest="protocol")
    request.add_argument("--name", help="endpoint name (several endpoints per task)")
    request.add_argument("--static-route", help="serve under this static route (its name)")
    request.add_argument("--mode", choices=MODES, help="static route type (default: ask the server, else path)")
    request.add_argument("--task-id", help="default: the current task (CLEARML_TASK_ID)")
    request.add_argument(
        "--wait", type=float, default=90.0, metavar="SECONDS", help="wait this long for the URL (0: do not wait)"
    )
    listing = commands.add_parser("list", help="print the task's endpoints")
    listing.add_argument("--task-id", help="default: the current task (CLEARML_TASK_ID)")
    listing.add_argument("--json", action="store_true", help="print them as JSON")
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "request":
            if args.mode and not args.static_route:
                parser.error("--mode needs --static-route")
            return _request(args)
        endpoints = list_endpoints(task=args.task_id)
    except GatewayError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(endpoints, indent=2))
        return 0
    for e in endpoints:
        url = e["endpoint"] or e["browser_endpoint"] or "(pending)"
        print(f"{e['name'] or '-'}\t{e['protocol']}\t{e['port']}\t{url}")
    return 0


def _request(args: argparse.Namespace) -> int:
    answer = request_endpoint(
        args.port,
        protocol=args.protocol,
        name=args.name,
        static_route=args.static_route,
        mode=args.mode,
        task=args.task_id,
        wait=args.wait,
    )
    if answer:
        print(answer["endpoint"] or answer["browser_endpoint"])
    elif args.wait:
        print(f"no endpoint after {args.wait:g}s: is the gateway's router running?", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

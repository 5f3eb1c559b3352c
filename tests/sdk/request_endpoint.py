"""Asks for an external endpoint the way a data scientist's task does, with the real clearml SDK.

Usage: request_endpoint.py TASK_ID PORT [--protocol http|tcp] [--name NAME] [--timeout S] [--interval S]
Prints one JSON line: {"result": <what request_external_endpoint returned>, "seconds": <wait time>}.
"""
import argparse
import json
import time

from clearml import Task


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("task_id")
    parser.add_argument("port", type=int)
    parser.add_argument("--protocol", default="http")
    parser.add_argument("--name", default=None)
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument("--interval", type=float, default=3.0)
    args = parser.parse_args()

    task = Task.get_task(task_id=args.task_id)
    started = time.monotonic()
    result = task.request_external_endpoint(
        args.port,
        protocol=args.protocol,
        wait=True,
        wait_interval_seconds=args.interval,
        wait_timeout_seconds=args.timeout,
        endpoint_name=args.name,
    )
    print(json.dumps({"result": result, "seconds": time.monotonic() - started}))


if __name__ == "__main__":
    main()

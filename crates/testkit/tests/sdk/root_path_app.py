"""A FastAPI app run the way Gradio and FastAPI apps run behind the gateway: with
`root_path="/service/<task id>"`, while the gateway strips that prefix from the requests.

Usage: root_path_app.py PORT ROOT_PATH   (serves until killed)
"""
import sys

import uvicorn
from fastapi import FastAPI, Request

app = FastAPI()


@app.get("/")
def index(request: Request):
    # Links the app builds itself must carry the prefix so a browser can follow them.
    return {"hello_link": str(request.url_for("hello")), "root_path": request.scope.get("root_path")}


@app.get("/hello")
def hello():
    return {"hello": "from the task"}


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), root_path=sys.argv[2], log_level="warning")

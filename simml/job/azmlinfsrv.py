"""Serve a web service through ``azureml-inference-server-http`` (``azmlinfsrv``) instead of
simml's own server (``simml.job.scoring``): ``python -m simml.job.azmlinfsrv``.

STANDARD LIBRARY ONLY at import time (this package is copied into every environment); the
inference server and gunicorn are imported when it runs, from the service's environment, which must
list ``azureml-inference-server-http``.

It runs what ``azmlinfsrv`` runs (gunicorn with sync workers and the Flask app
``azureml_inference_server_http.server.entry:app``, configured by the same ``AZUREML_*`` variables)
with three differences that keep it local and comparable with simml's server:

* gunicorn listens on the socket simml already bound to 127.0.0.1 (``fd://3``): the inference
  server's own command binds 0.0.0.0 and has no host option;
* after the app is created (``init()`` has run) the ready marker ``SIMML_SERVICE_READY`` is
  written, as simml's server does;
* with ``SIMML_SERVICE_KEYS`` the app is wrapped in the same key check as simml's server (Azure
  checks keys in front of the container, not in it).
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any, Callable, Iterable


def create_app() -> Callable[..., Iterable[bytes]]:
    """gunicorn's app factory (``simml.job.azmlinfsrv:create_app()``), run in each worker."""
    from azureml_inference_server_http.server.create_app import create

    from simml.job.scoring import Keys

    app = create()          # loads the entry script and runs init(); exits 3 when init raises
    ready = os.environ.get("SIMML_SERVICE_READY")
    if ready:
        tmp = f"{ready}.{os.getpid()}"
        with open(tmp, "w", encoding="utf-8") as handle:
            json.dump({"pid": os.getpid(), "server": "azmlinfsrv"}, handle)
        os.replace(tmp, ready)
    keys = Keys(os.environ.get("SIMML_SERVICE_KEYS") or None)
    if keys.path is None:
        return app
    denied = json.dumps({"message": "Unauthorized: this service needs the header "
                         "'Authorization: Bearer <key>' with one of its keys."}).encode()

    def with_keys(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        path = environ.get("PATH_INFO", "")
        if path in ("/score", "/swagger.json") and environ.get("REQUEST_METHOD") != "OPTIONS" \
                and not keys.allows(environ.get("HTTP_AUTHORIZATION")):
            start_response("401 UNAUTHORIZED", [("Content-Type", "application/json"),
                                                ("Content-Length", str(len(denied))),
                                                ("WWW-Authenticate", "Bearer")])
            return [denied]
        return app(environ, start_response)

    return with_keys


def main() -> int:
    from simml.job.scoring import redirect_output
    redirect_output()
    if os.environ.get("SIMML_SERVICE_CWD"):
        os.chdir(os.environ["SIMML_SERVICE_CWD"])
    try:
        import gunicorn.app.wsgiapp
        import azureml_inference_server_http  # noqa: F401 - installed?
    except ImportError as exc:
        print(f"Error: the service is configured to use azureml-inference-server-http, which is "
              f"not installed in its environment ({sys.executable}): {exc}. Add "
              "'azureml-inference-server-http' to the environment's pip packages, or serve with "
              "simml's server.", flush=True)
        return 4
    from azureml_inference_server_http.constants import (
        DEFAULT_WORKER_TIMEOUT_SECONDS,
        ENV_WORKER_TIMEOUT,
    )
    fd = os.environ.get("SIMML_SERVICE_FD")
    bind = f"fd://{fd}" if fd else (f"{os.environ.get('SIMML_SERVICE_HOST') or '127.0.0.1'}:"
                                    f"{os.environ.get('SIMML_SERVICE_PORT') or '5001'}")
    sys.argv = [
        sys.argv[0], "-b", bind, "-w", os.environ.get("WORKER_COUNT", "1"),
        "--timeout", os.environ.get(ENV_WORKER_TIMEOUT, DEFAULT_WORKER_TIMEOUT_SECONDS),
        "--access-logfile", "-", "--error-logfile", "-",
    ]
    import gunicorn.config
    if any(getattr(setting, "name", None) == "control_socket_disable"
           for setting in gunicorn.config.KNOWN_SETTINGS):
        sys.argv.append("--no-control-socket")   # gunicorn >= 25.1 would make ~/.gunicorn/
    sys.argv.append("simml.job.azmlinfsrv:create_app()")
    gunicorn.app.wsgiapp.WSGIApplication("%(prog)s [OPTIONS] [APP_MODULE]").run()
    return 0


if __name__ == "__main__":
    sys.exit(main())

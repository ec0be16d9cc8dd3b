"""Launcher of the local runner: ``python -m simml_local.runner '<json spec>'``.

The process the client starts forks at once, before importing anything heavy, and exits, so the
forked runner belongs to nobody (the client may exit; no zombie is left). The runner then imports
simml and serves the workspace's submitted runs (``simml_local.driver``).
"""

import json
import os
import sys


def main(argv: list[str]) -> int:
    spec = json.loads(argv[1])
    if os.fork() > 0:
        return 0
    os.setsid()
    from simml_local.driver import serve
    return serve(spec)


if __name__ == "__main__":
    os._exit(main(sys.argv))

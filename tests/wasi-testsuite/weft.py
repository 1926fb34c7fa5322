"""wasi-testsuite runtime adapter for weft.

Used by `scripts/wasi-testsuite.sh`, or directly:

    WEFT=/path/to/weft ./run-tests --runtime-adapter /path/to/weft.py

It maps a test to the weft command line a user would type:

    weft run   [--env K=V]... [--dir ROOT::/] [--inherit-network] [--allow-host H:P]... FILE ARGS...
    weft serve --addr 127.0.0.1:0 [--env K=V]... [--allow-host H:P]... FILE

Nothing is granted that the test does not ask for: the network only for the `sockets`
proposal, outgoing HTTP only to the endpoint servers the runner started for this test (its
`HTTP_SERVER_*` variables, including the deliberately closed ones, so that a refused
connection is a connection error and not a policy denial).

One piece of housekeeping: the runner removes the `*.cleanup` files tests leave in their root
directory before and after each test, but skips symbolic links, so the `parent.cleanup -> ..`
link that several filesystem tests make stays behind and makes `filesystem-read-directory`
fail whenever it runs after one of them (for every runtime; the order is the directory's).
`compute_argv`, called just before each test starts, removes such stale links from the
test's root (docs/conformance.md).

`WEFT` names the binary (default: `weft` on PATH) and may carry extra flags, split with
shell rules, e.g. `WEFT="target/release/weft"`.
"""

import os
import shlex
import subprocess
from pathlib import Path
from typing import Dict, List, Optional, Tuple

WEFT = shlex.split(os.getenv("WEFT", "weft"), posix=os.name != "nt")


def get_name() -> str:
    return "weft"


def get_version() -> str:
    result = subprocess.run(WEFT[0:1] + ["--version"], encoding="UTF-8",
                            capture_output=True, check=True)
    # "weft 0.1.0"
    return result.stdout.split()[1]


def get_wasi_versions() -> List[str]:
    return ["wasm32-wasip1", "wasm32-wasip3"]


def get_wasi_worlds() -> List[str]:
    return ["wasi:cli/command", "wasi:http/service"]


def get_timeout_seconds() -> float:
    # The first run of each test compiles it (then it is cached); 5 s, the runner's default,
    # leaves little room on a busy machine.
    return float(os.getenv("WEFT_TEST_TIMEOUT", "30"))


def compute_argv(test_path: str,
                 args_env_root: Tuple[List[str], Dict[str, str], Optional[str]],
                 proposals: List[str],
                 wasi_world: str,
                 wasi_version: str) -> List[str]:
    args, env, root = args_env_root
    if root:
        for link in Path(root).glob("**/*.cleanup"):
            if link.is_symlink():
                link.unlink()
    serve = wasi_world == "wasi:http/service"

    argv = list(WEFT)
    if serve:
        argv += ["serve", "--addr", "127.0.0.1:0"]
    else:
        argv += ["run"]

    for key, value in env.items():
        argv += ["--env", f"{key}={value}"]
        if key.startswith("HTTP_SERVER_") and "http" in proposals:
            argv += ["--allow-host", f"http://{value}"]

    if root:
        argv += ["--dir", f"{root}::/"]

    if "sockets" in proposals:
        argv += ["--inherit-network"]

    argv += [test_path]
    if not serve:
        argv += args
    return argv

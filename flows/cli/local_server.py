"""``sidflows server start|stop|status``: one local Prefect server the commands reuse.

Without ``PREFECT_API_URL`` each command that runs a flow starts Prefect's
temporary server and stops it at its end (10 s or more of every command). A
server started here instead keeps running on loopback, on the same Prefect
database the temporary one would use (``PREFECT_HOME``, or
``PREFECT_API_DATABASE_CONNECTION_URL``), and the commands find it through a
small file in ``PREFECT_HOME`` (``sidflows-server.json``: its address and
process). They keep the embedded default's behaviour: their flows run in their
own process (flows/orchestrator.py), since no ``serve`` or worker runs them.
A unit's server (``PREFECT_API_URL`` set) is never replaced by it.

This module never imports Prefect: the server is Prefect's own command,
started as a process of its own.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from flows.cli.io import EXIT_CONFIG, EXIT_OK, out
from flows.runtime import LOCAL_SERVER_MARK as LOCAL_MARK

DEFAULT_PORT = 4300  # beside a unit's 4200, so a developer's own server is left alone
STATE_FILE = "sidflows-server.json"
STARTUP_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 15.0


def prefect_home() -> Path:
    """Prefect's home as Prefect itself resolves it by default (its settings are not read)."""
    return Path(os.environ.get("PREFECT_HOME") or Path.home() / ".prefect").expanduser()


def state_path() -> Path:
    return prefect_home() / STATE_FILE


def _read_state() -> dict[str, Any] | None:
    try:
        state = json.loads(state_path().read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(state, dict) or "url" not in state or "pid" not in state:
        return None
    return state


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process holds that id now
        return False
    return True


def _healthy(api_url: str, timeout: float = 1.0) -> bool:
    try:
        with urllib.request.urlopen(f"{api_url}/health", timeout=timeout) as answer:
            return bool(answer.status == 200)
    except (OSError, ValueError):
        return False


def running() -> str | None:
    """The API URL of the local server this file names, if it answers; else None."""
    state = _read_state()
    if state is None or not _alive(int(state["pid"])):
        return None
    url = str(state["url"])
    return url if _healthy(url) else None


def adopt() -> str | None:
    """Before Prefect is imported: a command with no PREFECT_API_URL uses the local server.

    Sets PREFECT_API_URL (and the mark that says it is the local one, so the flows
    still run here); None, and nothing set, when no local server answers.
    """
    if os.environ.get("PREFECT_API_URL"):
        return None
    url = running()
    if url is None:
        return None
    os.environ["PREFECT_API_URL"] = url
    os.environ[LOCAL_MARK] = url
    loopback_client()
    return url


def before_prefect() -> None:
    """Where a command is about to import Prefect to run its flows (the orchestrator):
    the local server if one answers, and the client settings of a server on loopback
    (the temporary one included). A unit's server keeps its own, but for the CA file of
    a plain-HTTP API (``plain_http_client``); a Prefect already loaded (tests call the
    command line in-process) is left as it is."""
    if "prefect" in sys.modules:
        return
    if not os.environ.get("PREFECT_API_URL") and adopt() is None:
        loopback_client()
    plain_http_client()


def loopback_client() -> None:
    """A server on loopback with Prefect's default settings has CSRF protection off, yet
    every new client asks it for a token first and is refused: a round trip per client.
    Before Prefect is imported; a server that turns the protection on keeps it."""
    if os.environ.get("PREFECT_SERVER_CSRF_PROTECTION_ENABLED", "").lower() not in _TRUE:
        os.environ.setdefault("PREFECT_CLIENT_CSRF_SUPPORT_ENABLED", "false")


_TRUE = frozenset({"1", "true", "yes", "on"})

PLAIN_HTTP_CA = "plain-http-ca.pem"


def plain_http_client() -> None:
    """Before Prefect is imported: a client of a plain-HTTP API (the temporary server, a
    local one, a unit's ``http://`` server) never checks a certificate, yet Prefect's
    client loads its CA file every time one is made: 26 ms with certifi's bundle, and a
    flow run makes a client per task (measured: a tenth of `serve`'s flow-run CPU). One
    certificate instead. An ``https://`` API, a CA file given, or an API or CA file that
    Prefect's own settings files may name (a profile, ``.env``, ``prefect.toml``,
    ``pyproject.toml``) is left as it is: only Prefect resolves those."""
    url = os.environ.get("PREFECT_API_URL", "")
    if os.environ.get("PREFECT_API_SSL_CERT_FILE") or not (url == "" or url.startswith("http://")):
        return
    if url == "" and _settings_files_may_name_the_api():
        return
    import certifi  # Prefect's own dependency: the bundle its client would load

    bundle = Path(certifi.where()).read_text()
    end = "-----END CERTIFICATE-----"
    first = bundle[: bundle.index(end) + len(end)] + "\n"  # certifi's first root
    path = prefect_home() / PLAIN_HTTP_CA
    try:
        whole = path.read_text() == first
    except OSError:
        whole = False
    if not whole:  # missing, or not the certificate this writes: written again
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, partial = tempfile.mkstemp(dir=path.parent, prefix=f".{PLAIN_HTTP_CA}.")
        with os.fdopen(handle, "w") as out:
            out.write(first)
        os.replace(partial, path)  # whole or not at all, whoever writes it at the same time
    os.environ["PREFECT_API_SSL_CERT_FILE"] = str(path)


# What in a settings file may set Prefect's API or its CA file (cautious: any mention).
_API_WORDS = ("PREFECT_API_URL", "PREFECT_API_SSL_CERT_FILE", "[api", "tool.prefect")


def _settings_files_may_name_the_api() -> bool:
    """Prefect's profiles file, or a ``.env``, ``prefect.toml`` or ``pyproject.toml`` in
    the working directory, mentions the API's URL or CA file (or a Prefect section)."""
    profiles = os.environ.get("PREFECT_PROFILES_PATH") or str(prefect_home() / "profiles.toml")
    for path in (Path(profiles), Path(".env"), Path("prefect.toml"), Path("pyproject.toml")):
        try:
            text = path.read_text(errors="replace")
        except OSError:
            continue
        if any(word in text for word in _API_WORDS):
            return True
    return False


def _prefect_command() -> list[str]:
    beside = Path(sys.executable).with_name("prefect")
    return [str(beside)] if beside.exists() else [sys.executable, "-m", "prefect"]


def start(port: int) -> tuple[str, bool]:
    """The local server's API URL, and whether it was started now (False: already running)."""
    found = running()
    if found is not None:
        return found, False
    url = f"http://127.0.0.1:{port}/api"
    if _healthy(url):
        raise RuntimeError(
            f"something else answers on 127.0.0.1:{port}: choose another --port, "
            f"or point PREFECT_API_URL at it"
        )
    home = prefect_home()
    home.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
    }
    env.pop("PREFECT_API_URL", None)
    log = (home / "sidflows-server.log").open("ab")
    process = subprocess.Popen(
        [*_prefect_command(), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # it outlives this command, and stops as one group
    )
    log.close()
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while not _healthy(url):
        if process.poll() is not None or time.monotonic() > deadline:
            _stop_group(process.pid)
            raise RuntimeError(
                f"the local Prefect server did not start (see {home / 'sidflows-server.log'})"
            )
        time.sleep(0.25)
    state_path().write_text(json.dumps({"url": url, "pid": process.pid, "port": port}) + "\n")
    return url, True


def _stop_group(pid: int) -> bool:
    """SIGTERM to the server's process group, then SIGKILL if it is still there."""
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while _alive(pid) and time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):  # our child (a failed start): reap it
            os.waitpid(pid, os.WNOHANG)
        time.sleep(0.1)
    if _alive(pid):
        os.killpg(pid, signal.SIGKILL)
    return True


def stop() -> bool:
    """Stop the local server this file names; whether one was running."""
    state = _read_state()
    if state is None:
        return False
    pid = int(state["pid"])
    was = _alive(pid) and _stop_group(pid)
    state_path().unlink(missing_ok=True)
    return was


def command(args: argparse.Namespace) -> int:
    """``sidflows server start|stop|status``."""
    if os.environ.get("PREFECT_API_URL") and not os.environ.get(LOCAL_MARK):
        out(f"PREFECT_API_URL is set ({os.environ['PREFECT_API_URL']}): the commands use it")
        if args.action != "stop":
            return EXIT_OK
    if args.action == "start":
        try:
            url, started = start(args.port)
        except RuntimeError as problem:
            print(f"sidflows: {problem}", file=sys.stderr)
            return EXIT_CONFIG
        out(
            f"local Prefect server {'started' if started else 'already running'} on {url} "
            f"(UI: {url.removesuffix('/api')}); the commands reuse it until "
            "`sidflows server stop`"
        )
        return EXIT_OK
    if args.action == "stop":
        out("local Prefect server stopped" if stop() else "no local Prefect server was running")
        return EXIT_OK
    found = running()
    out(
        f"local Prefect server on {found}"
        if found
        else "no local Prefect server: each command starts a temporary one"
    )
    return EXIT_OK

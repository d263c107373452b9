"""A clean console for the `shoprec` command.

Third-party warnings and log records go through `logging` and stay off the console unless
`-v`/`--verbose` or SHOPREC_VERBOSE=1 asks for them. DuckDB objects still alive when the
interpreter tears down make DuckDB's nanobind bindings print dozens of "nanobind: leaked ..."
lines: the connection ibis keeps for Feast's offline store is closed at exit, and the CLI ends
without the teardown (`finish`) because Great Expectations keeps the rest out of reach. Expected
failures end in one line and an exit code; -v adds the traceback."""

from __future__ import annotations

import atexit
import contextlib
import gc
import logging
import os
import signal
import sys
import threading
import traceback
from pathlib import Path
from typing import NoReturn

VERBOSE_ENV = "SHOPREC_VERBOSE"
OWN = frozenset({"shoprec", "training", "serving", "feature_repo", "dags"})  # always shown
_state = {"verbose": False, "handler": None}


def env_verbose() -> bool:
    return os.environ.get(VERBOSE_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


def verbose() -> bool:
    return bool(_state["verbose"])


def set_verbose(on: bool) -> None:
    """The -v flag; a no-op on logging unless `setup` configured it (the CLI, not a test)."""
    _state["verbose"] = on or env_verbose()
    if _state["handler"] is None:
        return
    for name in OWN:
        logging.getLogger(name).setLevel(logging.INFO if verbose() else logging.NOTSET)


class _ConsoleFilter(logging.Filter):
    """Our own records always; everyone else's (warnings included) only when verbose."""

    def filter(self, record: logging.LogRecord) -> bool:
        return verbose() or record.name.split(".")[0] in OWN


def setup(log_file: Path | None = None) -> None:
    """Configure the process for the CLI: warnings into logging, the console handler, SIGTERM
    as a normal exit (so `finally` blocks reap workers), DuckDB released at exit."""
    logging.captureWarnings(True)
    root = logging.getLogger()
    if _state["handler"] is None:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        handler.addFilter(_ConsoleFilter())
        root.addHandler(handler)
        _state["handler"] = handler
        atexit.register(release_duckdb)
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        to_file = logging.FileHandler(log_file)
        to_file.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root.addHandler(to_file)
    set_verbose(env_verbose())
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _terminated)


def _terminated(signum: int, _frame) -> None:
    raise SystemExit(128 + signum)  # unwinds: `finally` blocks terminate and reap children


def release_duckdb() -> None:
    """Close the DuckDB connection ibis holds as its default backend (Feast's DuckDB offline
    store reads through it), while the interpreter is still whole."""
    ibis = sys.modules.get("ibis")
    backend = getattr(getattr(ibis, "options", None), "default_backend", None)
    if backend is None:
        return
    with contextlib.suppress(Exception):  # already closed or half torn down: nothing to do
        backend.disconnect()
    ibis.options.default_backend = None
    gc.collect()


def one_line(text: str) -> str:
    """A message on one line: multi-line library messages (dbt's) joined."""
    return " ".join(line.strip() for line in str(text).splitlines() if line.strip())


def describe(e: BaseException) -> str:
    """The message of an input error, with the path where the OS error names one."""
    if isinstance(e, FileNotFoundError) and e.filename and str(e).startswith("[Errno"):
        return f"no such file or directory: {e.filename}"
    return str(e)


def _class(module: str, name: str) -> type | None:
    """A library's exception class, only if that library was imported (else e cannot be one)."""
    return getattr(sys.modules.get(module), name, None)


def runtime_failure(e: Exception) -> tuple[int, str] | None:
    """(exit code, message) for a failure of a stage or a service, None for a bug."""
    def isa(module: str, name: str) -> bool:
        cls = _class(module, name)
        return cls is not None and isinstance(e, cls)

    if isa("shoprec.transform.runner", "DbtError"):
        return 1, str(e)
    if isa("shoprec.features.online", "OnlineStoreUnavailable"):
        return 1, str(e)
    if isa("shoprec.demo", "DemoError") or isa("shoprec.airflow_stack", "AirflowError"):
        return 1, str(e)
    if isa("shoprec.children", "ChildFailed"):
        return 1, str(e).splitlines()[0]
    if isa("redis.exceptions", "ConnectionError") or isa("redis.exceptions", "TimeoutError"):
        return 1, f"Redis at {_redis_address()} unreachable (SHOPREC_FEAST__REDIS_CONNECTION): {e}"
    if isa("shoprec.validation.judge", "ValidatorError"):
        return 3, f"validator broken (no batch was moved for it): {e}"
    if isa("json", "JSONDecodeError"):
        return 2, f"a JSON file is damaged or half-written: {e}"
    return None


def _redis_address() -> str:
    try:
        from shoprec.config import get_settings

        return get_settings().feast.redis_connection.split(",")[0]
    except Exception:  # the settings themselves are broken: say where we are not
        return "the configured address"


def fail(console, code: int, message: str) -> int:
    """Report an expected failure: the traceback only when verbose, then one red line."""
    if verbose():
        traceback.print_exc()
    console.print(f"error: {one_line(message)}", style="red", markup=False, highlight=False)
    return code


def crash(e: BaseException) -> int:
    """A bug: its traceback is the report (through sys.excepthook, typer's pretty one)."""
    sys.excepthook(type(e), e, e.__traceback__)
    return 1


def exit_code(e: SystemExit) -> int:
    """The status a SystemExit would give the shell (a message means 1, as Python prints it)."""
    if e.code is None or isinstance(e.code, int):
        return e.code or 0
    print(e.code, file=sys.stderr)
    return 1


def finish(code: int) -> NoReturn:
    """Exit with `code` after what matters of a normal exit (atexit handlers, which flush the
    logs and release DuckDB; stdout and stderr flushed) but without the interpreter's teardown:
    Great Expectations keeps SQLAlchemy dialects whose caches hold DuckDB types in its globals,
    beyond any public API's reach, and nanobind reports each one still alive at teardown. A
    non-daemon thread still running gets the normal exit, which waits for it."""
    main = threading.main_thread()
    if any(t.is_alive() and not t.daemon for t in threading.enumerate() if t is not main):
        raise SystemExit(code)
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)

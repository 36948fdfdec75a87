"""What the commands print besides their results: quiet by default, everything with `-v`.

Quiet means: transformers, huggingface_hub and datasets log errors only and show no progress bars ("Loading
weights", "Writing model shards", "Downloading data" for a local folder), transformers' load report is not printed,
and each Python warning is one `warning: ...` message without the source line, printed once. The switches are environment variables set before
those libraries are imported (a command imports them after this runs), and their runtime setters where a library is
already loaded (a test calling `main` in-process); `quiet_output` puts everything back when the command returns.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import warnings
from collections.abc import Iterator

_QUIET_ENVIRONMENT = {
    "TRANSFORMERS_VERBOSITY": "error",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
    "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1",
}
_LIBRARY_LOGGERS = ("transformers", "datasets", "huggingface_hub", "accelerate")


@contextlib.contextmanager
def quiet_output(verbose: bool = False) -> Iterator[None]:
    """Run a command quietly (or, `verbose`, with every library's info and bars), restoring the settings after."""
    saved_environment = {name: os.environ.get(name) for name in _QUIET_ENVIRONMENT}
    saved_levels = {name: logging.getLogger(name).level for name in _LIBRARY_LOGGERS + ("hf_vit_port", "hf_vit_port_tools")}
    saved_format = warnings.formatwarning
    if not verbose:
        for name, value in _QUIET_ENVIRONMENT.items():
            os.environ.setdefault(name, value)
    _set_loaded_libraries(verbose)
    level = logging.INFO if verbose else logging.WARNING
    for name in ("hf_vit_port", "hf_vit_port_tools"):
        logging.getLogger(name).setLevel(level)
    warnings.formatwarning = _one_line_once(set())
    try:
        yield
    finally:
        warnings.formatwarning = saved_format
        for name, value in saved_environment.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        for name, value in saved_levels.items():
            logging.getLogger(name).setLevel(value)
        _restore_loaded_libraries()


def after_import(verbose: bool) -> None:
    """Apply the settings to the libraries a command's module has just imported."""
    _set_loaded_libraries(verbose)


_saved_library_state: list[tuple[str, object]] = []


def _set_loaded_libraries(verbose: bool) -> None:
    level = logging.INFO if verbose else logging.ERROR
    if "transformers" in sys.modules:
        from transformers.utils import logging as transformers_logging

        _saved_library_state.append(("transformers", (transformers_logging.get_verbosity(),
                                                      transformers_logging.is_progress_bar_enabled())))
        transformers_logging.set_verbosity(level)
        (transformers_logging.enable_progress_bar if verbose else transformers_logging.disable_progress_bar)()
    if "datasets" in sys.modules:
        import datasets

        _saved_library_state.append(("datasets", (datasets.logging.get_verbosity(),
                                                  datasets.utils.are_progress_bars_disabled())))
        datasets.logging.set_verbosity(level)
        (datasets.enable_progress_bars if verbose else datasets.disable_progress_bars)()
    if "huggingface_hub" in sys.modules:
        from huggingface_hub.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

        _saved_library_state.append(("huggingface_hub", are_progress_bars_disabled()))
        (enable_progress_bars if verbose else disable_progress_bars)()


def _restore_loaded_libraries() -> None:
    """Undo `_set_loaded_libraries`, first saved state last (so the state before the command wins)."""
    while _saved_library_state:
        name, state = _saved_library_state.pop()
        if name == "transformers":
            from transformers.utils import logging as transformers_logging

            verbosity, bars = state
            transformers_logging.set_verbosity(verbosity)
            (transformers_logging.enable_progress_bar if bars else transformers_logging.disable_progress_bar)()
        elif name == "datasets":
            import datasets

            verbosity, disabled = state
            datasets.logging.set_verbosity(verbosity)
            (datasets.disable_progress_bars if disabled else datasets.enable_progress_bars)()
        else:
            from huggingface_hub.utils import disable_progress_bars, enable_progress_bars

            (disable_progress_bars if state else enable_progress_bars)()


def _one_line_once(seen: set[str]):
    """`warnings.formatwarning` printing `warning: MESSAGE` without the source line, and nothing for a message
    already printed (the same warning reached from two call sites, e.g. a conversion and its verification)."""

    def format_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                       line: str | None = None) -> str:
        text = str(message).strip()
        if text in seen:
            return ""
        seen.add(text)
        return f"warning: {text}\n"

    return format_warning

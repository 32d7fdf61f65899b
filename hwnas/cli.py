"""The `hwnas` command. Subcommands live in hwnas/commands/<name>.py and are imported only when used,
so `hwnas --help` stays fast (torch is not imported for it)."""
from __future__ import annotations

import importlib
import importlib.util
import sys

import click

from hwnas import __version__
from hwnas.errors import HwnasError

# name -> (module under hwnas.commands, one-line help). Each module defines `command`.
COMMANDS = {
    "models": ("models", "List the model zoo with parameters and MACs."),
    "devices": ("devices", "List devices, optionally probing which are usable here."),
    "profile": ("profile", "Time a model on a device (end to end, optionally per op)."),
    "lut": ("lut", "Build, validate, export and import latency lookup tables."),
    "predict": ("predict", "Predict any network's latency from the device's kernel table."),
    "search": ("search", "Platform-aware architecture search (MnasNet reward)."),
    "train": ("train", "Train a searched (or zoo) network stand-alone, export it, measure it."),
    "scale": ("scale", "EfficientNet compound scaling under a latency target."),
    "adapt": ("adapt", "NetAdapt: prune a network until a latency budget is met."),
    "agent": ("agent", "Serve this machine's devices to remote hwnas clients."),
    "demo": ("demo", "A short tour on the default device with the shipped digits data."),
    "cache": ("cache", "See and clear the caches (exports, supernets) and their size bound."),
}


_resolved: list = []


class LazyGroup(click.Group):
    def list_commands(self, ctx):
        return [n for n, (mod, _) in COMMANDS.items()
                if importlib.util.find_spec(f"hwnas.commands.{mod}") is not None]

    def get_command(self, ctx, name):
        if name not in self.list_commands(ctx):
            return None
        module = importlib.import_module(f"hwnas.commands.{COMMANDS[name][0]}")
        _resolved[:] = [module.command]  # a SettingError from it is shown with this command's flags
        return module.command

    def format_commands(self, ctx, formatter):
        rows = [(n, COMMANDS[n][1]) for n in self.list_commands(ctx)]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="hwnas")
@click.option("--debug", is_flag=True, help="Show tracebacks instead of one-line errors.")
@click.pass_context
def cli(ctx, debug):
    """hwnas: hardware-aware latency profiling, latency tables, platform-aware NAS and NetAdapt."""
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug


def _error(message: str, code: int) -> int:
    message = " ".join(str(message).split()) or "unknown error"
    click.echo(f"Error: {message}", err=True)
    return code


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    try:
        cli.main(args=argv, prog_name="hwnas", standalone_mode=False)
        return 0
    except click.exceptions.Abort:
        return _error("aborted", 130)
    except KeyboardInterrupt:
        return _error("interrupted (progress so far is saved; rerun with --resume where offered)", 130)
    except click.exceptions.Exit as e:
        return e.exit_code
    except click.ClickException as e:
        if debug:
            raise
        return _error(e.format_message(), e.exit_code or 2)
    except HwnasError as e:
        if debug:
            raise
        from hwnas.settings import SettingError, flag_namer
        if isinstance(e, SettingError) and _resolved:
            return _error(e.named(flag_namer(_resolved[0])), e.exit_code)
        return _error(str(e), e.exit_code)
    except Exception as e:  # an unexpected failure: still one line, the traceback behind --debug
        if debug:
            raise
        return _error(describe(e), 1)


def describe(e: Exception) -> str:
    """One line for an exception that reached the CLI without being turned into an HwnasError, in the words of
    what went wrong (the file, the memory, the database) rather than the exception's type alone."""
    import sqlite3
    if isinstance(e, OSError) and e.filename is not None:
        target = f"{e.filename}" + (f" -> {e.filename2}" if getattr(e, "filename2", None) else "")
        return f"{target}: {e.strerror or e}"
    if isinstance(e, MemoryError):
        return ("out of memory: the request needs more memory than this machine has (smaller input shapes, batch "
                "or --workers)")
    if isinstance(e, UnicodeDecodeError):
        return f"a file that should be text is not ({e.reason} at byte {e.start}); check the files given"
    if isinstance(e, sqlite3.DatabaseError):
        return (f"the latency-table database is damaged or not an hwnas database (sqlite: {e}); move it aside and "
                f"rebuild it with `hwnas lut build`, or restore a copy (`hwnas lut export` makes one)")
    return f"{type(e).__name__}: {e} (rerun with --debug for the traceback)"


if __name__ == "__main__":
    sys.exit(main())

"""hwnas cache: see and clear the caches (exports, supernets); hwnas.cache says where they live and how they
are bounded."""
from __future__ import annotations

import click

from hwnas.commands._common import write_json, writable_file


def _data_files() -> dict:
    """Measured data kept beside (never in) the cache, shown so that users know `clear` leaves it alone."""
    from hwnas.latency.calibration import calibration_file
    from hwnas.latency.lut.store import default_db_path
    return {"lut_db": str(default_db_path()), "calibration": str(calibration_file())}


def _entries(n: int) -> str:
    return f"{n} {'entry' if n == 1 else 'entries'}"


def _bound(max_bytes) -> str:
    from hwnas.cache import format_size
    return "none" if max_bytes is None else format_size(max_bytes)


@click.group("cache")
def command():
    """See and clear hwnas's caches: ONNX/.tflite exports (artifacts) and trained supernets (supernet).

    The root is $HWNAS_CACHE, else $HWNAS_HOME/cache, else ~/.cache/hwnas; the bound is $HWNAS_CACHE_MAX
    (default 2GB, 0 for none), least recently used entries going first. Latency tables (lut.db) and the
    calibration file are measured data, not cache: never counted or cleared here.
    """


@command.command("info")
@click.option("--json", "json_out", default=None, callback=writable_file,
              help="Write the summary as JSON to a file, or - for stdout.")
def info(json_out):
    """Where the cache is, its bound, and per kind: entries, size, oldest and newest use."""
    from hwnas import cache
    data = {**cache.info(), "data": _data_files()}
    if json_out:
        write_json(json_out, data)
        if json_out == "-":
            return
    click.echo(f"cache root: {data['root']} (from {data['root_from']})")
    click.echo(f"bound:      {_bound(data['max_bytes'])} (from {data['max_from']}); used "
               f"{cache.format_size(data['bytes'])}")
    click.echo(f"{'kind':<10} {'entries':>7} {'size':>10}  {'oldest use':<20}  newest use")
    rows = [(k, v) for k, v in data["kinds"].items()] + [("total", data)]
    for name, row in rows:
        click.echo(f"{name:<10} {row['entries']:>7} {cache.format_size(row['bytes']):>10}  "
                   f"{row['oldest_use'] or '-':<20}  {row['newest_use'] or '-'}")
    temps = data["temp_files"]
    if temps["count"]:
        click.echo(f"writes in progress or abandoned: {temps['count']} ({cache.format_size(temps['bytes'])})")
    click.echo(f"not cache, never cleared: {data['data']['lut_db']}, {data['data']['calibration']}")


@command.command("clear")
@click.option("--kind", default=None, help="Only this kind: artifacts or supernet.")
@click.option("--older-than", default=None, metavar="DURATION",
              help="Only entries not used for this long: 30m, 12h, 7d, 2w.")
def clear(kind, older_than):
    """Remove cache entries (all of them, or of one kind, or the ones not used lately) and say what was freed."""
    from hwnas import cache
    from hwnas.errors import HwnasError
    if kind is not None:
        cache.check_kind(kind)
    age = cache.parse_duration(older_than) if older_than is not None else None
    removed, failed = cache.clear(kind, age)
    since = f" not used for {older_than}" if older_than else ""
    if removed:
        per_kind = {}
        for e in removed:
            per_kind[e.kind] = per_kind.get(e.kind, 0) + 1
        kinds = ", ".join(f"{k} {n}" for k, n in per_kind.items())
        click.echo(f"freed {cache.format_size(sum(e.bytes for e in removed))}: {_entries(len(removed))}{since} "
                   f"({kinds}) from {cache.cache_root()}")
    elif not failed:
        click.echo(f"nothing to clear: no {kind + ' ' if kind else ''}entries{since} in {cache.cache_root()}")
    if failed:
        entry, reason = failed[0]
        raise HwnasError(f"could not remove {_entries(len(failed))} of the cache (first: {entry.path}: {reason}); "
                         f"they belong to another user or lie in a read-only folder")

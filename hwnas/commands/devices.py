"""hwnas devices: list the devices hwnas knows and, with --check, which are usable here."""
from __future__ import annotations

import click

from hwnas.commands._common import devices_option, write_json, writable_file


@click.command("devices")
@click.option("--check", is_flag=True, help="Probe each device (runtime present, hardware reachable) and show the "
              "fingerprint of each usable one.")
@click.option("--json", "json_out", default=None, callback=writable_file, help="Write the list as JSON to a file, or - for stdout.")
@devices_option
def command(check, json_out, devices_file):
    """List devices from the shipped devices.yaml, $HWNAS_DEVICES and --devices."""
    from hwnas.latency.devices import list_devices

    rows = []
    for name, entry in list_devices(devices_file).items():
        row = {"name": name, "backend": entry.backend, "source": entry.source,
               "options": entry.options.model_dump(exclude={"description"}),
               "description": entry.options.description}
        if check:
            row.update(_probe(entry))
        rows.append(row)
    if json_out:
        write_json(json_out, rows)
        if json_out == "-":
            return
    from rich.console import Console
    from rich.table import Table
    t = Table(title="devices")
    for col in ("name", "backend", "options") + (("usable",) if check else ()) + ("description",):
        t.add_column(col)
    for r in rows:
        opts = " ".join(f"{k}={v}" for k, v in r["options"].items())
        cells = [r["name"], r["backend"], opts]
        if check:
            cells.append(_usable_cell(r))
        t.add_row(*cells, r["description"])
    # piped output would be squeezed to 80 columns: give it room
    console = Console() if Console().is_terminal else Console(width=160)
    console.print(t)
    if check:
        _print_details(rows)


def _probe(entry) -> dict:
    """usable; the fingerprint (usable) or the reason (not); the optional packages the device lacks here and, for a
    device usable only in part, what it can do (`usable_for`)."""
    from hwnas.errors import HwnasError
    from hwnas.latency.devices import Device
    try:
        dev = Device(entry)
        dev.check()
        out = {"usable": True, "fingerprint": dev.fingerprint()}
        missing = dev.backend.missing_extras()
        out["missing_extras"] = [m.to_dict() for m in missing]
        if missing:  # check() passed: the runtime is here, so files of the device's own format run
            out["usable_for"] = f".{dev.artifact_format} model files"
        return out
    except HwnasError as e:
        try:
            missing = [m.to_dict() for m in Device(entry).backend.missing_extras()]
        except HwnasError:
            missing = []
        return {"usable": False, "reason": str(e), "missing_extras": missing}


def _needs(missing: list[dict]) -> str:
    return "; ".join(f"{m['needed_for']} needs {m['install']}" for m in missing)


def _usable_cell(r: dict) -> str:
    if not r["usable"]:
        return "[red]no[/]"
    return "[yellow]partly[/]" if r.get("missing_extras") else "[green]yes[/]"


def _limits(r: dict) -> str | None:
    """Why a device is not usable, or what it can do when usable in part, with the commands that fix it."""
    missing = r.get("missing_extras") or []
    if not r["usable"]:
        extra = [m for m in missing if m["install"] not in r["reason"]]
        return f"no: {r['reason']}" + (f"; {_needs(extra)}" if extra else "")
    if missing:
        return f"usable for {r['usable_for']}; {_needs(missing)}"
    return None


def _print_details(rows: list[dict]) -> None:
    """Plain lines, never wrapped into table cells: each usable device's fingerprint key and main fields, then
    what each other device lacks."""
    usable = [r for r in rows if r["usable"]]
    width = max((len(r["name"]) for r in rows), default=0)
    if usable:
        click.echo("fingerprints (latency tables are keyed by them):")
    for r in usable:
        fp = r["fingerprint"]
        runtime = " ".join(str(v) for v in (fp.get("runtime"), fp.get("runtime_version"),
                                             fp.get("provider") or fp.get("delegate")) if v)
        cpu = fp.get("cpu_model") or fp.get("soc") or "?"
        click.echo(f"  {r['name']:<{width}}  {fp['key']}  {fp.get('backend')} | {runtime} | threads "
                   f"{fp.get('threads', '?')}, cores {fp.get('cores', '?')} | {cpu}"
                   + (f" | host {fp['host']}" if fp.get("host") else ""))
    limited = [(r["name"], _limits(r)) for r in rows if _limits(r)]
    if limited:
        click.echo("not usable, or usable in part:")
    for name, text in limited:
        click.echo(f"  {name:<{width}}  {text}")

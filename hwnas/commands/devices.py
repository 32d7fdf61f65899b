"""hwnas devices: list the devices hwnas knows and, with --check, which are usable here."""
from __future__ import annotations

import click

from hwnas.commands._common import devices_option, write_json, writable_file


@click.command("devices")
@click.option("--check", is_flag=True, help="Probe each device (runtime present, hardware reachable).")
@click.option("--json", "json_out", default=None, callback=writable_file, help="Write the list as JSON to a file, or - for stdout.")
@devices_option
def command(check, json_out, devices_file):
    """List devices from the shipped devices.yaml, $HWNAS_DEVICES and --devices."""
    from hwnas.errors import HwnasError
    from hwnas.latency.devices import Device, list_devices

    rows = []
    for name, entry in list_devices(devices_file).items():
        row = {"name": name, "backend": entry.backend, "source": entry.source,
               "options": entry.options.model_dump(exclude={"description"}),
               "description": entry.options.description}
        if check:
            try:
                dev = Device(entry)
                dev.check()
                row.update(usable=True, fingerprint=dev.fingerprint())
            except HwnasError as e:
                row.update(usable=False, reason=str(e))
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
            cells.append("[green]yes[/]" if r["usable"] else f"[red]no[/]: {r['reason']}")
        t.add_row(*cells, r["description"])
    Console().print(t)

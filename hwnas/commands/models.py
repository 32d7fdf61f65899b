"""hwnas models: the model zoo with parameters and MACs measured here next to the papers' figures."""
from __future__ import annotations

import click

from hwnas.commands._common import write_json, writable_file


def fmt_count(v):
    """3 significant figures with a K/M/G suffix: 3.89M, 312M, 15.5G."""
    if v is None:
        return "-"
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "K")):
        if v >= div:
            return f"{v / div:.3g}{suffix}"
    return f"{v:.0f}"


def _dev(measured, paper):
    return "" if not paper else f"{measured / paper - 1:+.1%}"


@click.command("models")
@click.argument("patterns", nargs=-1)
@click.option("--json", "json_out", default=None, callback=writable_file, help="Write the list as JSON to a file, or - for stdout.")
def command(patterns, json_out):
    """List the model zoo (or only the names matching PATTERNS, shell-style, e.g. 'mobilenet*').

    Params and MACs (convolutions and linear layers, per image) are measured at each network's paper
    input size with 1000 classes, next to the figures of the papers' tables. The counts are cached (cache kind
    "counts", keyed by the model's source): only a network whose source changed is counted again.
    """
    import fnmatch

    import hwnas.models as zoo
    from hwnas import counts
    from hwnas.errors import HwnasError
    from hwnas.progress import track

    names = zoo.list_models()
    if patterns:
        names = [n for n in names if any(fnmatch.fnmatchcase(n, p) for p in patterns)]
        if not names:
            raise HwnasError(f"no model matches {' '.join(patterns)}; `hwnas models` lists them all")
    shapes = {n: (1, 3, zoo.get_info(n).input_size, zoo.get_info(n).input_size) for n in names}
    found = {n: counts.lookup(n, shapes[n]) for n in names}
    todo = [n for n in names if found[n] is None]
    for name in track(todo, description=f"counting params and MACs of {len(todo)} network(s)"):
        found[name] = counts.compute(name, shapes[name])
    rows = []
    for name in names:
        info, s = zoo.get_info(name), found[name]
        rows.append({"name": name, "family": info.family, "input_size": info.input_size,
                     "params": s["params"], "macs": s["macs"],
                     "paper_params": info.paper_params, "paper_macs": info.paper_macs,
                     "width_mult": info.width_mult, "tags": list(info.tags)})
    if json_out:
        write_json(json_out, rows)
        if json_out == "-":
            return
    from rich.console import Console
    from rich.table import Table
    t = Table(title=f"hwnas model zoo: {len(rows)} networks (MACs: conv + linear, per image, 1000 classes)")
    t.add_column("name", no_wrap=True)
    t.add_column("input", justify="right")
    for col in ("params", "paper", "diff", "MACs", "paper", "diff"):
        t.add_column(col, justify="right", no_wrap=True)
    t.add_column("w", justify="center")
    t.add_column("family / notes")
    for r in rows:
        t.add_row(r["name"], str(r["input_size"]),
                  fmt_count(r["params"]), fmt_count(r["paper_params"]), _dev(r["params"], r["paper_params"]),
                  fmt_count(r["macs"]), fmt_count(r["paper_macs"]), _dev(r["macs"], r["paper_macs"]),
                  "yes" if r["width_mult"] else "", " ".join([r["family"]] + r["tags"]))
    # piped output would be squeezed to 80 columns: give it the width the table needs
    console = Console() if Console().is_terminal else Console(width=160)
    console.print(t)
    click.echo("w: accepts width_mult. Tags: params-/macs-from-ref = the paper gives no such figure (or an "
               "inconsistent one, see the model's source) and the reference implementation's is shown; "
               "params-rounded = the paper's figure has 2 significant digits.")

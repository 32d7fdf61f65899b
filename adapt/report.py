"""NetAdapt outputs: the adapted model (state dict, whole module, ONNX, TFLite for TFLite devices), the
trajectory as CSV/JSON and a PNG plot (rewritten after every iteration: a killed run keeps its plot), and
summary.json (original vs adapted, measured)."""
from __future__ import annotations

import csv
import io
import re
from pathlib import Path

from hwnas.rundir import atomic_write_bytes, atomic_write_json, save_figure

COLUMNS = ["iteration", "group", "channels", "new_channels", "target_ms", "predicted_ms", "measured_ms",
           "prediction_error_pct", "cost_scale", "accuracy", "params", "macs", "seconds", "proposals"]


def write_trajectory(out: Path, rows: list[dict]) -> None:
    text = io.StringIO(newline="")
    w = csv.DictWriter(text, fieldnames=COLUMNS, extrasaction="ignore")
    w.writeheader()
    w.writerows(rows)
    atomic_write_bytes(out / "trajectory.csv", text.getvalue().encode())
    atomic_write_json(out / "trajectory.json", rows)


def update_trajectory(out: Path, state: dict, device=None) -> dict:
    """trajectory.csv, trajectory.json and trajectory.png of the run so far, each replaced atomically: called
    after every iteration, so a run killed at any point leaves its trajectory up to the last one. The plot
    shows the long-term result only once the run is done. Returns what plot_trajectory drew."""
    rows = state["trajectory"]
    write_trajectory(out, rows)
    plotted = [dict(r) for r in rows]
    if "spread_pct" not in plotted[0] and state.get("original_spread_pct") is not None:
        plotted[0]["spread_pct"] = state["original_spread_pct"]  # the start was measured with its spread
    statistic = None
    if device is not None:
        from hwnas.latency.protocol import statistic_of
        statistic = statistic_of(device)
    final = state.get("final") if state.get("phase") == "done" else None
    title = f"NetAdapt {state['model']} on {state['device']}"
    deploy, trained = state.get("input_shape"), state.get("train_shape")
    if deploy and trained and deploy[-2:] != trained[-2:]:
        title += (f" (latency at {deploy[-2]}x{deploy[-1]}, top-1 at {trained[-2]}x{trained[-1]})")
    return plot_trajectory(out / "trajectory.png", plotted, state["budget_ms"], title, final, statistic=statistic)


def short_name(group: str, width: int = 18) -> str:
    """A group's root conv, short enough for a tick label: every word but the last cut to its first letter
    (its digits kept), e.g. features.3.conv.0.0 -> f3.conv.0.0, layer1.0.conv1 -> l1.0.conv1."""
    parts = group.split(".")
    last = max((k for k, p in enumerate(parts) if not p.isdigit()), default=-1)
    cut = [k != last and not p.isdigit() for k, p in enumerate(parts)]
    tokens = [p[0] + re.sub(r"^\D*", "", p) if c else p for p, c in zip(parts, cut)]
    out = tokens[0]
    for k in range(1, len(tokens)):  # a bare letter and the number after it read as one: f3
        out += ("" if cut[k - 1] and tokens[k - 1].isalpha() and parts[k].isdigit() else ".") + tokens[k]
    return out if len(out) <= width else "…" + out[-(width - 1):]


def point_label(row: dict) -> str:
    """What an iteration did, for its tick: `3  f3.conv.0.0 96→72` (the start: `0  start`)."""
    if not row.get("group"):
        return f"{row['iteration']}  start"
    return f"{row['iteration']}  {short_name(row['group'])} {row['channels']}→{row['new_channels']}"


def plot_trajectory(path: Path, rows: list[dict], budget_ms: float, title: str, final: dict | None = None,
                    baseline: list[dict] | None = None, statistic: str | None = None) -> dict:
    """NetAdapt's trajectory against the iteration: top-1 after each iteration's short-term fine-tune (top
    panel), the measured latency (error bars where a row records `spread_pct`: the gap between the halves of
    its rounds) with the table's prediction and the budget (bottom panel); each iteration's tick names the
    group it cut and the channels before→after. `final` (the long-term fine-tuned network) is drawn after
    the last iteration. With `baseline` (uniform width multipliers: measured_ms, accuracy), a third panel
    compares top-1 against measured latency (increasing). Legends lie right of the panels. Written
    atomically. Returns what was drawn: {"path", "ticks", "error_bars", "legend_boxes", "axes_boxes"}."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    panels = 3 if baseline else 2
    fig, axes = plt.subplots(panels, 1, figsize=(9.0, 3.0 * panels + 1.2), dpi=110, layout="constrained",
                             gridspec_kw={"height_ratios": [1, 1.2] + ([1.4] if baseline else [])})
    acc_ax, lat_ax = axes[0], axes[1]
    its = [r["iteration"] for r in rows]
    acc = [r["accuracy"] for r in rows]
    meas = [r["measured_ms"] for r in rows]
    spread = [r.get("spread_pct") for r in rows]
    acc_ax.plot(its, acc, "o-", color="C0", ms=4, label="after short-term fine-tune")
    lat_ax.errorbar(its, meas, yerr=[m * (s or 0.0) / 200.0 for m, s in zip(meas, spread)], fmt="o-", color="C0",
                    ms=4, capsize=3, label="measured on the device" + (" (bar: its two halves)" if any(
                        s is not None for s in spread) else ""))
    lat_ax.plot(its[1:], [r["predicted_ms"] for r in rows[1:]], "o", mfc="none", color="0.45", ms=5,
                label="predicted by the layer table")
    lat_ax.axhline(budget_ms, color="C3", ls="--", lw=1.2, label=f"budget {budget_ms:g} ms")
    ticks, labels = list(its), [point_label(r) for r in rows]
    errors = sum(s is not None for s in spread)
    if final:
        x = (its[-1] if its else 0) + 1
        acc_ax.plot([x], [final["accuracy"]], "*", color="C1", ms=12, label="after long-term fine-tune")
        fs = final.get("spread_pct")
        lat_ax.errorbar([x], [final["measured_ms"]], yerr=[final["measured_ms"] * (fs or 0.0) / 200.0], fmt="*",
                        color="C1", ms=12, capsize=3, label="final network, measured")
        errors += fs is not None
        ticks.append(x)
        labels.append("final (long-term)")
    acc_ax.set_ylabel("validation top-1", fontsize=9)
    lat_ax.set_ylabel(f"latency, ms{chr(10) + '(' + statistic + ')' if statistic else ''}", fontsize=9)
    for ax in (acc_ax, lat_ax):
        ax.set_xticks(ticks)
        ax.grid(alpha=0.3)
    acc_ax.tick_params(labelbottom=False)
    acc_ax.sharex(lat_ax)
    if len(labels) <= 4:  # few enough to read side by side
        lat_ax.set_xticklabels(labels, fontsize=7)
    else:
        lat_ax.set_xticklabels(labels, rotation=60, ha="right", rotation_mode="anchor", fontsize=7)
    lat_ax.set_xlabel("iteration: group cut (channels before→after)", fontsize=9)
    if baseline:
        _draw_comparison(axes[2], rows, budget_ms, final, baseline, statistic)
    fig.suptitle(title, fontsize=10)
    legends = [_legend_right(ax) for ax in axes]
    fig.canvas.draw()
    drawn = {"path": path, "ticks": labels, "error_bars": errors,
             "legend_boxes": [tuple(lg.get_window_extent().extents) for lg in legends],
             "axes_boxes": [tuple(ax.get_window_extent().extents) for ax in axes]}
    save_figure(fig, path)
    return drawn


def _legend_right(ax):
    """The panel's legend right of it, off the data; measured series first."""
    handles, labels = ax.get_legend_handles_labels()
    order = sorted(range(len(labels)), key=lambda k: not labels[k].startswith("measured"))
    return ax.legend([handles[k] for k in order], [labels[k] for k in order], fontsize=7, loc="upper left",
                     bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)


def _draw_comparison(ax, rows, budget_ms, final, baseline, statistic) -> None:
    """Top-1 against measured latency, increasing left to right: NetAdapt's points and the uniform widths."""
    ax.plot([r["measured_ms"] for r in rows], [r["accuracy"] for r in rows], "o-", color="C0", ms=4,
            label="NetAdapt (short-term), by iteration")
    if final:
        ax.plot([final["measured_ms"]], [final["accuracy"]], "*", color="C1", ms=12, label="NetAdapt + long-term")
    pts = sorted(baseline, key=lambda b: b["measured_ms"])
    ax.plot([b["measured_ms"] for b in pts], [b["accuracy"] for b in pts], "s--", color="C2", ms=4,
            label="uniform width multiplier")
    ax.axvline(budget_ms, color="C3", ls="--", lw=1.2, label=f"budget {budget_ms:g} ms")
    ax.set_xlabel(f"measured latency, ms{' (' + statistic + ')' if statistic else ''}, increasing →", fontsize=9)
    ax.set_ylabel("validation top-1", fontsize=9)
    ax.grid(alpha=0.3)


def write_outputs(out: Path, state: dict, device, shape, model) -> dict:
    """The adapted network as files (no pickle: `adapted.safetensors` holds the weights under their state-dict
    names plus the layer record `hwnas.adapt.modelfile.load_network` rebuilds it from), trajectory, summary."""
    import shutil

    from hwnas.latency.protocol import statistic_of
    from hwnas.latency.verdict import against_target, noise_pct, speedup
    from hwnas.models import stats
    model = model.eval()
    shutil.copyfile(out / state["final"]["path"], out / "adapted.safetensors")
    files = ["adapted.safetensors"] + [Path(p).name for p in device.export_final(model, shape, out, "adapted").values()]
    rows = state["trajectory"]
    first, final = rows[0], state["final"]
    noise = noise_pct(state.get("original_spread_pct"), final.get("spread_pct"))
    s = {k: int(v) for k, v in stats(model, shape).items()}
    summary = {
        "model": state["model"], "device": state["device"], "budget_ms": state["budget_ms"],
        "input_shape": list(shape), "train_shape": state.get("train_shape", list(shape)),
        "distill": bool(state.get("distill", False)), "start": state["start"], "iterations": rows[-1]["iteration"],
        "original": {"measured_ms": first["measured_ms"], "accuracy": first["accuracy"], "params": first["params"],
                     "macs": first["macs"]},
        "adapted": {"measured_ms": final["measured_ms"], "accuracy": final["accuracy"], "params": s["params"],
                    "macs": s["macs"]},
        "latency_statistic": statistic_of(device),
        "speedup": first["measured_ms"] / final["measured_ms"],
        # told apart from the original, and from the budget, only outside the measurement noise
        "speedup_verdict": speedup(first["measured_ms"], final["measured_ms"], noise),
        "budget_met": final["measured_ms"] <= state["budget_ms"],
        "budget_verdict": against_target(final["measured_ms"], state["budget_ms"], noise),
        "noise_pct": noise,
        "fine_tune_steps": state["fine_tune_steps"], "min_width_ms": state["min_width_ms"],
        "accuracy_floor": state.get("floor"),
        "seconds_per_iteration": [r["seconds"] for r in rows[1:]],
        # the per-layer costs' prediction of each chosen network against its measurement (+: predicted slower)
        "prediction_error_pct": [r.get("prediction_error_pct") for r in rows[1:]],
        "files": files + ["trajectory.csv", "trajectory.json", "trajectory.png", "summary.json"],
    }
    update_trajectory(out, state, device)
    atomic_write_json(out / "summary.json", summary)
    return summary

"""NetAdapt outputs: the adapted model (state dict, whole module, ONNX, TFLite for TFLite devices), the
trajectory as CSV/JSON and a PNG plot, and summary.json (original vs adapted, measured)."""
from __future__ import annotations

import csv
import io
from pathlib import Path

from hwnas.rundir import atomic_write_bytes, atomic_write_json

COLUMNS = ["iteration", "group", "channels", "new_channels", "target_ms", "predicted_ms", "measured_ms",
           "accuracy", "params", "macs", "seconds", "proposals"]


def write_trajectory(out: Path, rows: list[dict]) -> None:
    text = io.StringIO(newline="")
    w = csv.DictWriter(text, fieldnames=COLUMNS, extrasaction="ignore")
    w.writeheader()
    w.writerows(rows)
    atomic_write_bytes(out / "trajectory.csv", text.getvalue().encode())
    atomic_write_json(out / "trajectory.json", rows)


def plot_trajectory(path: Path, rows: list[dict], budget_ms: float, title: str, final: dict | None = None,
                    baseline: list[dict] | None = None) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot([r["measured_ms"] for r in rows], [r["accuracy"] for r in rows], "o-", label="NetAdapt (short-term)")
    if final:
        ax.plot([final["measured_ms"]], [final["accuracy"]], "*", ms=12, label="NetAdapt + long-term")
    if baseline:
        ax.plot([b["measured_ms"] for b in baseline], [b["accuracy"] for b in baseline], "s--",
                label="uniform width multiplier")
    ax.axvline(budget_ms, color="grey", ls=":", label=f"budget {budget_ms:g} ms")
    ax.set_xlabel("measured latency (ms)")
    ax.set_ylabel("validation top-1")
    ax.set_title(title)
    ax.invert_xaxis()
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


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
    write_trajectory(out, rows)
    first, final = rows[0], state["final"]
    noise = noise_pct(state.get("original_spread_pct"), final.get("spread_pct"))
    s = {k: int(v) for k, v in stats(model, shape).items()}
    summary = {
        "model": state["model"], "device": state["device"], "budget_ms": state["budget_ms"],
        "input_shape": list(shape), "start": state["start"], "iterations": rows[-1]["iteration"],
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
        "files": files + ["trajectory.csv", "trajectory.json", "trajectory.png", "summary.json"],
    }
    plot_trajectory(out / "trajectory.png", rows, state["budget_ms"], f"NetAdapt {state['model']} on "
                    f"{state['device']}", final)
    atomic_write_json(out / "summary.json", summary)
    return summary

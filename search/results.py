"""The results job of a search: the Pareto front, the top-k re-measured on the device (the judge), the best
network picked by measured reward and exported, summary.json. A mixin of SearchRun (search/run.py): it uses
the run's out, space, predictor, strategy, estimator, reward, device, protocol, top_k, config and log."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from hwnas.latency.verdict import against_target, noise_pct
from hwnas.rundir import atomic_write_json
from hwnas.search.pareto import hypervolume, pareto_front, plot_pareto

WIDEN = 3  # a hard target none of the re-measured top-k meets: measure up to 3 more k by predicted reward


@dataclass
class SearchResult:
    out: Path
    samples: list[dict]
    pareto: list[dict]
    summary: dict = field(default_factory=dict)

    @property
    def best(self) -> dict | None:
        return self.summary.get("best")


class Results:
    def finish(self, records: list[dict]) -> SearchResult:
        records = records[: self.samples] if len(records) > self.samples else records
        front = pareto_front(records)
        t = self.reward.target_ms
        lat = [r["latency_ms"] for r in records]
        acc = [r["accuracy"] for r in records]
        pareto = {"target_ms": t, "reward": self.reward.to_dict(), "samples": len(records),
                  "hypervolume": hypervolume(lat, acc, ref_latency_ms=2 * t),
                  "hypervolume_reference": {"latency_ms": 2 * t, self.value_key(): 0.0},
                  "value_kind": self.value_kind(), "estimator": self.estimator.name,
                  "input_sizes": self.resolutions(),
                  "front": [self.shown({k: r[k] for k in ("i", "arch", "describe", "accuracy", "latency_ms", "reward")})
                            for r in front]}
        atomic_write_json(self.out / "pareto.json", pareto)
        top = self.top_records(records)
        measured = self.measure_top(top) if self.device is not None else []
        if measured and self.reward.alpha == 0.0:
            top, measured = self.widen_until_one_meets(records, top, measured)
        best = self.pick_best(top, measured)
        title = (f"{getattr(self.space, 'name', '')} on {getattr(self.device, 'name', 'table')}, "
                 f"{self.config.get('strategy', self.strategy.name)}, {len(records)} samples")
        plot_pareto(records, self.out / "pareto.png", target_ms=t, title=title, measured=measured,
                    estimator=self.estimator.name, is_accuracy=bool(self.estimator.is_accuracy),
                    value_input_size=self.resolutions()["accuracy"],
                    latency_source="predicted")
        exported = self.export_best(best) if best is not None else {}
        uniq = len({tuple(r["arch"]) for r in records})
        summary = {
            "config": self.config, "samples": len(records), "unique_architectures": uniq,
            "reward": self.reward.to_dict(), "estimator": self.estimator.name, "input_sizes": self.resolutions(),
            "estimator_is_accuracy": bool(self.estimator.is_accuracy), "value_kind": self.value_kind(),
            "best_by_reward_predicted": self.shown(top[0] if top else None),
            "top_k": [self.shown(r) for r in measured or top], "best": self.shown(best), "exported": exported,
            "pareto_size": len(front), "hypervolume": pareto["hypervolume"],
            "min_latency_ms_by_table": float(self.predictor.min_latency()),
            "replay_mismatches": self.replay_mismatches, "strategy_info": self.strategy.info(),
            "estimator_info": self.estimator.info(),
        }
        sources = getattr(self.predictor, "sources", None)
        if sources is not None:
            summary["latency_sources"] = sources
        if self.device is not None:
            summary["device"] = {"name": self.device.name, "fingerprint": self.device.fingerprint()}
        if measured and self.reward.alpha == 0.0:
            summary["hard_target"] = self.hard_target_outcome(measured)
            if not summary["hard_target"]["met"]:
                self.log(summary["hard_target"]["message"])
        atomic_write_json(self.out / "summary.json", summary)
        return SearchResult(self.out, records, pareto["front"], summary)

    def resolutions(self) -> dict:
        """The input sizes of the two columns: latency (the table's, the deployment size) and accuracy (where
        the estimator measured it: a search's --train-size)."""
        return {"latency": getattr(self.space, "input_size", None),
                "accuracy": getattr(self.estimator.space, "input_size", None)}

    # -- how results name the estimator's value ----------------------------------------------------------
    def value_kind(self) -> str:
        """"top-1" for an estimator that measures accuracy, "score" for one that does not (a zero-cost proxy)."""
        return "top-1" if self.estimator.is_accuracy else "score"

    def value_key(self) -> str:
        return "accuracy" if self.estimator.is_accuracy else "score"

    def shown(self, rec: dict | None) -> dict | None:
        """A record as the results show it (summary.json, pareto.json, `hwnas search --json`): its value under
        `accuracy` or, for a proxy, `score`, with "value_kind" and "estimator". Records inside the run, and
        samples.jsonl, keep the key `accuracy` (a resumed run reads its files unchanged)."""
        if rec is None:
            return None
        key = self.value_key()
        out = {(key if k == "accuracy" else k): v for k, v in rec.items()}
        return {**out, "value_kind": self.value_kind(), "estimator": self.estimator.name}

    def widen_until_one_meets(self, records, top, measured):
        """A hard target: if none of the re-measured top-k meets it as measured, the next k by predicted
        reward are measured too, up to WIDEN times; the caller says plainly if none does even then."""
        for _ in range(WIDEN):
            if any(r["meets_target_measured"] for r in measured):
                break
            more = self.top_records(records, len(top) + self.top_k)[len(top):]
            if not more:
                break
            self.log(f"none of the {len(top)} re-measured networks meets the target {self.reward.target_ms:g} ms as "
                     f"measured; measuring the next {len(more)}")
            top, measured = top + more, measured + self.measure_top(more)
        return top, measured

    def hard_target_outcome(self, measured: list[dict]) -> dict:
        t = self.reward.target_ms
        meeting = [r for r in measured if r["meets_target_measured"]]
        closest = min(measured, key=lambda r: r["measured_ms"])
        reruns = sum(r.get("measured_reruns", 0) for r in measured)
        out = {"met": bool(meeting), "measured": len(measured), "meeting": len(meeting),
               "closest": {"i": closest["i"], "measured_ms": closest["measured_ms"],
                           "over_pct": 100.0 * (closest["measured_ms"] / t - 1)},
               "rounds_re_run_for_interference": reruns}
        if not meeting:
            out["message"] = (f"no measured network meets the target {t:g} ms: of the {len(measured)} measured, the "
                              f"fastest (#{closest['i']}) measures {closest['measured_ms']:.3f} ms, "
                              f"{out['closest']['over_pct']:+.1f}% over (the table predicted {closest['predicted_ms']:.3f}"
                              f" ms); the measurement re-ran {reruns} rounds spoiled by interference")
        return out

    def top_records(self, records: list[dict], count: int | None = None) -> list[dict]:
        """The `count` (default k) best distinct architectures by predicted reward; with a hard constraint
        (alpha = 0), those the table predicts within the target come first."""
        count = count or self.top_k
        seen, top = set(), []
        hard = self.reward.alpha == 0.0
        t = self.reward.target_ms
        for r in sorted(records, key=lambda r: (hard and r["latency_ms"] > t, -r["reward"], r["i"])):
            if tuple(r["arch"]) in seen:
                continue
            seen.add(tuple(r["arch"]))
            top.append({k: r[k] for k in ("i", "arch", "describe", "accuracy", "latency_ms", "reward", "kernel_ops")
                        if k in r})
            if len(top) == count:
                break
        return top

    def _num_classes(self):
        """The class count of the data the estimator uses (the head then matches the exported model)."""
        return self.estimator.num_classes()

    def _input_shape(self) -> tuple[int, ...]:
        return (1, 3, self.space.input_size, self.space.input_size)

    def measure_top(self, top: list[dict]) -> list[dict]:
        """Measure the top-k on the device (the judge), together, with the measurement protocol (the
        definition the latency table is built with, so predicted and measured compare like with like)."""
        from hwnas.latency.protocol import measure_latency
        artifacts = {}
        for j, r in enumerate(top):
            torch.manual_seed(0)
            model = self.space.build(tuple(r["arch"]), num_classes=self._num_classes()).eval()
            artifacts[j] = self.device.prepare(model, self._input_shape())
        lat = measure_latency(self.device, artifacts, self.protocol)
        out = []
        for j, r in enumerate(top):
            measured = lat[j].ms
            out.append({**r, "predicted_ms": r["latency_ms"], "measured_ms": measured,
                        "measured_statistic": lat[j].statistic, "measured_rounds": lat[j].rounds,
                        "measured_spread_pct": lat[j].spread_pct,
                        "prediction_error_pct": 100.0 * (r["latency_ms"] - measured) / measured,
                        "measured_reward": self.reward(r["accuracy"], measured),
                        "measured_reruns": sum(lat[j].reruns.values()),
                        "meets_target_measured": measured <= self.reward.target_ms,
                        "target_verdict": against_target(measured, self.reward.target_ms,
                                                         noise_pct(lat[j].spread_pct))})
            self.log(f"  measured #{r['i']}: predicted {r['latency_ms']:.3f} ms, measured {lat[j].describe()}, "
                     f"{self.value_key()} {r['accuracy']:.3f}")
        return out

    def pick_best(self, top: list[dict], measured: list[dict]) -> dict | None:
        """The best of the top-k by the reward computed with the *measured* latency (the device is the
        judge), preferring networks that meet the target as measured; without a device, the best by
        predicted reward."""
        if measured:
            return max(measured, key=lambda r: (r["meets_target_measured"], r["measured_reward"], -r["i"]))
        return top[0] if top else None

    def export_best(self, best: dict) -> dict:
        torch.manual_seed(0)
        model = self.space.build(tuple(best["arch"]), num_classes=self._num_classes()).eval()
        weights = "untrained (the architecture; train it on your data)"
        if self.estimator.trains:
            model = self.estimator.trained_model(tuple(best["arch"]))
            weights = self.estimator.weights_note
        shape = self._input_shape()
        if self.device is not None:
            files = self.device.export_final(model, shape, self.out, "best")
        else:
            from hwnas.latency.export import export_onnx
            files = {"onnx": str(export_onnx(model.eval(), shape, self.out / "best.onnx").path)}
        return {**files, "weights": weights, "input_shape": list(shape)}

"""adb backend: .tflite models timed on an Android phone by TFLite's `benchmark_model`.

Flow per measurement: push the .tflite to the phone, run
`[taskset MASK] benchmark_model --graph=... --num_threads=T --warmup_runs=W --num_runs=R`,
parse its summary (hwnas.latency.benchmark_model), remove what was pushed.

We drive the `adb` binary through subprocess (every call with a timeout, in its own process group
so a hung USB link is killed, not waited on) rather than adbutils: no extra Python dependency, and
it is the same adb the user already debugs with. benchmark_model prints only summary statistics, so
Measurement.samples_ms is empty; the median is benchmark_model's median where the build prints it,
else its average (see `last_run["median_source"]`).
"""
from __future__ import annotations

import hashlib
import os
import re
import shlex
import shutil
import signal
import subprocess

from pydantic import Field

from hwnas.errors import HwnasError
from hwnas.latency.benchmark_model import BenchmarkOutput, parse
from hwnas.latency.devices.base import MAX_THREADS, Artifact, Backend, BackendOptions, OpTiming
from hwnas.latency.devices.registry import register_backend
from hwnas.latency.measure import Measurement

PUSH_HINT = ("build it with `bazel build -c opt --config=android_arm64 "
             "//tensorflow/lite/tools/benchmark:benchmark_model` (or take TFLite's prebuilt "
             "android_aarch64_benchmark_model), then `adb{s} push benchmark_model {dir}/ && "
             "adb{s} shell chmod +x {path}`")
_REJECTED = ("Failed to construct interpreter", "Could not build model", "Failed to allocate tensors",
             "Failed to mmap model", "Didn't find op for builtin opcode", "Failed to apply",
             "Failed to invoke", "Benchmarking failed", "Error in parsing")


class AdbOptions(BackendOptions):
    serial: str | None = None                  # adb serial; optional when exactly one phone is attached
    benchmark_model: str = "/data/local/tmp/benchmark_model"
    remote_dir: str = "/data/local/tmp"        # where models are pushed
    threads: int = Field(1, ge=1, le=MAX_THREADS)  # the phone's cores bound it; benchmark_model's --num_threads
    cpu_mask: str | None = None                # taskset mask (hex), e.g. "70" or "f0" for the big cores
    use_gpu: bool = False
    use_nnapi: bool = False
    extra_args: list[str] = []                 # more benchmark_model flags, passed as given
    adb: str = "adb"                           # the adb executable (name on PATH or a path)
    timeout_s: float = Field(600.0, gt=0)         # one benchmark_model run
    command_timeout_s: float = Field(30.0, gt=0)  # devices/getprop/rm; push gets 4x this


def _run(args: list[str], timeout: float) -> tuple[int, str]:
    """Run, return (exit code, stdout+stderr). On timeout kill the whole process group, raise TimeoutError."""
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            start_new_session=True, text=True, errors="replace")
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            proc.communicate(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        raise TimeoutError(f"no answer within {timeout:g}s") from None
    return proc.returncode, out


@register_backend
class AdbBackend(Backend):
    name = "adb"
    artifact_format = "tflite"
    Options = AdbOptions
    # benchmark_model's --min_secs / --max_secs; it has no confidence-interval stop rule and cannot pair runs
    # with a calibration reference, so those are refused
    protocol_options = frozenset({"min_time_s", "time_cap_s"})
    refusal = ("TFLite's benchmark_model runs a fixed count of runs (no confidence-interval stop rule, no paired "
               "calibration); use fixed runs")

    def __init__(self, device_name, options):
        super().__init__(device_name, options)
        self._serial: str | None = None
        self._checked = False

    # -- adb plumbing -------------------------------------------------------------------------
    def _adb_path(self) -> str:
        path = shutil.which(self.options.adb)
        if path is None:
            raise HwnasError(f"device {self.device_name!r}: adb is not installed (no {self.options.adb!r} on PATH); "
                             f"install it (Debian/Ubuntu: apt install adb) or set `adb:` to its path in devices.yaml")
        return path

    def _adb(self, *args: str, timeout: float | None = None, what: str = "adb") -> tuple[int, str]:
        cmd = [self._adb_path()] + (["-s", self._serial] if self._serial else []) + list(args)
        try:
            return _run(cmd, timeout or self.options.command_timeout_s)
        except TimeoutError as e:
            raise HwnasError(f"device {self.device_name!r} ({self._serial or 'adb'}): {what} got {e}; the phone "
                             f"was disconnected or stopped answering (check the cable and `adb devices`)") from None

    def _shell(self, command: str, timeout: float | None = None, what: str = "adb shell") -> tuple[int, str]:
        code, out = self._adb("shell", command, timeout=timeout, what=what)
        self._raise_adb_error(out, code)
        return code, out

    def _raise_adb_error(self, out: str, code: int) -> None:
        low = out.lower()
        if "unauthorized" in low and "error" in low:
            raise HwnasError(f"device {self.device_name!r}: phone {self._serial} is unauthorized; unlock it and "
                             f"accept the 'Allow USB debugging?' prompt")
        if "no devices/emulators found" in low or re.search(r"(adb|error): device '[^']*' not found", low):
            raise HwnasError(f"device {self.device_name!r}: phone {self._serial or ''} is no longer attached "
                             f"(disconnected?); check `adb devices`")
        if "device offline" in low:
            raise HwnasError(f"device {self.device_name!r}: phone {self._serial} is offline; reconnect it")

    def _attached(self) -> dict[str, str]:
        code, out = self._adb("devices", what="adb devices")
        if code != 0:
            raise HwnasError(f"device {self.device_name!r}: `adb devices` failed: {out.strip().splitlines()[-1:]}")
        found = {}
        for line in out.splitlines():
            parts = line.split()
            if len(parts) >= 2 and not line.startswith(("List of devices", "*")):
                found[parts[0]] = parts[1]
        return found

    # -- Backend interface --------------------------------------------------------------------
    def check(self) -> None:
        if self._checked:
            return
        self._serial = None
        attached = self._attached()
        want = self.options.serial
        if not attached:
            raise HwnasError(f"device {self.device_name!r}: no Android phone attached (`adb devices` lists none); "
                             f"connect one with USB debugging on")
        if want is None:
            if len(attached) > 1:
                raise HwnasError(f"device {self.device_name!r}: several phones attached ({', '.join(sorted(attached))}); "
                                 f"set `serial:` for this device in devices.yaml")
            want = next(iter(attached))
        elif want not in attached:
            raise HwnasError(f"device {self.device_name!r}: phone with serial {want!r} is not attached "
                             f"(attached: {', '.join(sorted(attached))})")
        state = attached[want]
        if state == "unauthorized":
            raise HwnasError(f"device {self.device_name!r}: phone {want} is unauthorized; unlock it and accept the "
                             f"'Allow USB debugging?' prompt")
        if state != "device":
            raise HwnasError(f"device {self.device_name!r}: phone {want} is {state}; reconnect it")
        self._serial = want
        bm = self.options.benchmark_model
        code, out = self._shell(f"test -x {shlex.quote(bm)} && echo HWNAS_OK", what="checking benchmark_model")
        if "HWNAS_OK" not in out:
            s = f" -s {want}"
            raise HwnasError(f"device {self.device_name!r}: benchmark_model not found at {bm} on phone {want}; "
                             + PUSH_HINT.format(s=s, dir=os.path.dirname(bm) or ".", path=bm))
        self._checked = True

    def getprop(self) -> dict[str, str]:
        self.check()
        _, out = self._shell("getprop", what="getprop")
        props = {}
        for line in out.splitlines():
            line = line.strip()
            if line.startswith("[") and "]: [" in line:
                k, v = line[1:].split("]: [", 1)
                props[k] = v.rstrip("]")
        return props

    def fingerprint(self) -> dict:
        p = self.getprop()
        soc = p.get("ro.soc.model") or p.get("ro.board.platform") or p.get("ro.hardware") or ""
        delegate = "gpu" if self.options.use_gpu else "nnapi" if self.options.use_nnapi else "cpu"
        return {
            "backend": self.name, "serial": self._serial,
            "host": p.get("ro.product.model", ""), "manufacturer": p.get("ro.product.manufacturer", ""),
            "device_model": p.get("ro.product.model", ""), "soc": soc,
            "soc_manufacturer": p.get("ro.soc.manufacturer", ""), "board": p.get("ro.product.board", ""),
            "cpu_model": f"{soc} ({p.get('ro.product.model', '?')})", "abi": p.get("ro.product.cpu.abi", ""),
            "android": p.get("ro.build.version.release", ""), "sdk": p.get("ro.build.version.sdk", ""),
            "build": p.get("ro.build.fingerprint", ""),
            # benchmark_model does not print its version; the Android release stands in for the runtime's
            "runtime": "tflite-benchmark_model",
            "runtime_version": f"android {p.get('ro.build.version.release', '?')} (sdk {p.get('ro.build.version.sdk', '?')})",
            "threads": self.options.threads, "cpu_mask": self.options.cpu_mask or "", "delegate": delegate,
            "stats": "benchmark_model summary: median when printed else avg; p10<-p5|min, p90/p95<-p95|max, p99<-max",
        }

    def timing_resource(self) -> str:
        return f"phone {self.options.serial or self.device_name}"

    def _command(self, remote: str, artifact: Artifact, warmup: int, runs: int, op_profiling: bool,
                 min_secs: float = 0.0, max_secs: float | None = None) -> str:
        o = self.options
        cap = o.timeout_s if max_secs is None else min(max_secs, o.timeout_s)
        args = [o.benchmark_model, f"--graph={remote}", f"--num_threads={o.threads}",
                f"--warmup_runs={warmup}", f"--num_runs={runs}", "--warmup_min_secs=0", f"--min_secs={min_secs:g}",
                f"--max_secs={max(cap, 1):g}"]
        named = {k: v for k, v in artifact.input_shapes.items() if k}
        if named:
            args += ["--input_layer=" + ",".join(named),
                     "--input_layer_shape=" + ":".join(",".join(map(str, s)) for s in named.values())]
        if o.use_gpu:
            args.append("--use_gpu=true")
        if o.use_nnapi:
            args.append("--use_nnapi=true")
        if op_profiling:
            args.append("--enable_op_profiling=true")
        args += list(o.extra_args)
        cmd = " ".join(shlex.quote(a) for a in args)
        return f"taskset {shlex.quote(o.cpu_mask)} {cmd}" if o.cpu_mask else cmd

    def run_benchmark(self, artifact: Artifact, warmup: int, runs: int, op_profiling: bool = False,
                      min_secs: float = 0.0, max_secs: float | None = None) -> BenchmarkOutput:
        """Push, run benchmark_model, parse, clean up. Returns the parsed output."""
        self.check()
        if artifact.path is None:
            raise HwnasError(f"device {self.device_name!r} runs .tflite files; got no file")
        digest = hashlib.sha1(str(artifact.path).encode() + str(os.path.getmtime(artifact.path)).encode()).hexdigest()[:10]
        remote = f"{self.options.remote_dir.rstrip('/')}/hwnas_{digest}_{os.getpid()}.tflite"
        code, out = self._adb("push", str(artifact.path), remote, timeout=4 * self.options.command_timeout_s,
                              what="adb push")
        self._raise_adb_error(out, code)
        if code != 0:
            raise HwnasError(f"device {self.device_name!r}: adb push of {artifact.path.name} failed: "
                             f"{(out.strip().splitlines() or ['?'])[-1]}")
        try:
            cmd = self._command(remote, artifact, warmup, runs, op_profiling, min_secs, max_secs)
            code, out = self._shell(cmd, timeout=self.options.timeout_s, what="benchmark_model")
        finally:
            try:
                self._adb("shell", f"rm -f {shlex.quote(remote)}", what="cleanup")
            except HwnasError:
                pass
        if "not found" in out and self.options.benchmark_model in out or code in (126, 127):
            raise HwnasError(f"device {self.device_name!r}: benchmark_model not found at {self.options.benchmark_model} "
                             f"on phone {self._serial}; " + PUSH_HINT.format(
                                 s=f" -s {self._serial}", dir=os.path.dirname(self.options.benchmark_model),
                                 path=self.options.benchmark_model))
        result = parse(out)
        if code != 0 or (result.inference is None and result.inference_avg_us is None):
            reason = next((ln.strip() for ln in out.splitlines() if any(r in ln for r in _REJECTED)), None)
            reason = reason or next((ln.strip() for ln in reversed(out.splitlines()) if ln.strip()), "no output")
            raise HwnasError(f"device {self.device_name!r}: the phone rejected {artifact.name} "
                             f"(benchmark_model exit {code}): {reason[:200]}")
        self.last_run = {"median_source": result.median_source(), "raw_output": out,
                         "init_us": result.init_us, "first_inference_us": result.first_inference_us}
        return result

    def measure(self, artifact: Artifact, *, warmup: int = 10, runs: int = 50, adaptive: bool = False,
                min_time_s: float = 0.0, time_cap_s: float | None = None, **protocol) -> Measurement:
        if adaptive or protocol:  # Device.measure refuses these first; a direct call gets the same line
            raise self.refuse("adaptive" if adaptive else sorted(protocol)[0], self.refusal)
        result = self.run_benchmark(artifact, warmup, runs, min_secs=min_time_s, max_secs=time_cap_s)
        return result.to_measurement(warmup=warmup)

    def profile_ops(self, artifact: Artifact, *, warmup: int = 5, runs: int = 20) -> list[OpTiming]:
        result = self.run_benchmark(artifact, warmup, runs, op_profiling=True)
        if not result.run_order:
            raise HwnasError(f"device {self.device_name!r}: benchmark_model printed no op profile (is it built "
                             f"with profiling support? older builds need --copt=-DTFLITE_PROFILING_ENABLED)")
        # benchmark_model prints the average per op, not a median
        return [OpTiming(name=o.name, op_type=o.node_type, median_ms=o.avg_ms, mean_ms=o.avg_ms,
                         count=o.times_called or 1) for o in result.run_order]

"""The emulated phone: a temp folder standing for the phone, an `adb` on PATH that acts on it, and a
benchmark_model that really times the pushed .tflite with the local LiteRT runtime.

    from tests.latency.phone.fake_phone import fake_phone   # the pytest fixture
    def test_x(fake_phone):
        fake_phone.set_state("unauthorized")
        dev = get_device("pixel", fake_phone.devices_file())
"""
from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
SERIAL = "EMU0PIXEL"
PIXEL_PROPS = {
    "ro.product.model": "Pixel 4 (emulated)",
    "ro.product.manufacturer": "hwnas",
    "ro.product.board": "flame",
    "ro.board.platform": "msmnile",
    "ro.soc.manufacturer": "Qualcomm",
    "ro.soc.model": "SM8150",
    "ro.hardware": "flame",
    "ro.product.cpu.abi": "arm64-v8a",
    "ro.build.version.release": "13",
    "ro.build.version.sdk": "33",
    "ro.build.fingerprint": "hwnas/emulated/flame:13/TQ3A/1:user/release-keys",
}


def _script(path: Path, source: Path) -> None:
    path.write_text(f"#!{sys.executable}\n" + source.read_text())
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


class FakePhone:
    def __init__(self, root: Path):
        self.root = root
        self.bin = root / "host-bin"
        self.bin.mkdir(parents=True)
        _script(self.bin / "adb", HERE / "adb_shim.py")
        self.config = {"devices": {}, "hang": False, "reject_model": False}
        self.add_device(SERIAL)

    # -- knobs --------------------------------------------------------------------------------
    def _save(self) -> None:
        (self.root / "phone.json").write_text(json.dumps(self.config, indent=1))

    def add_device(self, serial: str, state: str = "device", benchmark_model: bool = True, props=None) -> Path:
        home = self.root / "devices" / serial
        (home / "data/local/tmp").mkdir(parents=True, exist_ok=True)
        (home / "system/bin").mkdir(parents=True, exist_ok=True)
        _script(home / "system/bin/taskset", HERE / "taskset_shim.py")
        if benchmark_model:
            _script(home / "data/local/tmp/benchmark_model", HERE / "benchmark_model_shim.py")
        self.config["devices"][serial] = {"state": state, "props": dict(props or PIXEL_PROPS)}
        self._save()
        return home

    def remove_device(self, serial: str = SERIAL) -> None:
        self.config["devices"].pop(serial, None)
        self._save()

    def set_state(self, state: str, serial: str = SERIAL) -> None:
        self.config["devices"][serial]["state"] = state
        self._save()

    def set(self, **knobs) -> None:
        self.config.update(knobs)
        self._save()

    def remove_benchmark_model(self, serial: str = SERIAL) -> None:
        (self.tmp_dir(serial) / "benchmark_model").unlink()

    def tmp_dir(self, serial: str = SERIAL) -> Path:
        return self.root / "devices" / serial / "data/local/tmp"

    def devices_file(self, **options) -> Path:
        """A devices.yaml with a `phone` device (adb backend) on the emulated phone."""
        import yaml
        entry = {"backend": "adb", "threads": 1, "timeout_s": 60.0, "command_timeout_s": 20.0}
        entry.update(options)
        path = self.root / "devices.yaml"
        path.write_text(yaml.safe_dump({"phone": entry}))
        return path


@pytest.fixture
def fake_phone(tmp_path, monkeypatch):
    phone = FakePhone(tmp_path / "phone")
    monkeypatch.setenv("HWNAS_FAKE_PHONE", str(phone.root))
    monkeypatch.setenv("PATH", f"{phone.bin}{os.pathsep}{os.environ.get('PATH', '')}")
    return phone

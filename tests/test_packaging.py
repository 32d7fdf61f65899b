"""The installed package: top-level folders mapped into hwnas.*, devices.yaml shipped inside it."""
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_wheel_maps_layout_and_ships_devices_yaml(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w",
                    str(tmp_path), str(ROOT)], check=True, capture_output=True, timeout=600)
    (wheel,) = tmp_path.glob("hwnas-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for required in ("hwnas/cli.py", "hwnas/devices.yaml", "hwnas/latency/measure.py",
                     "hwnas/latency/devices/ort.py", "hwnas/models/resnet.py", "hwnas/search/reward.py",
                     "hwnas/adapt/__init__.py", "hwnas/models/torchvision_keys.json.gz"):
        assert required in names, required
    assert not any(n.startswith(("latency/", "models/", "search/", "adapt/", "tests/")) for n in names)
    shipped = zipfile.ZipFile(wheel).read("hwnas/devices.yaml").decode()
    assert shipped == (ROOT / "devices.yaml").read_text()


def test_installed_devices_yaml_is_the_root_one():
    from hwnas.latency.devices.config import builtin_devices_file
    assert builtin_devices_file().read_text() == (ROOT / "devices.yaml").read_text()

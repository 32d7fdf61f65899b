"""An `adb` stand-in for tests: acts on a temporary "phone" folder instead of a USB device.

State lives in $HWNAS_FAKE_PHONE/phone.json (see fake_phone.py): the attached serials with their
state ("device", "unauthorized", "offline") and getprop values, plus knobs ("hang": sleep forever
once benchmark_model starts, as a phone unplugged mid-run does). `shell` runs the command with the
local /bin/sh, /data/local/tmp mapped into the phone folder; `push` copies into it.
"""
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(os.environ["HWNAS_FAKE_PHONE"])


def fail(msg, code=1):
    sys.stderr.write(msg + "\n")
    sys.exit(code)


def main(argv):
    cfg = json.loads((ROOT / "phone.json").read_text())
    devices = cfg["devices"]
    serial = None
    if argv[:1] == ["-s"]:
        serial, argv = argv[1], argv[2:]
    if not argv:
        fail("adb: usage: no command specified")
    cmd = argv[0]
    if cmd == "devices":
        print("List of devices attached")
        for s, d in devices.items():
            print(f"{s}\t{d['state']}")
        print()
        return 0
    if serial is None:
        if not devices:
            fail("adb: no devices/emulators found")
        if len(devices) > 1:
            fail("adb: more than one device/emulator")
        serial = next(iter(devices))
    if serial not in devices:
        fail(f"adb: device '{serial}' not found")
    dev = devices[serial]
    if dev["state"] == "unauthorized":
        fail("adb: device unauthorized.\nThis adb server's $ADB_VENDOR_KEYS is not set\n"
             "Try 'adb kill-server' if that seems wrong.\nOtherwise check for a confirmation dialog on your device.")
    if dev["state"] == "offline":
        fail("adb: device offline")
    home = ROOT / "devices" / serial

    def local(path):
        return str(home / path.lstrip("/")) if path.startswith("/") else path

    if cmd == "get-state":
        print(dev["state"])
        return 0
    if cmd == "push":
        src, dst = argv[1], argv[2]
        target = Path(local(dst))
        if dst.endswith("/"):
            target = target / Path(src).name
        if not target.parent.is_dir():
            fail(f"adb: error: failed to copy '{src}' to '{dst}': remote No such file or directory")
        shutil.copyfile(src, target)
        size = target.stat().st_size
        print(f"{src}: 1 file pushed, 0 skipped. 35.1 MB/s ({size} bytes in 0.001s)")
        return 0
    if cmd == "shell":
        line = " ".join(argv[1:])
        if line.strip() == "getprop":
            for k, v in sorted(dev["props"].items()):
                print(f"[{k}]: [{v}]")
            return 0
        if line.startswith("getprop "):
            print(dev["props"].get(line.split()[1], ""))
            return 0
        if cfg.get("hang") and "benchmark_model" in line and "test -x" not in line:
            print("INFO: STARTING!", flush=True)
            time.sleep(3600)  # the USB link went away: adb waits forever
        line = line.replace("/data/local/tmp", str(home / "data/local/tmp"))
        env = dict(os.environ, PATH=f"{home / 'system/bin'}{os.pathsep}{os.environ.get('PATH', '')}")
        return subprocess.call(["/bin/sh", "-c", line], env=env)
    fail(f"adb: unknown command {cmd}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

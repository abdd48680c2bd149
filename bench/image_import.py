"""`guestlab image import` against each engine's own import of the same file, in one run,
and the wheel: its size and its install time into a fresh virtualenv.

- a root file system tarball (Debian 11, built by scripts/setup.sh) into Docker:
  `guestlab image import --backend docker` vs `docker import`;
- the same into LXD: guestlab vs `lxc image import ROOTFS METADATA` (a split image);
- a libvirt box (the debian-12-systemd box guestlab built) into Vagrant: guestlab vs
  `vagrant box add`.

guestlab's figure includes its checks (the archive read once as a stream, the disk read
with debugfs) and the copy it keeps; the engines' own commands check nothing. Writes
bench/results/image-import.json.

    python bench/image_import.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import io
import json
import platform
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from orchestrator.images.box import box_path  # noqa: E402
from orchestrator.images.rootfs import tarball_path  # noqa: E402


def timed(argv: list[str], cwd: Path = ROOT) -> float:
    started = time.perf_counter()
    subprocess.run(argv, check=True, capture_output=True, cwd=cwd)
    return time.perf_counter() - started


def guestlab(*args: str) -> list[str]:
    return [sys.executable, "-m", "orchestrator.cli", *args]


def lxd_metadata(folder: Path) -> Path:
    meta = {"architecture": platform.machine(), "creation_date": int(time.time()), "properties": {}}
    body = json.dumps(meta).encode()  # YAML is a superset of JSON
    path = folder / "meta.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        info = tarfile.TarInfo("metadata.yaml")
        info.size = len(body)
        tar.addfile(info, io.BytesIO(body))
    return path


def one_round(folder: Path) -> dict[str, float]:
    rootfs, box = tarball_path("debian-11-systemd"), box_path("debian-12-systemd")
    tag = uuid.uuid4().hex[:6]
    out: dict[str, float] = {}
    name = f"bench-{tag}"
    out["docker: guestlab image import"] = timed(
        guestlab("image", "import", name, str(rootfs), "--backend", "docker")
    )
    subprocess.run(guestlab("image", "rm", name), check=True, capture_output=True)
    out["docker: docker import"] = timed(["docker", "import", str(rootfs), f"bench/raw-{tag}"])
    subprocess.run(["docker", "rmi", f"bench/raw-{tag}"], check=True, capture_output=True)
    out["lxd: guestlab image import"] = timed(
        guestlab("image", "import", name, str(rootfs), "--backend", "lxd")
    )
    subprocess.run(guestlab("image", "rm", name), check=True, capture_output=True)
    meta = lxd_metadata(folder)
    out["lxd: lxc image import"] = timed(
        ["lxc", "image", "import", str(meta), str(rootfs), "--alias", f"bench-raw-{tag}"]
    )
    subprocess.run(["lxc", "image", "delete", f"bench-raw-{tag}"], check=True, capture_output=True)
    out["vagrant: guestlab image import"] = timed(
        guestlab("image", "import", name, str(box), "--backend", "vagrant")
    )
    subprocess.run(guestlab("image", "rm", name), check=True, capture_output=True)
    raw = f"bench/raw-{tag}"
    out["vagrant: vagrant box add"] = timed(["vagrant", "box", "add", "--name", raw, str(box)])
    subprocess.run(["vagrant", "box", "remove", "--force", raw], check=True, capture_output=True)
    return out


def wheel(folder: Path) -> dict[str, float]:
    dist = folder / "dist"
    subprocess.run([sys.executable, "-m", "build", "--wheel", "--outdir", str(dist), str(ROOT)],
                   check=True, capture_output=True)  # fmt: skip
    whl = next(dist.glob("*.whl"))
    venv = folder / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    seconds = timed([str(venv / "bin/pip"), "install", "-q", str(whl)])
    return {"wheel size (KiB)": whl.stat().st_size / 1024, "wheel install (s)": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    rounds = parser.parse_args().rounds
    with tempfile.TemporaryDirectory() as tmp:
        samples = [one_round(Path(tmp)) for _ in range(rounds)]
        extra = wheel(Path(tmp))
    medians = {k: statistics.median(s[k] for s in samples) for k in samples[0]}
    load = Path("/proc/loadavg").read_text().split()[:3]
    result = {"rounds": rounds, "median_seconds": medians, **extra, "loadavg": load}
    (ROOT / "bench/results/image-import.json").write_text(json.dumps(result, indent=2) + "\n")
    for key, value in {**medians, **extra}.items():
        print(f"{key:34} {value:8.2f}")
    print(f"load average at the end: {' '.join(load)}")


if __name__ == "__main__":
    main()

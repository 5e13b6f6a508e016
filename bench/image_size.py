"""The container image's size, and where it goes (docs/deployment.md, "Size").

    make image && python bench/image_size.py [--image docserver:VERSION] [--out bench/results/image_size.json]

Reads the unpacked size podman reports, the gzip-compressed size of the
saved image (about what a registry stores and a node pulls), and, from a
container of the image, the space taken by the runtime's largest parts.
Runs podman as the Makefile does (CONTAINERS_CONF, `--runtime runc`).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shlex
import subprocess
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PODMAN = shlex.split(os.environ.get("DOCSERVER_PODMAN", "podman --runtime runc"))
PARTS = {
    "python_stdlib": "/usr/lib/python3.11",
    "shared_libraries": "/usr/lib/x86_64-linux-gnu",
    "venv": "/opt/docserver",
    "numpy_and_openblas": "/opt/docserver/lib/python3.11/site-packages/numpy*",
    "grpcio": "/opt/docserver/lib/python3.11/site-packages/grpc*",
    "cryptography": "/opt/docserver/lib/python3.11/site-packages/cryptography*",
    "psycopg_binary": "/opt/docserver/lib/python3.11/site-packages/psycopg_binary*",
}


def podman(*args: str, **kwargs: object) -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "CONTAINERS_CONF": os.environ.get("CONTAINERS_CONF", str(ROOT / "build/containers.conf"))}
    return subprocess.run([*PODMAN, *args], env=env, check=True, capture_output=True, **kwargs)  # type: ignore[call-overload]


def compressed_mb(image: str) -> float:
    saved = podman("save", image).stdout
    return round(len(gzip.compress(saved, compresslevel=6)) / 1e6, 1)


def part_mb(image: str) -> dict[str, float]:
    script = "; ".join(f"du -sck {path} | tail -1" for path in PARTS.values())
    out = podman("run", "--rm", "--entrypoint", "sh", image, "-c", script).stdout.decode().split()
    kilobytes = [int(value) for value in out[0::2]]
    return {name: round(size / 1024, 1) for name, size in zip(PARTS, kilobytes, strict=True)}


def main() -> None:
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--image", default=f"docserver:{version}")
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/image_size.json")
    args = parser.parse_args()
    size = int(podman("image", "inspect", "--format", "{{.Size}}", args.image).stdout)
    result = {
        "image": args.image,
        "unpacked_mb": round(size / 1e6, 1),
        "gzip_mb": compressed_mb(args.image),
        "parts_mib": part_mb(args.image),
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Generate kvstore's Python gRPC/protobuf code from etcd's API protos.

Runs ``grpc_tools.protoc -Iproto`` over ``proto/*.proto`` and writes
``*_pb2.py``, ``*_pb2.pyi`` and the services' ``*_pb2_grpc.py`` (plus the package's
``__init__.py``) into the output directory, rewriting protoc's absolute
imports (``import kv_pb2 as kv__pb2``) into package-relative ones
(``from . import kv_pb2 as kv__pb2``) so the output works as a package.

Usage::

    python tools/gen_proto.py [--out DIR]      # default: kvstore/api/

The output depends only on the .proto files and the installed grpcio-tools
version: the same input gives byte-identical files (checked by
tests/test_proto_generated.py).
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PROTO_DIR = REPO / "proto"
DEFAULT_OUT = REPO / "kvstore" / "api"

# Dependency order does not matter to protoc, but keep a fixed order anyway.
PROTOS = ("kv.proto", "auth.proto", "rpc.proto", "v3lock.proto", "v3election.proto")
# Only these define services; protoc would emit empty *_grpc.py files for the
# others, which we do not keep.
GRPC_PROTOS = ("rpc.proto", "v3lock.proto", "v3election.proto")

INIT_PY = '"""etcd\'s wire messages, generated from proto/ by tools/gen_proto.py; do not edit."""\n'

_MODULES = "|".join(re.escape(Path(p).stem) for p in PROTOS)
# `import kv_pb2 as kv__pb2`  ->  `from . import kv_pb2 as kv__pb2`
_IMPORT_AS = re.compile(rf"^import ({_MODULES})_pb2 as (\w+)$", re.MULTILINE)
# `import kv_pb2`             ->  `from . import kv_pb2`
_IMPORT = re.compile(rf"^import ({_MODULES})_pb2$", re.MULTILINE)
# `from kv_pb2 import X`      ->  `from .kv_pb2 import X`
_FROM = re.compile(rf"^from ({_MODULES})_pb2 import ", re.MULTILINE)


def expected_files() -> list[str]:
    """Names of every file gen_proto writes into the output directory."""
    names = ["__init__.py"]
    for proto in PROTOS:
        stem = Path(proto).stem
        names += [f"{stem}_pb2.py", f"{stem}_pb2.pyi"]
    names += [f"{Path(p).stem}_pb2_grpc.py" for p in GRPC_PROTOS]
    return sorted(names)


def relativize_imports(source: str) -> str:
    source = _IMPORT_AS.sub(r"from . import \1_pb2 as \2", source)
    source = _IMPORT.sub(r"from . import \1_pb2", source)
    source = _FROM.sub(r"from .\1_pb2 import ", source)
    return source


def _protoc(args: list[str]) -> None:
    from grpc_tools import protoc

    rc = protoc.main(["grpc_tools.protoc", *args])
    if rc != 0:
        raise SystemExit(f"protoc failed (exit {rc}): {' '.join(args)}")


def generate(out_dir: Path) -> list[Path]:
    """Generate the Python code into ``out_dir``; return the written paths."""
    for proto in PROTOS:
        if not (PROTO_DIR / proto).is_file():
            raise SystemExit(f"missing {PROTO_DIR / proto}")

    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="gen_proto.") as tmp:
        tmp_dir = Path(tmp)
        # Relative proto names under a single -I keep descriptor file names
        # ("kv.proto", ...) and the output free of absolute paths.
        _protoc(
            [
                f"-I{PROTO_DIR}",
                f"--python_out={tmp_dir}",
                f"--pyi_out={tmp_dir}",
                *PROTOS,
            ]
        )
        _protoc(
            [
                f"-I{PROTO_DIR}",
                f"--grpc_python_out={tmp_dir}",
                *GRPC_PROTOS,
            ]
        )

        contents: dict[str, str] = {"__init__.py": INIT_PY}
        for name in expected_files():
            if name == "__init__.py":
                continue
            generated = tmp_dir / name
            if not generated.is_file():
                raise SystemExit(f"protoc did not produce {name}")
            text = generated.read_text(encoding="utf-8")
            contents[name] = relativize_imports(text)

    written = []
    for name in sorted(contents):
        path = out_dir / name
        data = contents[name].encode("utf-8")
        if not path.is_file() or path.read_bytes() != data:
            path.write_bytes(data)
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_OUT,
        help=f"output directory (default: {DEFAULT_OUT.relative_to(REPO)}/)",
    )
    args = parser.parse_args(argv)
    for path in generate(args.out):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())

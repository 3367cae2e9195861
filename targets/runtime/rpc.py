"""Run and time an artifact on a remote device through TVM's RPC (a server, or a tracker of servers).

The device runs ``python -m tvm.exec.rpc_server`` (optionally registered with a
``python -m tvm.exec.rpc_tracker`` under a key); this side uploads the artifact's library, loads
it there, runs the Relax VM on the remote device and times it with TVM's ``time_evaluator``, so
the numbers are the device's own, without network time.

>>> result = bench_remote("out/mlp", "rasp4@127.0.0.1:9190")   # through a tracker, device key "rasp4"
>>> result = bench_remote("out/mlp", "192.168.1.7:9090")        # straight to a server
>>> result.mean_ms, result.outputs

An address is ``HOST:PORT`` (a server) or ``KEY@HOST:PORT`` (a tracker and the device key); the
``key=`` argument is the other way to name a tracker's key. Tuning on a remote device
(``tune_rpc=`` of ``build``, targets/cpu/tuning.py) goes through a tracker: ``parse_tracker_address``
and ``tracker_servers`` check such an address before MetaSchedule's RPC runner is started.
"""

from __future__ import annotations

import contextlib
import socket
import statistics
import struct
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tvm
from tvm import rpc
from tvm.runtime.vm import VirtualMachine

from graphopt.errors import GraphoptError, InputError, first_line
from graphopt.targets.runtime import (
    CompiledModel,
    Manifest,
    TensorSpec,
    check_inputs,
    dim_bounds,
    sha256_file,
    to_numpy,
    verify_files,
)
from graphopt.targets.runtime.packed_library import library_file


class RemoteError(GraphoptError):
    """The RPC server or tracker could not be reached, or the remote run failed."""


@dataclass
class RemoteBenchmark:
    """Per-run seconds measured on the device, the outputs of one run, and where it ran."""

    seconds: list[float]
    outputs: Any
    device: str

    @property
    def mean_ms(self) -> float:
        return statistics.fmean(self.seconds) * 1000

    @property
    def std_ms(self) -> float:
        return statistics.pstdev(self.seconds) * 1000

    def to_dict(self) -> dict[str, Any]:
        return {"device": self.device, "mean_ms": self.mean_ms, "std_ms": self.std_ms, "runs": len(self.seconds)}


def parse_address(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise InputError(f"RPC address {address!r} is not HOST:PORT")
    return host, int(port)


def split_key(address: str, key: str | None = None) -> tuple[str | None, str]:
    """(device key, ``HOST:PORT``) of ``KEY@HOST:PORT``; a plain ``HOST:PORT`` keeps ``key``."""
    if "@" in address:
        key, _, address = address.partition("@")
    return key, address


def parse_tracker_address(address: str, *, key: str | None = None) -> tuple[str, str, int]:
    """(key, host, port) of a tracker address ``KEY@HOST:PORT``; a tracker needs the device key."""
    key, rest = split_key(address, key)
    if not key:
        raise InputError(f"RPC tracker address {address!r} names no device key: write KEY@HOST:PORT")
    host, port = parse_address(rest)
    return key, host, port


def tracker_servers(address: str, *, key: str | None = None, timeout_s: float = 10) -> int:
    """How many servers the tracker at ``KEY@HOST:PORT`` has registered under the key (at least one).

    Asks the tracker for its summary over a socket that gives up after ``timeout_s`` (TVM's own
    tracker client retries for a minute, or waits forever on a port that is not a tracker).
    """
    key, host, port = parse_tracker_address(address, key=key)
    try:
        summary = _tracker_summary(host, port, timeout_s)
    except Exception as error:
        raise RemoteError(f"cannot reach the RPC tracker at {host}:{port}: {first_line(error)}") from error
    keys = [str(s.get("key", "")).partition(":")[2] for s in summary.get("server_info", [])]
    if key not in keys:
        known = ", ".join(sorted({k for k in keys if k})) or "none"
        raise RemoteError(
            f"the RPC tracker at {host}:{port} has no server registered under key {key!r} (keys: {known})"
        )
    return keys.count(key)


def _tracker_summary(host: str, port: int, timeout_s: float) -> dict[str, Any]:
    from tvm.rpc import base

    with socket.create_connection((host, port), timeout=timeout_s) as sock:
        sock.sendall(struct.pack("<i", base.RPC_TRACKER_MAGIC))
        if struct.unpack("<i", base.recvall(sock, 4))[0] != base.RPC_TRACKER_MAGIC:
            raise RemoteError("it is not a TVM RPC tracker")
        base.sendjson(sock, [base.TrackerCode.SUMMARY])
        reply = base.recvjson(sock)
    if reply[0] != base.TrackerCode.SUCCESS:
        raise RemoteError(f"unexpected tracker reply {reply!r}")
    return reply[1]


def connect(address: str, *, key: str | None = None, timeout_s: float = 60) -> Any:
    """A session: through the tracker at ``address`` when a key is given, else straight to a server."""
    key, address = split_key(address, key)
    host, port = parse_address(address)
    try:
        if key:
            return rpc.connect_tracker(host, port).request(key, session_timeout=timeout_s, max_retry=3)
        return rpc.connect(host, port, session_timeout=timeout_s)
    except Exception as error:
        what = f"the RPC tracker at {address} (key {key!r})" if key else f"the RPC server at {address}"
        raise RemoteError(f"cannot reach {what}: {first_line(error)}") from error


def example_inputs(specs: Sequence[TensorSpec], batch: int = 1, seed: int = 0) -> list[np.ndarray]:
    """Random inputs that fit the manifest (a dynamic batch dimension becomes ``batch``)."""
    generator = np.random.default_rng(seed)
    arrays = []
    for spec in specs:
        shape = tuple(batch if isinstance(d, str) else d for d in spec.shape)
        if spec.dtype.startswith("int"):
            arrays.append(generator.integers(0, 2, size=shape).astype(spec.dtype))
        else:
            arrays.append(generator.standard_normal(shape).astype(spec.dtype))
    return arrays


def bench_remote(
    artifact: str | Path | CompiledModel,
    address: str,
    *,
    key: str | None = None,
    inputs: Sequence[Any] | None = None,
    number: int = 10,
    repeat: int = 3,
    timeout_s: float = 60,
) -> RemoteBenchmark:
    """Upload an artifact (a directory or a ``CompiledModel``) to the device at ``address``, run it
    and time it there.

    ``inputs`` default to seeded random arrays of the manifest's shapes. Each of ``repeat``
    measurements averages ``number`` runs.
    """
    with _library(artifact) as (library_path, manifest):
        specs = list(manifest.inputs)
        arrays = check_inputs(
            specs, tuple(inputs if inputs is not None else example_inputs(specs)), {}, dim_bounds(manifest)
        )
        session = connect(address, key=key, timeout_s=timeout_s)
        return _run_on(session, library_path, manifest, arrays, address, number=number, repeat=repeat)


def _run_on(
    session: Any, library_path: Path, manifest: Manifest, arrays: list[np.ndarray], address: str, **timing: int
) -> RemoteBenchmark:
    try:
        remote_name = f"graphopt_{sha256_file(library_path)[:16]}.so"
        session.upload(str(library_path), target=remote_name)
        library = session.load_module(remote_name)
        device = session.cuda(0) if manifest.target.device == "cuda" else session.cpu(0)
        vm = VirtualMachine(library, device)
        tensors = [tvm.runtime.tensor(a, device) for a in arrays]
        outputs = to_numpy(vm["main"](*tensors), len(manifest.outputs))
        timer = vm.time_evaluator("main", device, number=timing["number"], repeat=timing["repeat"])
        seconds = [float(s) for s in timer(*tensors).results]
    except GraphoptError:
        raise
    except Exception as error:
        raise RemoteError(f"running the artifact on {address} failed: {first_line(error)}") from error
    return RemoteBenchmark(seconds=seconds, outputs=outputs, device=f"{device} via {address}")


def run_remote(
    artifact: str | Path | CompiledModel, address: str, inputs: Sequence[Any], *, key: str | None = None
) -> Any:
    """Run the artifact once on the remote device; returns its outputs as numpy arrays."""
    return bench_remote(artifact, address, key=key, inputs=inputs, number=1, repeat=1).outputs


def time_remote(
    compiled: str | Path | CompiledModel, inputs: Sequence[Any], address: str, *, number: int = 10, repeat: int = 3
) -> float:
    """Median seconds per run on the remote device (what ``graphopt bench --rpc`` reports)."""
    return statistics.median(bench_remote(compiled, address, inputs=inputs, number=number, repeat=repeat).seconds)


@contextlib.contextmanager
def _library(artifact: str | Path | CompiledModel) -> Iterator[tuple[Path, Manifest]]:
    """(library path, manifest) of an artifact directory, or of a compiled model (exported to a temp dir)."""
    if isinstance(artifact, CompiledModel) and artifact.out_dir is not None:
        artifact = artifact.out_dir
    if not isinstance(artifact, CompiledModel):
        directory = Path(artifact)
        manifest = Manifest.read(directory)
        verify_files(directory, manifest)
        with library_file(directory, str(manifest.library), manifest.extra) as library:
            yield library, manifest
        return
    with tempfile.TemporaryDirectory(prefix="graphopt-rpc-") as scratch:
        path = Path(scratch) / "model.so"
        artifact.module.export_library(str(path))
        yield path, artifact.manifest

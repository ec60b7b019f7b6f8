"""Compile CUDA sources to PTX without a GPU: `nvcc -ptx` when nvcc is on PATH (several
sources per invocation, one invocation per CPU core), else NVRTC through cupy. Each source is
compiled as its own translation unit, so each must be complete on its own.

Sources that compiled before with the same compiler and flags are remembered (a marker file
per source hash in the temp directory), so a second `make test` skips them; set
LOOM_PTX_CACHE=0 to compile everything."""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from gpu.csrc import COMPILE_OPTIONS

# C++11: the kernels need nothing newer (so they also compile under NVRTC's default C++17),
# and nvcc parses its runtime headers about a third faster than in C++17 mode.
NVCC_FLAGS = ["-ptx", *COMPILE_OPTIONS, "-Werror", "all-warnings", "-std=c++11"]


def compiler() -> tuple[str | None, str]:
    """(name, version or why not): "nvcc", "nvrtc", or None when neither can be used."""
    nvcc = shutil.which("nvcc")
    if nvcc:
        version = subprocess.run([nvcc, "--version"], capture_output=True, text=True).stdout
        return "nvcc", version.strip().splitlines()[-1]
    try:
        import cupy.cuda.nvrtc as nvrtc
        return "nvrtc", ".".join(map(str, nvrtc.getVersion()))
    except Exception as exc:  # noqa: BLE001 - no cupy, or cupy without a loadable NVRTC
        return None, f"nvcc is not on PATH and cupy's NVRTC is not usable ({exc})"


def compile_all(sources: dict) -> dict:
    """label -> compiler log, for the sources that fail; {} when all compile."""
    name, version = compiler()
    by_text = {}
    for label, text in sources.items():
        by_text.setdefault(text, []).append(label)
    cache = _cache_dir(name, version)
    todo = [t for t in by_text if not (cache and (cache / _digest(t)).exists())]
    failed = _nvcc(todo) if name == "nvcc" else _nvrtc(todo)
    for text in todo:
        if text not in failed and cache:
            (cache / _digest(text)).touch()
    return {", ".join(by_text[t]): log for t, log in failed.items()}


def _digest(text):
    return hashlib.sha256(text.encode()).hexdigest()


def _cache_dir(name, version):
    if os.environ.get("LOOM_PTX_CACHE", "1") == "0":
        return None
    key = _digest(f"{name} {version} {NVCC_FLAGS}")[:16]
    path = Path(tempfile.gettempdir()) / f"loom-ptx-ok-{os.getuid()}-{key}"
    path.mkdir(exist_ok=True)
    return path


def _nvcc(texts) -> dict:
    if not texts:
        return {}
    with tempfile.TemporaryDirectory() as tmp:
        files = []
        for i, text in enumerate(texts):
            files.append(Path(tmp) / f"k{i:04d}.cu")
            files[-1].write_text(text)
        workers = max(1, min(os.cpu_count() or 1, len(files)))
        chunks = [files[i::workers] for i in range(workers)]
        with ThreadPoolExecutor(workers) as pool:
            logs = list(pool.map(lambda chunk: _nvcc_chunk(chunk, tmp), chunks))
        failed = {}
        for chunk, log in zip(chunks, logs):
            if log is not None:  # find which files of the chunk fail, with their own logs
                for f in chunk:
                    own = _nvcc_chunk([f], tmp)
                    if own is not None:
                        failed[texts[files.index(f)]] = own
        return failed


def _nvcc_chunk(files, out_dir):
    run = subprocess.run(["nvcc", *NVCC_FLAGS, "--output-directory", out_dir, *map(str, files)],
                         capture_output=True, text=True)
    return None if run.returncode == 0 else run.stdout + run.stderr


def _nvrtc(texts) -> dict:
    from cupy.cuda import compiler as nvrtc_compiler
    failed = {}
    for text in texts:
        try:
            nvrtc_compiler.compile_using_nvrtc(text, options=COMPILE_OPTIONS)
        except Exception as exc:  # noqa: BLE001 - CompileException carries the log
            failed[text] = str(exc)
    return failed

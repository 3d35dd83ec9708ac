"""The libFuzzer target for the TCP input path (userstack/csrc/tcp/fuzz/fuzz_tcp_input.c), built
with clang -fsanitize=fuzzer,address,undefined and run for a bounded time from the seed corpus.

TCP_FUZZ_SECONDS sets the time (default 60); the soak variant runs ten minutes."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CSRC = ROOT / "userstack" / "csrc"
FUZZ = CSRC / "tcp" / "fuzz"
BUILD = ROOT / "build" / "tcp_fuzz"


def build() -> Path:
    clang = shutil.which("clang")
    if not clang:
        pytest.skip("clang is not installed")
    srcs = [FUZZ / "fuzz_tcp_input.c", *sorted((CSRC / "tcp").glob("*.c")), CSRC / "base" / "timer.c"]
    stamp = max(p.stat().st_mtime for p in [*srcs, *(CSRC / "tcp").glob("*.h"), CSRC / "base" / "timer.h"])
    exe = BUILD / "fuzz_tcp_input"
    if exe.exists() and exe.stat().st_mtime >= stamp:
        return exe
    BUILD.mkdir(parents=True, exist_ok=True)
    cmd = [clang, "-g", "-O1", "-fsanitize=fuzzer,address,undefined", "-fno-sanitize-recover=all",
           "-Wall", "-Wextra", "-Werror", f"-I{CSRC}", *map(str, srcs), "-o", str(exe) + ".part"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if r.returncode and "clang_rt" in r.stderr:
        # Debian ships libFuzzer and the sanitizer runtimes in libclang-rt-14-dev, which clang
        # only recommends (scripts/setup.sh installs without recommends).
        pytest.skip("the libFuzzer runtime is missing: apt-get install libclang-rt-14-dev")
    assert r.returncode == 0, r.stderr
    os.replace(str(exe) + ".part", exe)
    return exe


def run(tmp_path, seconds: int):
    exe = build()
    corpus = tmp_path / "corpus"
    shutil.copytree(FUZZ / "corpus", corpus)
    r = subprocess.run([str(exe), f"-max_total_time={seconds}", "-print_final_stats=1",
                        f"-artifact_prefix={tmp_path}/", "-rss_limit_mb=2048", str(corpus)],
                       capture_output=True, text=True, timeout=seconds + 120)
    tail = r.stderr[-3000:]
    assert r.returncode == 0, tail
    runs = [int(line.split()[1]) for line in r.stderr.splitlines() if line.startswith("Done ")]
    assert runs and runs[0] > 1000, tail
    print(f"\nfuzz_tcp_input: {runs[0]} executions in {seconds} s")
    return runs[0]


def test_fuzz_tcp_input(tmp_path):
    run(tmp_path, int(os.environ.get("TCP_FUZZ_SECONDS", "60")))


SOAK_SECONDS = int(os.environ.get("TCP_FUZZ_SOAK_SECONDS", "600"))


@pytest.mark.soak
@pytest.mark.timeout(SOAK_SECONDS + 300)        # the suite's 300 s limit is for ordinary tests
def test_fuzz_tcp_input_soak(tmp_path):
    run(tmp_path, SOAK_SECONDS)

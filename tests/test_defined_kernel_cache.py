"""Generated kernels of defined cells live in files of a cache directory, so numba's disk cache keeps them: the
module file is written once, a second process imports the same file and loads the compiled kernels instead of
compiling them again; a link planted at the file's name is replaced, never written through."""

import json
import os
import subprocess
import sys

import pytest

from rnnkit.define import kernel_files

pytest.importorskip("numba")

#: one process: the generated kernel of a tiny RNN definition called once; prints its file and cache counters
PROBE = """
import json, sys
import numpy as np
from rnnkit import define
from rnnkit.define.cells import compiled_code
rnn = define.cell("rnn_probe", gates="n", states="h", equations="h = tanh(a_n)")
code = compiled_code(rnn)
pre, rec, prev, new = (np.ones((2, 3)) for _ in range(4))
code.forward(pre, rec, np.zeros(3), prev, new, np.empty((2, 3)))
stats = code.forward.stats
layer = define.DefinedRNN(2, 3, rnn, dtype=np.float64)
out, _ = layer.forward(np.ones((1, 2, 2)))
layer.backward(np.ones_like(out))
entries = [code.sequence_forward.stats, code.sequence_backward.stats]
print(json.dumps({"file": code.__file__, "hits": sum(stats.cache_hits.values()),
                  "misses": sum(stats.cache_misses.values()),
                  "entry_hits": sum(sum(e.cache_hits.values()) for e in entries),
                  "entry_misses": sum(sum(e.cache_misses.values()) for e in entries)}))
"""


def probe(cache_dir) -> dict:
    # the backward loop compiled here, not by a child process ahead of it (`rnnkit.kernels.precompile`: one starts
    # where the cores are free), so that the counters below say what this process compiled and loaded
    env = {**os.environ, "RNNKIT_CACHE_DIR": str(cache_dir), "RNNKIT_KERNELS": "compiled",
           "RNNKIT_COMPILE_AHEAD": "never"}
    done = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_generated_kernel_file_is_written_once_and_a_second_process_loads_its_compiled_code_and_loops(tmp_path):
    first = probe(tmp_path)
    written = os.stat(first["file"])
    second = probe(tmp_path)
    assert first["file"] == second["file"]
    assert first["file"].startswith(str(tmp_path / "define")) and first["misses"] == 1 and first["hits"] == 0
    assert second["hits"] == 1 and second["misses"] == 0
    assert first["entry_misses"] == 2 and second["entry_hits"] == 2 and second["entry_misses"] == 0  # the loops
    assert os.stat(second["file"]).st_mtime_ns == written.st_mtime_ns  # not rewritten


def test_a_link_planted_at_the_kernel_files_name_is_replaced_not_followed(tmp_path, monkeypatch):
    monkeypatch.setenv("RNNKIT_CACHE_DIR", str(tmp_path))
    source = "X = 1\n"
    name = kernel_files.module_name(source)
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    (tmp_path / "define").mkdir()
    link = tmp_path / "define" / f"{name}.py"
    link.symlink_to(victim)
    path = kernel_files.write_source(source, name)
    assert path == link and not path.is_symlink() and path.read_text() == source
    assert victim.read_text() == "keep me"


def test_an_unusable_cache_directory_falls_back_to_a_private_one(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("RNNKIT_CACHE_DIR", str(blocker))  # <file>/define cannot be created
    path = kernel_files.write_source("Y = 2\n", "rnnkit_defined_probe")
    assert path.read_text() == "Y = 2\n" and not str(path).startswith(str(blocker))


_WRITE_ONE_KERNEL_FILE = """
import tempfile
from rnnkit.define import kernel_files
kernel_files.write_source("Z = 3\\n", "rnnkit_defined_probe")
print(tempfile.gettempdir())
"""


@pytest.mark.parametrize("usable", [True, False], ids=["usable cache", "unusable cache"])
def test_a_process_leaves_no_private_kernel_directory_behind(tmp_path, usable):
    cache = tmp_path / "cache"
    if not usable:
        cache.write_text("")  # <file>/define cannot be created: the private directory is used
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    env = {**os.environ, "RNNKIT_CACHE_DIR": str(cache), "TMPDIR": str(temporary)}
    run = subprocess.run([sys.executable, "-c", _WRITE_ONE_KERNEL_FILE], env=env, capture_output=True, text=True,
                         check=True)
    assert run.stdout.strip() == str(temporary)
    assert list(temporary.glob("rnnkit-define-*")) == []
    assert (cache / "define" / "rnnkit_defined_probe.py").is_file() == usable


def test_a_changed_loop_skeleton_blas_binding_or_panels_product_gives_a_new_kernel_file(monkeypatch):
    from rnnkit.define import kernel_files

    source = "def step():\n    pass\n"
    before = kernel_files.module_name(source)
    inlined = kernel_files.inlined_code()
    assert "sequence_forward" in inlined and "gemm" in inlined and "PRODUCT_SIGNATURE" in inlined
    monkeypatch.setattr(kernel_files, "inlined_code", lambda: "another skeleton")
    assert kernel_files.module_name(source) != before  # never stale machine code from a cached file


def test_each_numba_optimisation_level_gives_its_own_kernel_file(monkeypatch):
    from numba.core import config

    from rnnkit.define import kernel_files

    source = "def step():\n    pass\n"
    before = kernel_files.module_name(source)
    monkeypatch.setattr(config, "OPT", type(config.OPT)(3 if int(config.OPT) != 3 else 2))
    assert kernel_files.module_name(source) != before

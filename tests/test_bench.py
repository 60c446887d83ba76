"""`rnnkit bench` measures fairly: each library in its own pinned worker process, in alternating turns; its GFLOP/s
follow the GEMM count; its JSON holds every figure; `bench_compare` turns two JSON files into a before/after table."""

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

import rnnkit
from conftest import torch
from rnnkit import machine
from rnnkit.errors import DataError
from rnnkit.training import bench, bench_compare, bench_variants
from rnnkit.training.bench_processes import CAN_STOP, Workers, alternate

TINY = ["--batch", "2", "--hidden", "4", "--steps", "3", "--repeats", "3", "--threads", "1", "--kernels", "numpy",
        "--no-memory"]


def _bench(tmp_path: Path, *argv: str, env: dict | None = None) -> tuple[subprocess.CompletedProcess, dict]:
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, "-m", "rnnkit", "bench", *TINY, *argv, "--json", str(out)],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr
    return proc, json.loads(out.read_text())


@pytest.fixture(scope="module")
def lstm_bench(tmp_path_factory):
    """One tiny bench of the LSTM and the 2-layer bidirectional LSTM against torch: (process, JSON)."""
    if torch is None:
        pytest.skip("torch is not installed")
    return _bench(tmp_path_factory.mktemp("bench"), "--cells", "lstm", "--stacked-lstm", "2,4")


@pytest.fixture(scope="module")
def rnnkit_worker():
    with Workers(("rnnkit",), threads=1, kernels="numpy") as workers:
        yield workers["rnnkit"]


def test_gemm_flops_of_a_one_layer_lstm_equal_the_hand_count():
    # G·H = 12 gate columns; forward: input projection 2·T·B·I·GH = 2·5·2·3·12 = 720, recurrent products the same
    assert bench.gemm_flops(4, 3, batch=2, steps=5, mode="infer") == 1440
    assert bench.gemm_flops(4, 3, batch=2, steps=5, mode="train") == 3 * 1440  # + δx, δW_ih, δh, δW_hh


def test_gemm_flops_of_a_two_layer_bidirectional_lstm_count_the_second_layers_doubled_input():
    # H = 2, G·H = 8, B = T = 1. Layer 0: 2 directions × 2·(I + H)·8 = 2 × 2·4·8 = 128;
    # layer 1 reads both directions (I = 4): 2 × 2·(4 + 2)·8 = 192
    assert bench.gemm_flops(4, 2, batch=1, steps=1, mode="infer", layers=2, bidirectional=True) == 128 + 192
    assert bench.gemm_flops(4, 2, batch=1, steps=1, mode="train", layers=2, bidirectional=True) == 3 * 320


def test_peak_is_cores_times_clock_times_lanes_times_two_fma_pipes_times_two(tmp_path):
    assert machine.peak_gflops(2, 4, ghz=2.8, vector_bits=512, pipe_bits=512) == pytest.approx(2 * 2.8 * 16 * 2 * 2)
    assert machine.peak_gflops(2, 8, ghz=2.8, vector_bits=512, pipe_bits=512) == pytest.approx(2 * 2.8 * 8 * 2 * 2)
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\ncpu MHz\t\t: 2445.406\nprocessor\t: 1\ncpu MHz\t\t: 2800.000\n")
    assert machine.cpu_clock(cpuinfo, tmp_path / "missing", measure=False) == (pytest.approx(2.8), "nominal")
    (tmp_path / "max_freq").write_text("3500000\n")  # kHz
    assert machine.cpu_clock(cpuinfo, tmp_path / "max_freq") == (pytest.approx(3.5), "maximum")


def test_zen_4_runs_its_512_bit_vectors_on_two_256_bit_fma_pipes_so_its_peak_is_half(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\nmodel\t\t: 17\n")
    assert machine.cpu_identity(cpuinfo) == ("AuthenticAMD", 0x19)
    assert machine.fma_pipe_bits(512, "AuthenticAMD", 0x19) == 256
    assert machine.fma_pipe_bits(512, "AuthenticAMD", 0x1A) == 512  # Zen 5: full-width pipes
    assert machine.fma_pipe_bits(512, "GenuineIntel", 6) == 512
    assert machine.fma_pipe_bits(256, "AuthenticAMD", 0x19) == 256  # Zen 3: AVX2 only
    assert machine.peak_gflops(2, 4, ghz=3.0, vector_bits=512, pipe_bits=256) == pytest.approx(2 * 3.0 * 8 * 2 * 2)
    # a CPU given by its vector width alone has pipes that wide, whatever this machine's are
    assert machine.peak_gflops(2, 4, ghz=3.0, vector_bits=512) == pytest.approx(2 * 3.0 * 16 * 2 * 2)


@pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"), reason="the chain's timing is x86-64's")
def test_the_measured_clock_is_a_plausible_cpu_clock():
    pytest.importorskip("numba")  # the chain runs compiled
    assert 0.5 < machine.measured_ghz() < 7.0
    assert machine.cpu_clock(cpufreq="/nonexistent")[1] == "measured"


def test_each_library_runs_in_its_own_worker_process_apart_from_the_command(lstm_bench):
    _, data = lstm_bench
    workers = data["meta"]["workers"]
    assert set(workers) == {"rnnkit", "torch"} and workers["rnnkit"] != workers["torch"]
    assert data["meta"]["pid"] not in workers.values() and os.getpid() not in workers.values()
    for r in data["results"]:
        assert (r["rnnkit_pid"], r["torch_pid"]) == (workers["rnnkit"], workers["torch"])
        assert {t["pid"] for t in r["turns"] if t["library"] == "rnnkit"} == {workers["rnnkit"]}
        assert {t["pid"] for t in r["turns"] if t["library"] == "torch"} == {workers["torch"]}


def test_turns_alternate_between_the_libraries_and_never_overlap(lstm_bench):
    _, data = lstm_bench
    for r in data["results"]:
        turns = sorted(r["turns"], key=lambda t: t["start"])
        assert [t["library"] for t in turns] == ["rnnkit", "torch"] * 3
        assert all(a["end"] <= b["start"] for a, b in zip(turns, turns[1:]))


def test_the_figure_of_a_case_is_the_median_and_min_of_its_turns(lstm_bench):
    _, data = lstm_bench
    for r in data["results"]:
        for lib in ("rnnkit", "torch"):
            samples = sorted(r[f"{lib}_samples_ms"])
            assert len(samples) == 3 and r[f"{lib}_ms"] == samples[1] and r[f"{lib}_min_ms"] == samples[0]
        assert r["ratio"] == pytest.approx(r["torch_ms"] / r["rnnkit_ms"])


def test_the_json_and_the_footer_name_each_librarys_version_as_its_worker_reports_it(lstm_bench):
    proc, data = lstm_bench
    assert data["meta"]["versions"] == {"rnnkit": rnnkit.__version__, "torch": torch.__version__}
    for lib, version in data["meta"]["versions"].items():
        assert f"{lib} worker: pid {data['meta']['workers'][lib]}, {lib} {version}, threads " in proc.stdout


def test_every_thread_pool_of_both_workers_is_pinned_to_threads(lstm_bench):
    _, data = lstm_bench
    pools = data["meta"]["thread_pools"]
    assert pools["torch"]["torch"] == 1 and all(count == 1 for lib in pools.values() for count in lib.values())


def test_gflops_are_the_gemm_flops_over_the_median_time_and_peak_share_over_the_machine_peak(lstm_bench):
    _, data = lstm_bench
    for r in data["results"]:
        flops = bench.gemm_flops(4, r["hidden"], r["batch"], r["steps"], r["mode"], r["layers"], r["bidirectional"])
        assert r["gflop"] == pytest.approx(flops / 1e9)
        assert r["rnnkit_gflops"] == pytest.approx(flops / 1e9 / (r["rnnkit_ms"] / 1e3))
        assert r["torch_gflops"] == pytest.approx(flops / 1e9 / (r["torch_ms"] / 1e3))
        if r["peak_gflops"] is not None:  # from the bench's own clock (measured in its process, where it is)
            assert r["peak_gflops"] == pytest.approx(machine.peak_gflops(1, ghz=data["meta"]["clock_ghz"]))
            assert r["peak_fraction"] == pytest.approx(r["rnnkit_gflops"] / r["peak_gflops"])


def test_the_json_has_every_field_and_the_two_layer_bidirectional_lstm_row(lstm_bench):
    _, data = lstm_bench
    fields = {"cell", "layers", "bidirectional", "batch", "hidden", "steps", "mode", "rnnkit_ms", "rnnkit_min_ms",
              "torch_ms", "torch_min_ms", "ratio", "gflop", "rnnkit_gflops", "torch_gflops", "peak_gflops",
              "peak_fraction", "ceiling_gflops", "ceiling_fraction", "turns", "steal_ms"}
    assert all(fields <= set(r) for r in data["results"])
    stacked = [(r["mode"], r["batch"], r["hidden"]) for r in data["results"] if r["layers"] == 2
               and r["bidirectional"]]
    assert stacked == [("train", 2, 4), ("infer", 2, 4)]
    assert {"format", "threads", "repeats", "machine", "method", "peak_method", "workers"} <= set(data["meta"])


def test_the_header_names_the_blas_backend_and_the_peak_as_rnnkit_info_does(lstm_bench, capsys):
    from conftest import run_cli

    proc, _ = lstm_bench
    header = proc.stdout.splitlines()
    backend = [line for line in header if line.startswith("BLAS backend: ")]
    assert len(backend) == 1 and "NumPy" in backend[0] and any(line.startswith("peak: ") for line in header)
    assert "lstm×2 bi" in proc.stdout
    code, out, _ = run_cli(["info"], capsys)
    assert code == 0 and backend[0] in out.splitlines()


def test_the_bench_ends_with_the_hosts_steal_time_over_each_librarys_turns_where_the_system_counts_it(lstm_bench):
    if machine.steal_seconds() is None:
        pytest.skip("this system does not count steal time")
    proc, data = lstm_bench
    ending = proc.stdout.splitlines()[-2:]
    assert any(line.startswith("host steal time over each library's turns (/proc/stat): rnnkit ") for line in ending)
    assert all(set(r["steal_ms"]) == {"rnnkit", "torch"} and all("steal_ms" in t for t in r["turns"])
               for r in data["results"])


def test_the_bench_ends_with_how_far_apart_the_cores_were_before_each_librarys_turns(lstm_bench):
    proc, data = lstm_bench
    measured = [t for r in data["results"] for t in r["turns"] if t["round_trip_ns"] is not None]
    if not measured:
        pytest.skip("no turn's distance measured here (no numba, one thread allowed, or the other core busy)")
    assert proc.stdout.splitlines()[-1].startswith("the two cores were far apart (a cache line's round trip of ")
    assert all("round_trip_ns" in t for r in data["results"] for t in r["turns"])


def test_bench_help_says_how_it_measures(capsys):
    from conftest import run_cli

    code, out, _ = run_cli(["bench", "--help"], capsys)
    flat = " ".join(out.split())
    assert code == 0 and "its own worker process" in flat and "take turns" in flat and "pinned to --threads" in flat
    assert "median" in flat and "peak %" in flat


def test_without_torch_the_bench_says_so_and_starts_only_an_rnnkit_worker(tmp_path):
    hide = tmp_path / "hide"
    hide.mkdir()
    (hide / "sitecustomize.py").write_text("import sys\nsys.modules['torch'] = None\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(hide), os.environ.get("PYTHONPATH", "")])}
    proc, data = _bench(tmp_path, "--cells", "rnn", env=env)
    assert [line for line in proc.stderr.splitlines() if "torch is not installed" in line]
    assert set(data["meta"]["workers"]) == {"rnnkit"} and "torch worker" not in proc.stdout
    assert all(r["torch_ms"] is None and r["ratio"] is None for r in data["results"])


def test_alternate_times_each_turn_once_per_round_in_order_in_the_worker(rnnkit_worker):
    cases = {k: {"cell": cell, "batch": 2, "hidden": 4, "steps": 3, "mode": "train"}
             for k, cell in (("base", "gru"), ("variant", "lngru"))}
    samples = list(alternate([(rnnkit_worker, "base"), (rnnkit_worker, "variant")], 2, 1, cases))
    assert [s["key"] for s in samples] == ["base", "variant"] * 2
    assert {s["pid"] for s in samples} == {rnnkit_worker.pid} != {os.getpid()}


def test_each_turn_carries_the_hosts_steal_time_over_it(rnnkit_worker, monkeypatch):
    readings = iter([10.0, 10.25, 10.25, 10.25, 10.25, 10.5, None, 11.0])  # seconds, as /proc/stat gives them
    monkeypatch.setattr("rnnkit.training.bench_processes.steal_seconds", lambda: next(readings))
    cases = {"base": {"cell": "gru", "batch": 2, "hidden": 4, "steps": 3, "mode": "train"}}
    samples = list(alternate([(rnnkit_worker, "base")], 4, 1, cases))
    assert [s["steal_ms"] for s in samples] == [250.0, 0.0, 250.0, None]


def test_the_steal_line_sums_each_librarys_turns_and_is_absent_where_the_system_does_not_count_steal():
    turn = {"start": 1.0, "end": 1.5}
    records = [{"steal_ms": {"rnnkit": 20.0, "torch": 0.0}, "turns": [turn, turn]},
               {"steal_ms": {"rnnkit": 10.0, "torch": 30.0}, "turns": [turn]}]
    line = bench.steal_line(records)
    assert "rnnkit 30 ms, torch 30 ms" in line and "took 1.5 s" in line
    assert bench.steal_line([{"steal_ms": {"rnnkit": None}}]) is None
    assert bench.steal_by_library([{"library": "rnnkit", "steal_ms": 5.0}, {"library": "rnnkit", "steal_ms": None},
                                   {"library": "torch", "steal_ms": 1.0}]) == {"rnnkit": None, "torch": 1.0}


def test_steal_seconds_reads_the_eighth_figure_of_the_cpu_line_in_clock_ticks(tmp_path):
    stat = tmp_path / "stat"
    stat.write_text("cpu  6492019 10433 651984 2752476 18196 0 4370 3155 0 0\ncpu0 1 2 3 4 5 6 7 8 9 10\n")
    assert machine.steal_seconds(str(stat)) == 3155 / os.sysconf("SC_CLK_TCK")
    stat.write_text("cpu  1 2 3 4\n")  # an old kernel without the steal column
    assert machine.steal_seconds(str(stat)) is None
    assert machine.steal_seconds(str(tmp_path / "absent")) is None


@pytest.mark.skipif(not (CAN_STOP and os.path.exists("/proc/self/stat")), reason="needs SIGSTOP and /proc")
def test_a_worker_is_stopped_between_its_requests(rnnkit_worker):
    rnnkit_worker.request("clear")
    state = Path(f"/proc/{rnnkit_worker.pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    assert state == "T"


def test_variants_are_timed_against_their_plain_cell_in_one_rnnkit_worker():
    meta = {}
    records = list(bench_variants.run(variants=("lnlstm",), batches=(2,), hiddens=(4,), steps=3, repeats=2,
                                      threads=1, kernels="numpy", meta=meta))
    assert [(r["variant"], r["base"], r["mode"]) for r in records] == [("lnlstm", "lstm", "train"),
                                                                         ("lnlstm", "lstm", "infer")]
    assert {r["pid"] for r in records} == {meta["workers"]["rnnkit"]} != {os.getpid()}
    assert all(r["ratio"] == pytest.approx(r["variant_ms"] / r["base_ms"]) for r in records)


def _rows(ms: float, ratio: float) -> list[dict]:
    return [{"cell": "lstm", "batch": 16, "hidden": 256, "steps": 100, "mode": "train", "rnnkit_ms": ms,
             "ratio": ratio}]


def test_bench_compare_prints_each_configuration_before_and_after_with_the_speedup(tmp_path):
    before, after = tmp_path / "a.json", tmp_path / "b.json"
    before.write_text(json.dumps({"meta": {}, "results": _rows(60.0, 0.5)}))
    after.write_text(json.dumps({"meta": {}, "results": _rows(20.0, 1.5)}))
    table = bench_compare.compare(bench_compare.load(before), bench_compare.load(after), ("v0.1", "now"))
    assert "| lstm | 16 | 256 | 100 | train | 60.00 (0.50) | 20.00 (1.50) | 3.00× |" in table.splitlines()
    script = Path(__file__).parents[1] / "benchmarks" / "bench_compare.py"
    proc = subprocess.run([sys.executable, str(script), str(before), str(after)], capture_output=True, text=True)
    assert proc.returncode == 0 and "3.00×" in proc.stdout


@pytest.mark.parametrize("content, message", [
    ("not json", "expected JSON"),
    ('{"results": []}', "non-empty 'results' list"),
    ('{"results": [{"cell": "lstm"}]}', "row 0 lacks batch"),
])
def test_bench_compare_refuses_a_file_that_is_not_a_bench_json_in_one_line(tmp_path, content, message):
    path = tmp_path / "x.json"
    path.write_text(content)
    with pytest.raises(DataError) as info:
        bench_compare.load(path)
    assert message in str(info.value) and len(str(info.value).splitlines()) == 1


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_a_call_that_runs_as_a_team_is_measured_without_loading_the_teams_code(cell, monkeypatch):
    """Teams add no array, so a training call measures the same with and without them: the worker loads the
    team's compiled loop (numba compiles it apart from the plain loop) before it measures. Both measuring processes
    load the kernels from numba's disk cache: the first call after compiling them measured up to 1.9 MiB less than
    after loading them (LSTM here, an empty cache), so a throwaway measurement fills the cache first."""
    pytest.importorskip("numba")
    from rnnkit.kernels import blas

    if blas.packs_shares("float32"):
        pytest.skip("on MKL a team's second thread holds MKL's own work buffers (2.5 – 3.4 MiB more at B = 16, "
                    "H = 256, T = 50): the bench's peak-memory column compares the call with torch's there")
    case = {"cell": cell, "hidden": 256, "batch": 16, "steps": 50, "layers": 1, "bidirectional": False}
    monkeypatch.setenv("RNNKIT_PIPELINES", "never")  # a pipeline holds W_ihᵀ's panels (rnnkit.kernels.ahead)
    monkeypatch.setenv("RNNKIT_TEAMS", "always")
    bench.memory_in_subprocess("rnnkit", case, threads=2)  # compiles the plain and the team loop where not cached
    measured = {}
    for choice in ("always", "never"):
        monkeypatch.setenv("RNNKIT_TEAMS", choice)
        measured[choice] = bench.memory_in_subprocess("rnnkit", case, threads=2)
    if None in measured.values():
        pytest.skip("this kernel does not report peak memory")
    assert abs(measured["always"] - measured["never"]) <= 2**20


def test_each_turn_carries_how_far_apart_the_cores_were_before_it(rnnkit_worker, monkeypatch):
    readings = iter([60.0, 330.0, None])
    monkeypatch.setattr("rnnkit.training.bench_processes.cores_round_trip_ns", lambda: next(readings))
    cases = {"base": {"cell": "gru", "batch": 2, "hidden": 4, "steps": 3, "mode": "train"}}
    samples = list(alternate([(rnnkit_worker, "base")], 3, 1, cases))
    assert [s["round_trip_ns"] for s in samples] == [60.0, 330.0, None]


def test_the_distance_line_counts_each_librarys_turns_with_the_cores_far_apart_and_is_absent_where_none_measured():
    pytest.importorskip("numba", reason="the distance is measured with compiled code")
    turns = [{"library": "rnnkit", "round_trip_ns": 60.0}, {"library": "torch", "round_trip_ns": 330.0},
             {"library": "rnnkit", "round_trip_ns": 400.0}, {"library": "torch", "round_trip_ns": None}]
    line = bench.distance_line([{"turns": turns}])
    assert "before 1 of 2 rnnkit turns, 1 of 1 torch turns" in line
    assert bench.distance_line([{"turns": [{"library": "rnnkit", "round_trip_ns": None}]}, {}]) is None


def test_input_size_sets_the_one_layer_rows_input_its_label_and_its_gemm_flops(tmp_path):
    proc, data = _bench(tmp_path, "--cells", "rnn", "--input-size", "3", "--no-torch")
    (train,) = [r for r in data["results"] if r["mode"] == "train"]
    assert train["input"] == 3 and train["hidden"] == 4
    assert train["gflop"] * 1e9 == pytest.approx(bench.gemm_flops(1, 4, 2, 3, "train", input_size=3))
    assert "rnn i3" in proc.stdout


def test_the_grid_keeps_the_two_layer_bidirectional_row_as_wide_as_its_state():
    cases = bench.grid(("lstm",), (2,), (8,), 3, (4, 16), input_size=5)
    assert [(c["layers"], c["input"], c["hidden"]) for c in cases] == [(1, 5, 8), (2, 16, 16)]
    assert bench.label(cases[0]) == "lstm i5" and bench.label(cases[1]) == "lstm×2 bi"


@pytest.mark.skipif(torch is None, reason="torch is not installed")
def test_both_libraries_build_the_layer_of_a_narrow_input_row():
    from rnnkit.training.bench_worker import build_layer, inputs, torch_twin

    case = {"cell": "lstm", "batch": 2, "hidden": 8, "input": 3, "steps": 4, "layers": 1, "bidirectional": False}
    layer, (x, dy) = build_layer(case), inputs(case)
    assert layer.input_size == 3 and x.shape == (2, 4, 3) and dy.shape == (2, 4, 8)
    assert torch_twin(layer, case).input_size == 3


def test_input_size_with_variants_is_refused_in_one_line(capsys):
    from conftest import run_cli

    code, _, err = run_cli(["bench", "--variants", "--input-size", "8"], capsys)
    assert code == 2 and "--input-size" in err and len(err.strip().splitlines()) == 1

"""The machine report: BLAS kernel against the CPU's vector width, and when a wider OpenBLAS kernel is safe."""

import numpy as np  # noqa: F401  (the BLAS is loaded before it is inspected)

from rnnkit import machine

AVX512 = frozenset({"sse2", "avx", "avx2", "avx512f", "avx512bw", "avx512dq", "avx512vl", "avx512cd"})


def test_cpu_flags_are_read_from_cpuinfo(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx avx2 fma\n\nprocessor\t: 1\nflags\t\t: fpu\n")
    flags = machine.cpu_flags(info)
    assert {"avx2", "fma"} <= flags and machine.cpu_vector_bits(flags) == 256
    assert machine.cpu_flags(tmp_path / "missing") == frozenset()


def test_vector_width_of_the_cpu():
    assert machine.cpu_vector_bits(AVX512) == 512
    assert machine.cpu_vector_bits(frozenset({"sse2"})) == 128
    assert machine.cpu_vector_bits(frozenset()) is None


def test_skylakex_is_recommended_only_when_openblas_is_narrower_and_the_cpu_has_every_extension():
    haswell = {"library": "openblas", "kernel": "Haswell"}
    assert machine.recommended_coretype(AVX512, haswell) == "SkylakeX"
    assert machine.recommended_coretype(AVX512, {"library": "openblas", "kernel": "SkylakeX"}) is None
    assert machine.recommended_coretype(AVX512 - {"avx512vl"}, haswell) is None  # not safe
    assert machine.recommended_coretype(AVX512, {"library": "mkl", "kernel": None}) is None  # not OpenBLAS


def test_a_coretype_chosen_by_the_user_is_never_overridden():
    assert machine.environment_with_best_blas({"OPENBLAS_CORETYPE": "Haswell"}) is None
    assert machine.environment_with_best_blas({"RNNKIT_BLAS_AUTO": "0"}) is None


def test_report_names_the_blas_the_cpu_and_the_step_kernels():
    lines = machine.report()
    assert lines[0].startswith("BLAS: ") and "kernel" in lines[0]
    assert lines[1].startswith("CPU vector width: ")
    assert lines[2].startswith("step kernels: ")


def test_info_command_prints_the_versions_and_the_machine_report(capsys):
    from conftest import run_cli

    code, out, err = run_cli(["info"], capsys)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("rnnkit ") and "NumPy" in lines[0]
    assert any(line.startswith("BLAS: ") for line in lines) and any("step kernels" in line for line in lines)

"""The shared pieces of the compiled kernels: the numba options and typed helpers (tanh, σ, constants) that keep
float32 arithmetic in float32 and let LLVM vectorize. See `rnnkit.kernels.compiled` for how kernels are written."""

from __future__ import annotations

import numba
import numpy as np
from llvmlite import ir as llvm_ir
from numba import types
from numba.core.dispatcher import Dispatcher
from numba.core.imputils import impl_ret_borrowed
from numba.core.registry import CPUDispatcher
from numba.extending import intrinsic, overload

from ..errors import UsageError
from . import cache, inlining

cache.install()  # before the first cached kernel is defined
inlining.install()  # before the first kernel compiles


def njit(*function, **options):
    """numba's ``njit`` with rnnkit's options (``@njit(**JIT)``, ``@njit(**INNER)``, …), for every kernel of rnnkit
    and the generated ones of `rnnkit.define`: a function cached on disk (``cache=True``) saves its entries under the
    cache directory's file lock (`rnnkit.kernels.cache.lock_saves`), and one compiled without a Python entry
    (`INNER`) refuses calls from Python (`CompiledOnly`). With ``NUMBA_DISABLE_JIT`` numba returns the Python
    function itself, which stays as it is."""
    def compiled(python_function):
        dispatcher = cache.lock_saves(numba.njit(**options)(python_function))
        if options.get("no_cpython_wrapper") and isinstance(dispatcher, Dispatcher):
            if type(dispatcher) is not CPUDispatcher:  # a numba whose functions this guard does not know
                raise RuntimeError(f"{python_function.__qualname__}: numba made a {type(dispatcher).__name__}, not "
                                   "the CPUDispatcher whose calls from Python rnnkit can refuse")
            dispatcher.__class__ = CompiledOnly
        return dispatcher
    return compiled(*function) if function else compiled


class CompiledOnly(CPUDispatcher):
    """A numba function compiled without its Python entry (`INNER`): compiled functions call it as any other, and
    a call from Python raises `rnnkit.errors.UsageError`, where numba's dispatcher would jump to the entry it never
    compiled and crash the interpreter."""

    def __call__(self, *args, **kwargs):
        function = self.py_func
        raise UsageError(f"{function.__module__}.{function.__qualname__} is called from compiled kernels only "
                         "(it has no Python entry); call the kernel that uses it")


#: Fast-math only where it cannot change a finite result (no NaN, no infinity, no signed zero): LLVM may not fuse
#: a·b + c or reassociate sums on its own, because whether it does depends on the context a function is optimised
#: in, and numba keeps several compiled copies of a helper (its own, one inside each caller's cached code) and
#: binds a call to whichever was loaded first — with ``fastmath=True`` a kernel compiled in this process and the
#: same kernel loaded from the disk cache differed in the last bits (LSTM: c = f·c + i·g fused on either product).
#: Where a fused multiply-add pays, the code says so (`muladd`); sums over a row are `row_sum` and `row_dot` (`REDUCE`).
#: No C-callable wrapper (``no_cfunc_wrapper``): numba writes one around every function so that it can be passed
#: to compiled code as a first-class value, which no kernel does (a loop's step reaches the inlined skeleton by
#: name, `rnnkit.kernels.sequence_loop`); each was 8% of an entry's code.
JIT = {"fastmath": {"nnan", "ninf", "nsz"}, "error_model": "numpy", "cache": True, "nogil": True,
       "no_cfunc_wrapper": True}
#: a kernel that only other kernels call (a row's loop, a product, σ): compiled without numba's Python entry, the
#: wrapper that unboxes Python arguments, which is compiled with every function and is as large as a small one;
#: without both wrappers a first use compiles 10 – 15% faster (LSTM(8, 16)'s first forward and backward 8.2 → 7.3 s,
#: the Mogrifier's 11.8 → 10.7, means of three runs in turns). A call from Python raises (`CompiledOnly`).
INNER = {**JIT, "no_cpython_wrapper": True}
#: glue between kernels (a part's units, its column blocks, gate views, the barrier) and each family's loop steps,
#: which only its cached entries call: inlined into the caller at numba's IR level, never compiled on their own.
#: A function compiled on its own is optimised again inside every caller: with them, the LSTM's first forward and
#: backward took 13.2–16.7 s to compile; inlined, 10.9–11.6 s
GLUE = {**JIT, "cache": False, "inline": "always"}

_CLAMP = np.float32(7.90531110763549805)
_P = tuple(np.float32(c) for c in (4.89352455891786e-03, 6.37261928875436e-04, 1.48572235717979e-05,
                                   5.12229709037114e-08, -8.60467152213735e-11, 2.00018790482477e-13,
                                   -2.76076847742355e-16))
_Q = tuple(np.float32(c) for c in (4.89352518554385e-03, 2.26843463243900e-03, 1.18534705686654e-04,
                                   1.19825839466702e-06))
#: e^x for float32 (Cephes' ``expf``): x = n ln 2 + r, |r| ≤ ½ ln 2, ln 2 in two parts so that n ln 2 is exact to
#: float32's precision, e^r = 1 + r + r² P(r), then the scale 2^n
_LOG2E = np.float32(1.44269504088896341)
_LN2_HIGH, _LN2_LOW = np.float32(0.693359375), np.float32(-2.12194440e-4)
_EXP_P = tuple(np.float32(c) for c in (1.9875691500e-4, 1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2,
                                       1.6666665459e-1, 5.0000001201e-1))
#: x clamped into [−104, 89] first (no branch): e^{−104} is under half the smallest subnormal float32 and rounds to 0;
#: from x = 88.73 e^x is over the largest float32 — an overflow, ∞ in IEEE arithmetic, but the kernels' fast-math
#: flags (`JIT`) assume finite results, so no kernel may rely on it
_EXP_MIN, _EXP_MAX = np.float32(-104.0), np.float32(89.0)
#: log x for float32 (Cephes' ``logf``): x = m 2^e with m in [√½, √2), log m = f − f²/2 + f³ Q(f) for f = m − 1, Q
#: of degree 8, plus e ln 2 with ln 2 in the same two parts as e^x's; subnormal x scaled by 2^25 first
_LOG_Q = tuple(np.float32(c) for c in (7.0376836292e-2, -1.1514610310e-1, 1.1676998740e-1, -1.2420140846e-1,
                                       1.4249322787e-1, -1.6668057665e-1, 2.0000714765e-1, -2.4999993993e-1,
                                       3.3333331174e-1))
_SQRT_HALF = np.float32(0.707106781186547524)
_SUBNORMAL_SCALE, _SUBNORMAL_SHIFT = np.float32(2.0 ** 25), np.float32(25.0)
_TINY32 = np.float32(np.finfo(np.float32).tiny)
_ZERO32, _ONE32, _HALF32 = np.float32(0.0), np.float32(1.0), np.float32(0.5)
_ZERO64, _ONE64, _HALF64 = np.float64(0.0), np.float64(1.0), np.float64(0.5)


@intrinsic
def muladd(typingctx, a, b, c):
    """a·b + c for three floats of one type, rounded once where the CPU has fused multiply-add instructions, else a
    multiply and an add (LLVM's ``llvm.fmuladd``: the choice is the CPU's, the same in every compiled copy, where
    ``fastmath`` contraction is the optimiser's, made anew in each context; a CPU without them gets no slow
    library ``fma``)."""
    if isinstance(a, types.Float) and a == b == c:
        def codegen(context, builder, signature, args):
            kind = args[0].type
            fmuladd = builder.module.declare_intrinsic("llvm.fmuladd", [kind], llvm_ir.FunctionType(kind, [kind] * 3))
            return builder.call(fmuladd, args)
        return a(a, b, c), codegen
    return None


@intrinsic
def unliteral(typingctx, value):
    """``value`` typed as a variable, not as the constant it may be: numba types a constant argument by its value
    (``Literal[bool](True)``) and compiles a function once per constant it is called with, so a flag passed as
    True at one call and False at another costs a second compile of the callee and of everything below it.
    Passed through ``unliteral``, both calls take one compiled copy."""
    kind = types.unliteral(value)

    def codegen(context, builder, signature, args):
        return context.cast(builder, args[0], signature.args[0], kind)
    return kind(value), codegen


@intrinsic
def any_layout(typingctx, array):
    """``array`` typed with numba's layout "A" (any strides), the same array: numba types an array by its layout —
    "C", "F" (a transposed view), "A" — and compiles a function once per combination of its arguments' layouts.
    A kernel that only passes its arrays' addresses and strides on (a BLAS call, a product on panels) takes them
    through ``any_layout``: one compiled copy for every layout (the BLAS's product had 13 in the test suite, two
    in a GRU's first use)."""
    if not isinstance(array, types.Array):
        return None
    kind = array.copy(layout="A")

    def codegen(context, builder, signature, args):  # a new reference to the argument's memory, as a view's
        return impl_ret_borrowed(context, builder, kind, context.cast(builder, args[0], signature.args[0], kind))
    return kind(array), codegen


@njit(**INNER)
def _tanh32(x):
    x = min(max(x, -_CLAMP), _CLAMP)
    x2 = x * x
    p = muladd(muladd(muladd(_P[6], x2, _P[5]), x2, _P[4]), x2, _P[3])  # Horner in x²
    p = muladd(muladd(muladd(p, x2, _P[2]), x2, _P[1]), x2, _P[0]) * x
    q = muladd(muladd(muladd(_Q[3], x2, _Q[2]), x2, _Q[1]), x2, _Q[0])
    return p / q


@intrinsic
def _pow2(typingctx, n):
    """2^n for a float32 ``n`` that holds an integer in [−126, 127]: n + 127 written into the exponent field (no
    library call, so a loop of them vectorizes)."""
    if isinstance(n, types.Float) and n.bitwidth == 32:
        def codegen(context, builder, signature, args):
            i32 = llvm_ir.IntType(32)
            biased = builder.add(builder.fptosi(args[0], i32), i32(127))
            return builder.bitcast(builder.shl(biased, i32(23)), llvm_ir.FloatType())
        return types.float32(n), codegen
    return None


@intrinsic
def _frexp32(typingctx, x):
    """(m, e) with x = m 2^e, m in [½, 1) and e a float32 holding an integer, for a normal positive float32 ``x``:
    the exponent field read, and replaced by that of ½ (no library call, so a loop of them vectorizes)."""
    if isinstance(x, types.Float) and x.bitwidth == 32:
        def codegen(context, builder, signature, args):
            i32, f32 = llvm_ir.IntType(32), llvm_ir.FloatType()
            bits = builder.bitcast(args[0], i32)
            exponent = builder.sub(builder.lshr(bits, i32(23)), i32(126))  # the sign bit is 0 for x > 0
            mantissa = builder.or_(builder.and_(bits, i32(0x007FFFFF)), i32(0x3F000000))
            pair = (builder.bitcast(mantissa, f32), builder.sitofp(exponent, f32))
            return context.make_tuple(builder, signature.return_type, pair)
        return types.UniTuple(types.float32, 2)(x), codegen
    return None


@njit(**INNER)
def _log32(x):
    subnormal = x < _TINY32
    m, e = _frexp32(x * _SUBNORMAL_SCALE if subnormal else x)
    e = e - _SUBNORMAL_SHIFT if subnormal else e
    below = m < _SQRT_HALF  # m into [√½, √2): f = m − 1 small on both sides of x = 1
    f = (m + m if below else m) - _ONE32
    e = e - _ONE32 if below else e
    q = _LOG_Q[0]
    for c in _LOG_Q[1:]:
        q = muladd(q, f, c)
    f2 = f * f
    y = muladd(e, _LN2_LOW, q * f * f2) - _HALF32 * f2
    return muladd(e, _LN2_HIGH, f + y)


@njit(**INNER)
def _exp32(x):
    x = min(max(x, _EXP_MIN), _EXP_MAX)  # no branch: a loop with several e^x still vectorizes
    n = np.floor(muladd(x, _LOG2E, _HALF32))  # the integer nearest to x / ln 2, in [−150, 128]
    r = muladd(n, -_LN2_LOW, muladd(n, -_LN2_HIGH, x))
    p = muladd(muladd(muladd(_EXP_P[0], r, _EXP_P[1]), r, _EXP_P[2]), r, _EXP_P[3])
    p = muladd(muladd(p, r, _EXP_P[4]), r, _EXP_P[5])
    half_n = np.floor(n * _HALF32)  # 2^n in two normal factors: n alone may leave float32's exponent range
    return (muladd(p, r * r, r) + _ONE32) * _pow2(half_n) * _pow2(n - half_n)


def exp(x):  # pragma: no cover - replaced by the overload inside compiled code
    """e^x in the precision of ``x`` (a polynomial for float32, which vectorizes; libm for float64), for x whose
    e^x is finite."""


def log(x):  # pragma: no cover - replaced by the overload inside compiled code
    """log x in the precision of ``x`` (a polynomial for float32, which vectorizes; libm for float64), for x > 0."""


def tanh(x):  # pragma: no cover - replaced by the overload inside compiled code
    """tanh in the precision of ``x`` (rational float32 approximation, libm for float64)."""


def one(x):  # pragma: no cover - replaced by the overload inside compiled code
    """1 in the type of ``x``."""


def half(x):  # pragma: no cover - replaced by the overload inside compiled code
    """½ in the type of ``x``."""


def zero(x):  # pragma: no cover - replaced by the overload inside compiled code
    """0 in the type of ``x`` (a float, or an array's element type)."""


def like(x, value):  # pragma: no cover - replaced by the overload inside compiled code
    """``value`` (a number) in the floating type of ``x`` (float32 for float32, float64 otherwise): a constant that
    does not promote float32 arithmetic to float64 (compiled kernels, the generated ones of `rnnkit.define` too)."""


def _is32(x) -> bool:
    """Whether ``x`` (a numba type: a float or an array of floats) is float32."""
    x = getattr(x, "dtype", x)
    return isinstance(x, types.Float) and x.bitwidth == 32


@overload(tanh, jit_options=JIT)
def _tanh_overload(x):
    if _is32(x):
        return lambda x: _tanh32(x)
    return lambda x: np.tanh(x)


@overload(exp, jit_options=JIT)
def _exp_overload(x):
    if _is32(x):
        return lambda x: _exp32(x)
    return lambda x: np.exp(x)


@overload(log, jit_options=JIT)
def _log_overload(x):
    if _is32(x):
        return lambda x: _log32(x)
    return lambda x: np.log(x)


@overload(one, jit_options=JIT)
def _one_overload(x):
    if _is32(x):
        return lambda x: _ONE32
    return lambda x: _ONE64


@overload(zero, jit_options=JIT)
def _zero_overload(x):
    if _is32(x):
        return lambda x: _ZERO32
    return lambda x: _ZERO64


@overload(half, jit_options=JIT)
def _half_overload(x):
    if _is32(x):
        return lambda x: _HALF32
    return lambda x: _HALF64


@overload(like, jit_options=JIT)
def _like_overload(x, value):
    if _is32(x):
        return lambda x, value: np.float32(value)
    return lambda x, value: np.float64(value)


@njit(**INNER)
def sigmoid(a):
    """σ(a) = ½ tanh(a/2) + ½."""
    return muladd(half(a), tanh(half(a) * a), half(a))


@njit(**INNER)
def dsigmoid(y):
    """σ'(a) = y (1 − y) from y = σ(a)."""
    return y * (one(y) - y)


@njit(**INNER)
def dtanh(y):
    """tanh'(a) = 1 − y² from y = tanh(a)."""
    return one(y) - y * y


@njit(**INNER)
def gru_gate_grads(dh, r, z, n, h_prev, inner, lecture):
    """One unit of a GRU step's backward (reset after): δa_n = δh (1 − z)(1 − n²), δa_z = δh (h_{t−1} − n) z(1 − z)
    — with the ``lecture``'s update gate, h_t = h_{t−1} + z (n − h_{t−1}): δa_n = δh z (1 − n²), δa_z = δh (n −
    h_{t−1}) z(1 − z) —, δa_r = δa_n · inner · r(1 − r), inner = the recurrent n-projection; returns (δa_r, δa_z,
    δa_n)."""
    da_n = dh * (z if lecture else one(z) - z) * dtanh(n)
    da_z = dh * ((n - h_prev) if lecture else (h_prev - n)) * dsigmoid(z)
    return da_n * inner * dsigmoid(r), da_z, da_n


@njit(**INNER)
def gru_mix(z, n, h_prev, lecture):
    """h_t of one GRU unit: n + z (h_{t−1} − n) (PyTorch's update gate), or h_{t−1} + z (n − h_{t−1}) (the
    lecture's), in the order of `rnnkit.recurrent.gru.gru_output`."""
    return h_prev + z * (n - h_prev) if lecture else n + z * (h_prev - n)


#: a sum over one row may be reassociated (and its products fused), so that LLVM vectorizes it: the loop is the
#: whole function, so the vector width and the number of running sums come from the loop and the CPU alone and
#: every compiled copy adds in the same order (`tests/test_kernel_determinism.py` holds this to the bit)
REDUCE = {**INNER, "fastmath": JIT["fastmath"] | {"reassoc", "contract"}}


@njit(**REDUCE)
def row_sum(v):
    """Σ_j v[j] over a 1-D array."""
    s = zero(v)
    for j in range(v.shape[0]):
        s += v[j]
    return s


@njit(**REDUCE)
def row_dot(a, b):
    """Σ_j a[j]·b[j] over two 1-D arrays of one length."""
    s = zero(a)
    for j in range(a.shape[0]):
        s += a[j] * b[j]
    return s

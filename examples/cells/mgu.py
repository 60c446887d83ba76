"""MGU: the Minimal Gated Unit (Zhou et al. 2016), one gate f for both forgetting and resetting.

The paper resets before the recurrent product, h̃ = tanh(W_h (f⊙h₋₁) + U_h x); one GEMM per step (the scope of
rnnkit.define) gives the reset-after form that cuDNN uses for its GRU: h̃ = tanh(U_h x + f⊙(W_h h₋₁ + b)).

    rnnkit train text --data corpus.txt --cell-file examples/cells/mgu.py:MGU
"""

from rnnkit.define import cell

MGU = cell("mgu", gates="f n", states="h", equations="""
    f = σ(a_f)
    n = tanh(ax_n + f⊙ah_n)
    h = (1 − f)⊙h₋₁ + f⊙n
""")

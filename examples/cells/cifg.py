"""CIFG: the LSTM with coupled input and forget gates, f = 1 − i (Greff et al. 2017, "LSTM: A Search Space
Odyssey", variant CIFG). Three gate blocks instead of four: i, g, o.

    rnnkit train text --data corpus.txt --cell-file examples/cells/cifg.py:CIFG
    rnnkit derive examples/cells/cifg.py:CIFG
"""

from rnnkit.define import cell

CIFG = cell("cifg", gates="i g o", states="h c", equations="""
    i = σ(a_i)
    g = tanh(a_g)
    c = (1 − i)⊙c₋₁ + i⊙g      # the forget gate is 1 − i
    o = σ(a_o)
    h = o⊙tanh(c)
""")

"""JANET: "just another network", the forget-gate-only LSTM (van der Westhuizen & Lasenby 2018, eq. 6) with
β = 1 and the cell state as the output (h = c).

    s = a_f,   c = σ(s)⊙c₋₁ + (1 − σ(s − β))⊙tanh(a_c)

    rnnkit train text --data corpus.txt --cell-file examples/cells/janet.py:JANET
"""

from rnnkit.define import cell

JANET = cell("janet", gates="f c", states="h", equations="""
    f = σ(a_f)
    k = σ(a_f − 1)            # β = 1
    g = tanh(a_c)
    h = f⊙h₋₁ + (1 − k)⊙g
""")

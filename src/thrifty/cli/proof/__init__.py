"""The end-to-end proof: a labelled, SaaS-like mix sent all-frontier and direct, then through
Thrifty with every lever on; cost, quality per cohort and each lever's saving.

`mix` builds the mix from the shared data and scores answers against its labels, `run` drives it
through real `thrifty emulate` and `thrifty serve` processes and assembles the report, `report`
prints it. `bench/e2e.py` is the full-size command line; `thrifty demo` runs a short form.
"""

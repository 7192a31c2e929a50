"""The studies: Python programs that read top to bottom as their stages (train these models,
compress them, time them, write the CSV and plot), driven by the stock fairseq CLIs,
``fairseq-compress`` and the one-stage pipelines of ``scripts/``, so they run from a checkout.
Their recipes live in ``configs/``, a full one and a smoke one per study. They sit inside the
package (not in a top-level ``studies/``) so that they import it, and it them, with no sys.path games.
"""

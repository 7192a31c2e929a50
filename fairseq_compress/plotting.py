"""matplotlib for the sweeps' and studies' plots: headless, and quiet in a process that imported fairseq."""
import logging


def pyplot():
    """matplotlib.pyplot on the Agg backend. fairseq's import leaves the root logger at DEBUG, and matplotlib
    logs its set-up at DEBUG as it is imported: its logger goes to WARNING first."""
    logging.getLogger("matplotlib").setLevel(logging.WARNING)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt

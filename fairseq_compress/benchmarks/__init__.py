"""The speed and size measurements quoted on the topic pages, each run as
``python -m fairseq_compress.benchmarks.NAME``: they print ratios measured in one run, the contenders
alternating, so machine noise hits all alike (never timed tests: the machines are shared)."""

"""Offline compression and export code behind the ``fairseq-compress`` command."""

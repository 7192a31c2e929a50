"""The builders of the shipped corpus in data-bin/raw (scripts/make_corpus.sh): standard library only, run by
path with any python3 (``python3 fairseq_compress/corpus/build_en_fr.py``), so that a machine without the venv
rebuilds the corpus; each imports its neighbours from its own folder. Nothing here is imported with the plugin."""

"""The Python steps of the bash pipelines of scripts/ (sentencepiece, sacreBLEU, GLUE TSVs, WMT14 text,
CTranslate2 translation, JSON fields for bash's `read`), run by path: ``"$PY" "$USER_DIR/pipelines/spm.py"``.
Run so, a step imports no more than it needs (all but ct2_translate.py import nothing of the plugin, which
would import fairseq: 3 s a call, and eval_bleu.sh makes three calls)."""

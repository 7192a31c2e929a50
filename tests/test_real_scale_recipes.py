"""prepare_wmt14_en_fr.sh and prepare_pretraining_corpus.sh on small local files in
the real layouts (statmt WMT14 archives, one-sentence-a-line dumps), feeding the
same training pipelines as the shipped corpus."""
import gzip

from conftest import RAW, one_line_error, run, script


def shipped_lines(name, start, n):
    with gzip.open(RAW / name, "rt", encoding="utf-8") as f:
        return [line.rstrip("\n") for line in f][start:start + n]


def write(path, lines, compress=False):
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "".join(line + "\n" for line in lines)
    if compress:
        with gzip.open(f"{path}.gz", "wt", encoding="utf-8") as f:
            f.write(text)
    else:
        path.write_text(text, encoding="utf-8")


def write_sgm(path, segments, kind):
    body = "".join(f'<seg id="{i}"> {s} </seg>\n' for i, s in enumerate(segments, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f'<{kind} setid="newstest2014" srclang="any">\n<doc sysid="x" docid="d1" origlang="en">\n'
                    f'<p>\n{body}</p>\n</doc>\n</{kind}>\n', encoding="utf-8")


def clean_pairs(n):
    """n shipped pairs that Moses' clean-corpus-n (1-60 words a side, ratio <= 1.5) keeps."""
    pairs = zip(shipped_lines("en_fr/train.en.gz", 0, 4 * n), shipped_lines("en_fr/train.fr.gz", 0, 4 * n))
    lengths = lambda pair: sorted(len(side.split()) for side in pair)  # noqa: E731
    kept = [pair for pair in pairs if 1 <= lengths(pair)[0] and lengths(pair)[1] <= min(60, 1.5 * lengths(pair)[0])]
    return [en for en, _ in kept[:n]], [fr for _, fr in kept[:n]]


def wmt_layout(root):
    """Two training corpora (one gzipped) with pairs the cleaning must drop, dev and sgm test sets."""
    en, fr = clean_pairs(500)
    dropped = [("", "une phrase"), ("word " * 70, "mot " * 70), ("one two three four", "un " * 9)]
    write(root / "training/europarl-v7.fr-en.en", en[:300] + [d[0] for d in dropped])
    write(root / "training/europarl-v7.fr-en.fr", fr[:300] + [d[1] for d in dropped])
    write(root / "commoncrawl.fr-en.en", en[300:], compress=True)
    write(root / "commoncrawl.fr-en.fr", fr[300:], compress=True)
    write(root / "dev/newstest2013.en", shipped_lines("en_fr/valid.en.gz", 0, 40))
    write(root / "dev/newstest2013.fr", shipped_lines("en_fr/valid.fr.gz", 0, 40))
    test_en, test_fr = shipped_lines("en_fr/test.en.gz", 0, 30), shipped_lines("en_fr/test.fr.gz", 0, 30)
    write_sgm(root / "test-full/newstest2014-fren-src.en.sgm", test_en, "srcset")
    write_sgm(root / "test-full/newstest2014-fren-ref.fr.sgm", test_fr, "refset")
    return test_fr


def test_prepare_wmt14_layout_feeds_train_mt(tmp_path):
    test_fr = wmt_layout(tmp_path / "wmt")
    out = tmp_path / "wmt14_en_fr"
    prepare = script("prepare_wmt14_en_fr.sh") + [tmp_path / "wmt", out, "--vocab-size", "300", "--max-len", "60"]
    result = run(prepare)
    assert "kept 500 of 503 pairs" in result.stderr
    text = tmp_path / "wmt14_en_fr.text"
    assert len((text / "train.en").read_text().splitlines()) == len((text / "train.fr").read_text().splitlines()) == 500
    assert (text / "test.fr").read_text().splitlines() == [" ".join(s.split()) for s in test_fr]
    assert (out / "raw/test.fr").read_text() == (text / "test.fr").read_text()
    for name in ("spm.model", "dict.en.txt", "train.en-fr.en.bin", "valid.en-fr.fr.idx", "test.en-fr.en.bin"):
        assert (out / name).exists(), name
    assert run(prepare).stderr.count("up to date") == 2
    run(script("train_mt.sh") + [out, tmp_path / "ckpt", "--arch", "transformer_l2_h128", "--max-update", "2",
                                 "--max-tokens", "1024"])
    assert (tmp_path / "ckpt/checkpoint_last.pt").exists()


def test_prepare_wmt14_bad_inputs(tmp_path):
    (tmp_path / "empty").mkdir()
    one_line_error(run(script("prepare_wmt14_en_fr.sh") + [tmp_path / "empty", tmp_path / "out"], check=False),
                   "WMT_DIR", "training/europarl-v7.fr-en.en")
    wmt_layout(tmp_path / "wmt")
    (tmp_path / "wmt/test-full/newstest2014-fren-ref.fr.sgm").unlink()
    one_line_error(run(script("prepare_wmt14_en_fr.sh") + [tmp_path / "wmt", tmp_path / "out"], check=False),
                   "newstest2014-fren-ref.fr.sgm")
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.text").exists()


def test_prepare_pretraining_corpus_feeds_pretrain_mlm(tmp_path):
    lines = shipped_lines("en/train.txt.gz", 0, 600)
    write(tmp_path / "wiki.txt", lines[:400] + ["", "   "])
    write(tmp_path / "books.txt", lines[400:], compress=True)
    out = tmp_path / "corpus"
    prepare = script("prepare_pretraining_corpus.sh") + [tmp_path / "wiki.txt", tmp_path / "books.txt.gz", out,
                                                         "--valid-lines", "20", "--vocab-size", "300"]
    run(prepare)
    train = (tmp_path / "corpus.text/train.txt").read_text().splitlines()
    valid = (tmp_path / "corpus.text/valid.txt").read_text().splitlines()
    assert len(valid) == 20 and valid[0] == lines[29] and valid[-1] == lines[599]  # every 30th of 600 lines
    assert sorted(train + valid) == sorted(line for line in lines if line.strip())
    for name in ("spm.model", "dict.txt", "train.bin", "valid.idx"):
        assert (out / name).exists(), name
    assert run(prepare).stderr.count("up to date") == 2
    run(script("pretrain_mlm.sh") + [out, tmp_path / "ckpt", "--arch", "roberta_l2_h128", "--max-update", "2",
                                     "--max-tokens", "1024"])
    assert (tmp_path / "ckpt/checkpoint_last.pt").exists()


def test_prepare_pretraining_corpus_bad_inputs(tmp_path):
    one_line_error(run(script("prepare_pretraining_corpus.sh") + [tmp_path / "nope.txt", tmp_path / "out"],
                       check=False), "nope.txt")
    write(tmp_path / "small.txt", ["a sentence"] * 30)
    one_line_error(run(script("prepare_pretraining_corpus.sh") + [tmp_path / "small.txt", tmp_path / "out",
                                                                  "--valid-lines", "20"], check=False),
                   "--valid-lines 20", "30")
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.text").exists()

"""Sentence- and word-pair sets from gensim's test data (asset ``gensim-testdata``).

* ``gensim_lee``: the Lee news corpus: ``lee.cor`` (50 documents, one per line, latin-1) and
  ``similarities0-1.txt`` (50 x 50 mean human ratings, 0-1, stored as an upper triangle with
  ones on the diagonal).  Pairs are the 1,225 cells above the diagonal.
* ``gensim_simlex`` / ``gensim_wordsim``: SimLex-999 and WordSim-353 word pairs
  (``word1 <tab> word2 <tab> mean score``, ``#`` comment lines).
"""

from __future__ import annotations

from pathlib import Path

from .base import DataError, Pair, Source, asset_dir, pair_text, parse_score, register

ASSET = "gensim-testdata"
LEE_DOCS = 50


def read_lee(assets_root="resources/assets") -> list[Pair]:
    """The 1,225 Lee document pairs (i < j) with their mean human similarity ratings."""
    d, prefix = asset_dir(ASSET, assets_root)
    docs = (d / "lee.cor").read_bytes().decode("latin-1").splitlines()  # the corpus is latin-1 (a £ sign)
    if len(docs) != LEE_DOCS or not all(x.strip() for x in docs):
        raise DataError(f"{d / 'lee.cor'}: expected {LEE_DOCS} non-empty documents (one per line), got "
                        f"{sum(1 for x in docs if x.strip())} of {len(docs)} lines")
    rows = []
    for r, line in enumerate((d / "similarities0-1.txt").read_text(encoding="ascii").splitlines()):
        cells = line.split()
        if not cells:
            continue
        rows.append([parse_score(c, f"{prefix}similarities0-1.txt row {r} column {k}", f"column {k}")
                     for k, c in enumerate(cells)])
    n = len(rows)
    if n != LEE_DOCS or any(len(x) != LEE_DOCS for x in rows):
        raise DataError(f"{d / 'similarities0-1.txt'}: expected a {LEE_DOCS} x {LEE_DOCS} matrix, got {n} rows "
                        f"of lengths {sorted({len(x) for x in rows})}")
    lower = any(rows[i][j] != 0 for i in range(n) for j in range(i))
    symmetric = all(rows[i][j] == rows[j][i] for i in range(n) for j in range(i))
    if lower and not symmetric:  # the layout this reader expects: an upper triangle (lower part zero)
        raise DataError(f"{d / 'similarities0-1.txt'}: the matrix is neither upper-triangular nor symmetric")
    return [
        Pair(f"{i:02d}-{j:02d}", docs[i], docs[j], rows[i][j], f"{prefix}similarities0-1.txt#{i},{j}")
        for i in range(n) for j in range(i + 1, n)
    ]


def read_word_pairs(path: Path, prefix: str) -> list[Pair]:
    """``word1 <tab> word2 <tab> score`` lines (``#`` lines are comments)."""
    out = []
    row = 0
    for ln, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        where = f"{prefix}{path.name}#{row} (line {ln})"
        cells = line.split("\t")
        if len(cells) < 3:
            raise DataError(f"{where}: expected word1<tab>word2<tab>score, got {line!r}")
        out.append(Pair(str(row), pair_text(cells[0], where, "word1"), pair_text(cells[1], where, "word2"),
                        parse_score(cells[2], where), f"{prefix}{path.name}#{row}"))
        row += 1
    return out


def _word_pairs(file: str):
    def read(spec: dict, assets_root="resources/assets") -> list[Pair]:
        d, prefix = asset_dir(ASSET, assets_root)
        return read_word_pairs(d / file, prefix)

    return read


register(Source("gensim_lee", "the Lee news corpus: 50 documents, 1,225 human-rated pairs (gensim wheel)",
                read_pairs=lambda spec, root="resources/assets": read_lee(root), asset=ASSET))
register(Source("gensim_simlex", "SimLex-999 word pairs (gensim wheel)", read_pairs=_word_pairs("simlex999.txt"),
                asset=ASSET))
register(Source("gensim_wordsim", "WordSim-353 word pairs (gensim wheel)", read_pairs=_word_pairs("wordsim353.tsv"),
                asset=ASSET))

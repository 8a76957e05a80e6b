"""Multilingual evaluators (translation accuracy, embedding MSE, STS Spearman) and their data readers."""

import math

import pytest
import torch
from conftest import SHARED_DATA, needs_shared_data

from kdlab.data.benchmarks import crosslingual_sts, read_stsb_multi, read_tatoeba, tatoeba_languages
from kdlab.errors import DataError
from kdlab.evaluation.retrieval import embedding_mse, translation_accuracy
from kdlab.evaluation.sts import cosine_spearman


def write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


# --- translation accuracy ---------------------------------------------------------------------


def test_translation_accuracy_hand_case():
    # Targets are the unit axes t0=e0, t1=e1, t2=e2; sources s0=e0, s1=e1, s2=(0, 2, 1) (not unit length).
    # src2trg: s0 -> t0 (cos 1), s1 -> t1 (cos 1) are right; s2 has cos 2/sqrt(5)=0.894 with t1 but only
    #   1/sqrt(5)=0.447 with its own t2, so it retrieves t1: 2 of 3 right.
    # trg2src: t0 -> s0 (cos 1 vs 0, 0); t1 -> s1 (cos 1 beats s2's 0.894); t2 -> s2 (0.447 vs 0, 0): 3 of 3.
    source = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 2.0, 1.0]])
    target = torch.eye(3)
    result = translation_accuracy(source, target)
    assert result["src2trg"] == pytest.approx(2 / 3, abs=1e-12)
    assert result["trg2src"] == 1.0
    assert result["mean"] == pytest.approx(5 / 6, abs=1e-12)
    # Swapping the roles swaps the directions.
    swapped = translation_accuracy(target, source)
    assert swapped["src2trg"] == 1.0 and swapped["trg2src"] == pytest.approx(2 / 3, abs=1e-12)


def test_translation_accuracy_ties_go_to_the_first_index():
    # Both targets are the same vector: every source finds target 0 first, so only row 0 is a hit.
    same = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    assert translation_accuracy(same, same.clone()) == {"src2trg": 0.5, "trg2src": 0.5, "mean": 0.5}


def test_translation_accuracy_chunks_match_a_full_matrix():
    generator = torch.Generator().manual_seed(0)
    source = torch.randn(50, 8, generator=generator)
    target = source + 0.9 * torch.randn(50, 8, generator=generator)
    cos = torch.nn.functional.normalize(source, dim=1) @ torch.nn.functional.normalize(target, dim=1).T
    expected_src2trg = int((cos.argmax(dim=1) == torch.arange(50)).sum()) / 50
    expected_trg2src = int((cos.argmax(dim=0) == torch.arange(50)).sum()) / 50
    assert 0.0 < expected_src2trg < 1.0  # the case is neither trivial nor hopeless
    for chunk_size in (1, 7, 50, 1024):
        result = translation_accuracy(source, target, chunk_size=chunk_size)
        assert result["src2trg"] == pytest.approx(expected_src2trg, abs=1e-12)
        assert result["trg2src"] == pytest.approx(expected_trg2src, abs=1e-12)


@pytest.mark.parametrize(
    "source,target,message",
    [
        (torch.zeros(3, 4), torch.zeros(2, 4), "must have the same shape"),
        (torch.zeros(3), torch.zeros(3), "must be 2-D"),
        (torch.zeros(0, 4), torch.zeros(0, 4), "empty"),
        (torch.tensor([[math.nan, 1.0]]), torch.ones(1, 2), "source_emb contains NaN"),
    ],
)
def test_translation_accuracy_rejects_bad_inputs(source, target, message):
    with pytest.raises(ValueError, match=message):
        translation_accuracy(source, target)


# --- embedding MSE ----------------------------------------------------------------------------


def test_embedding_mse_golden_value():
    # differences 1, 2, 0, 2 -> squares 1, 4, 0, 4 -> mean 9/4 = 2.25 -> x100 = 225
    student = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    teacher = torch.tensor([[0.0, 0.0], [3.0, 2.0]])
    assert embedding_mse(student, teacher) == pytest.approx(225.0, abs=1e-6)
    assert embedding_mse(teacher, teacher) == 0.0
    with pytest.raises(ValueError, match="same shape"):
        embedding_mse(student, teacher[:1])


# --- STS Spearman -----------------------------------------------------------------------------


def pairs_with_cosines(angles):
    """emb_a all (1, 0); emb_b at the given angles, so cos_i = cos(angle_i), decreasing in the angle."""
    angles = torch.tensor(angles, dtype=torch.float64)
    emb_a = torch.tensor([[1.0, 0.0]], dtype=torch.float64).repeat(len(angles), 1)
    return emb_a, torch.stack([angles.cos(), angles.sin()], dim=1)


def test_cosine_spearman_monotone_reversed_and_golden():
    emb_a, emb_b = pairs_with_cosines([0.0, 0.3, 0.6, 0.9])  # cosines strictly decreasing
    assert cosine_spearman(emb_a, emb_b, [5.0, 3.0, 2.0, 0.1]) == pytest.approx(100.0, abs=1e-9)
    assert cosine_spearman(emb_a, emb_b, [0.1, 2.0, 3.0, 5.0]) == pytest.approx(-100.0, abs=1e-9)
    # cosine ranks 4,3,2,1 vs gold ranks 4,2,3,1: d^2 = 0,1,1,0 -> 1 - 6*2 / (4*15) = 0.8 -> 80
    assert cosine_spearman(emb_a, emb_b, [5.0, 2.0, 3.0, 0.1]) == pytest.approx(80.0, abs=1e-9)


def test_cosine_spearman_rejects_bad_inputs():
    emb_a, emb_b = pairs_with_cosines([0.0, 0.3, 0.6])
    with pytest.raises(ValueError, match="3 embedding pairs but 2 gold scores"):
        cosine_spearman(emb_a, emb_b, [1.0, 2.0])
    with pytest.raises(ValueError, match="at least 2 pairs"):
        cosine_spearman(emb_a[:1], emb_b[:1], [1.0])
    with pytest.raises(ValueError, match="same shape"):
        cosine_spearman(emb_a, emb_b[:2], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="gold scores are 2.0"):
        cosine_spearman(emb_a, emb_b, [2.0, 2.0, 2.0])


def test_cosine_spearman_of_constant_cosines_is_nan():
    emb = torch.ones(3, 2)
    assert math.isnan(cosine_spearman(emb, emb, [1.0, 2.0, 3.0]))


# --- Tatoeba reader ---------------------------------------------------------------------------


def tatoeba_pair(folder, lang, foreign, english):
    write(folder / f"tatoeba.{lang}-eng.{lang}", foreign)
    write(folder / f"tatoeba.{lang}-eng.eng", english)


def test_read_tatoeba_strips_line_ends(tmp_path):
    tatoeba_pair(tmp_path, "deu", "Hallo Welt.\r\nWie geht's?\n", "Hello world.\nHow are you?")
    assert read_tatoeba(tmp_path, "deu") == (["Hallo Welt.", "Wie geht's?"], ["Hello world.", "How are you?"])


def test_read_tatoeba_missing_file(tmp_path):
    write(tmp_path / "tatoeba.deu-eng.deu", "Hallo.\n")
    with pytest.raises(DataError, match=r"tatoeba\.deu-eng\.eng: file not found"):
        read_tatoeba(tmp_path, "deu")


def test_read_tatoeba_line_counts_differ(tmp_path):
    tatoeba_pair(tmp_path, "deu", "a\nb\nc\n", "a\nb\n")
    with pytest.raises(DataError) as err:
        read_tatoeba(tmp_path, "deu")
    foreign, english = tmp_path / "tatoeba.deu-eng.deu", tmp_path / "tatoeba.deu-eng.eng"
    assert str(err.value) == f"{foreign}: has 3 lines but {english} has 2; they must be line-aligned"


def test_read_tatoeba_empty_line(tmp_path):
    tatoeba_pair(tmp_path, "deu", "a\nb\nc\n", "a\n\nc\n")
    with pytest.raises(DataError) as err:
        read_tatoeba(tmp_path, "deu")
    assert str(err.value).startswith(f"{tmp_path / 'tatoeba.deu-eng.eng'}:2: empty line")
    assert err.value.line == 2


def test_tatoeba_languages(tmp_path):
    for lang in ("fra", "deu"):
        tatoeba_pair(tmp_path, lang, "x\n", "y\n")
    write(tmp_path / "README.md", "not a test set\n")
    assert tatoeba_languages(tmp_path) == ["deu", "fra"]
    write(tmp_path / "tatoeba.spa-eng.spa", "x\n")
    with pytest.raises(DataError, match=r"tatoeba\.spa-eng\.eng: file not found, but its partner for 'spa' is there"):
        tatoeba_languages(tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no Tatoeba test sets"):
        tatoeba_languages(tmp_path / "empty")
    with pytest.raises(DataError, match="folder not found"):
        tatoeba_languages(tmp_path / "nowhere")


# --- stsb-multi-mt reader ---------------------------------------------------------------------


def test_read_stsb_multi(tmp_path):
    write(tmp_path / "stsb-de-test.csv", 'Ein Mädchen frisiert ihr Haar.,"Sie sagte: ""Hallo, du""",2.5\nA,B,5.0\n')
    assert read_stsb_multi(tmp_path, "de", "test") == (
        ["Ein Mädchen frisiert ihr Haar.", "A"],
        ['Sie sagte: "Hallo, du"', "B"],
        [2.5, 5.0],
    )


def test_read_stsb_multi_missing_file_lists_languages(tmp_path):
    write(tmp_path / "stsb-de-test.csv", "a,b,1\n")
    write(tmp_path / "stsb-en-dev.csv", "a,b,1\n")
    with pytest.raises(DataError) as err:
        read_stsb_multi(tmp_path, "fr", "test")
    expected = "file not found (languages with a 'test' split in this folder: ['de'])"
    assert str(err.value) == f"{tmp_path / 'stsb-fr-test.csv'}: {expected}"


@pytest.mark.parametrize(
    "text,line,message",
    [
        ("a,b,1.0\na,b\n", 2, "expected 3 fields (sentence1, sentence2, score), found 2"),
        ("a,b,1.0\na,b,1.0,extra\n", 2, "expected 3 fields (sentence1, sentence2, score), found 4"),
        ("a,b,1.0\nc,d,2.0\ne,f,abc\n", 3, "score 'abc' is not a number"),
        ("a,b,nan\n", 1, "score 'nan' is not a number"),
        ("a,b,7.5\n", 1, "score 7.5 is outside 0.0-5.0"),
        ("a,,1.0\n", 1, "sentence2 is empty"),
    ],
)
def test_read_stsb_multi_errors_name_file_and_line(tmp_path, text, line, message):
    path = write(tmp_path / "stsb-de-dev.csv", text)
    with pytest.raises(DataError) as err:
        read_stsb_multi(tmp_path, "de", "dev")
    assert str(err.value) == f"{path}:{line}: {message}"


def test_crosslingual_sts_pairs_two_languages(tmp_path):
    write(tmp_path / "stsb-en-test.csv", "A girl.,A boy.,2.5\nA cat.,A dog.,1.0\n")
    write(tmp_path / "stsb-de-test.csv", "Ein Mädchen.,Ein Junge.,2.5\nEine Katze.,Ein Hund.,1.0\n")
    pairs = crosslingual_sts(tmp_path, "en", "de", "test")
    assert pairs == (["A girl.", "A cat."], ["Ein Junge.", "Ein Hund."], [2.5, 1.0])
    assert crosslingual_sts(tmp_path, "de", "de", "test") == read_stsb_multi(tmp_path, "de", "test")


def test_crosslingual_sts_row_counts_differ(tmp_path):
    en = write(tmp_path / "stsb-en-test.csv", "a,b,2.5\nc,d,1.0\n")
    de = write(tmp_path / "stsb-de-test.csv", "a,b,2.5\n")
    with pytest.raises(DataError) as err:
        crosslingual_sts(tmp_path, "en", "de", "test")
    assert str(err.value) == f"{en}: has 2 rows but {de} has 1; row i must be the same pair in both"


def test_crosslingual_sts_scores_differ(tmp_path):
    en = write(tmp_path / "stsb-en-test.csv", "a,b,2.5\nc,d,1.0\n")
    de = write(tmp_path / "stsb-de-test.csv", "a,b,2.5\nc,d,1.2\n")
    with pytest.raises(DataError) as err:
        crosslingual_sts(tmp_path, "en", "de", "test")
    assert str(err.value) == (
        f"{en}:2: row 2 has score 1.0 but row 2 of {de} (line 2) has 1.2; the files are not aligned"
    )


# --- the real files in ../shared/data ---------------------------------------------------------


@pytest.mark.slow
@needs_shared_data("tatoeba-laser")
def test_real_tatoeba_deu():
    folder = SHARED_DATA / "tatoeba-laser"
    foreign, english = read_tatoeba(folder, "deu")
    assert len(foreign) == len(english) == 1000
    assert foreign[0] == "Maria sagte, sie wisse nicht, wo Tom sei."
    assert english[0] == "Mary said she didn't know where Tom was."
    assert tatoeba_languages(folder) == ["cmn", "deu", "fra", "ita", "jpn", "nld", "pol", "por", "rus", "spa"]


@pytest.mark.slow
@needs_shared_data("stsb-multi-mt")
def test_real_crosslingual_sts_en_de_test():
    first, second, gold = crosslingual_sts(SHARED_DATA / "stsb-multi-mt", "en", "de", "test")
    assert len(first) == len(second) == len(gold) == 1379
    expected = ("A girl is styling her hair.", "Ein Mädchen bürstet sich die Haare.", 2.5)
    assert (first[0], second[0], gold[0]) == expected
    assert all(0.0 <= g <= 5.0 for g in gold)


def test_task_scores_are_x100_and_tables_print_them_with_two_decimals():
    from kdlab.evaluation.names import format_metric, is_score
    from kdlab.evaluation.task_metrics import build_metrics

    metrics = build_metrics("classification", 2, ["acc", "f1", "mcc"], prefix="val/")
    metrics.update(torch.tensor([0, 1, 1, 0]), torch.tensor([0, 1, 0, 0]))  # 3 of 4 right; F1 of class 1: 2/3
    computed = {k: float(v) for k, v in metrics.compute().items()}
    assert computed["val/acc"] == pytest.approx(75.0) and computed["val/f1"] == pytest.approx(200 / 3)
    regression = build_metrics("regression", 1, ["pearson", "spearman"], prefix="test/")
    regression.update(torch.tensor([0.1, 0.4, 0.2]), torch.tensor([1.0, 3.0, 2.0]))
    assert float(regression.compute()["test/spearman"]) == pytest.approx(100.0, abs=1e-3)  # float32
    assert [is_score(k) for k in ("student/val/acc", "val/glue_mean", "train/loss_soft", "student/deploy/disk_mb")] == [
        True,
        True,
        False,
        False,
    ]
    assert format_metric("student/test/acc", 93.5) == "93.50" and format_metric("val/loss", 0.25) == "0.2500"
    assert format_metric("student/checkpoint/epoch", 4.0) == "4"


def test_results_table_widens_to_show_every_header_whole():
    from kdlab.pipelines.common import print_table

    tasks = ["reviews", "questions", "topics", "sts"]
    names = [f"{task}/{m}" for task in tasks for m in ("acc", "f1")] + ["glue_mean"]
    results = {
        f"{role}/{split}/{m}": 50.0 for role in ("teacher", "student") for split in ("val", "test") for m in names
    }
    printed = print_table(results, names)
    header = next(line for line in printed.splitlines() if "model" in line)
    assert all(f"{split}/{m}" in header for split in ("val", "test") for m in names), header
    assert printed.count("50.00") == 2 * 2 * len(names)

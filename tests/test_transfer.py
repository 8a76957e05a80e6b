"""Transfer sets and augmentation (issue 18): the mixed loss, Tang et al.'s augmentation rules, the transfer set's
sources and refusals."""

from __future__ import annotations

import json
import random
from collections import Counter

import pytest
import torch
import torch.nn.functional as F

from kdlab.data.augment import Augmenter, AugmentSettings, augmented, settings
from kdlab.data.embedded import reviews
from kdlab.data.records import split_records
from kdlab.data.transfer import build, check_spec
from kdlab.errors import ConfigError, KdlabError
from kdlab.losses.logit_mse import LogitMSEKDLoss
from kdlab.losses.soft_target import SoftTargetKDLoss

# ---------------------------------------------------------------- the mixed loss


@pytest.mark.parametrize("loss", [SoftTargetKDLoss(alpha=0.3, temperature=2.0), LogitMSEKDLoss(alpha=0.3)])
def test_soft_term_on_every_example_hard_term_on_gold_only(loss):
    torch.manual_seed(0)
    student, teacher = torch.randn(6, 3), torch.randn(6, 3)
    labels = torch.tensor([2, 0, 0, 1, 0, 0])  # rows 1, 2, 4, 5 are transfer rows: their 0 is a placeholder
    gold = torch.tensor([True, False, False, True, False, False])
    out = loss(student, teacher, labels, gold)
    # independent computation, example by example
    if isinstance(loss, SoftTargetKDLoss):
        per_soft = [
            4.0
            * (
                F.softmax(teacher[i] / 2, -1) * (F.log_softmax(teacher[i] / 2, -1) - F.log_softmax(student[i] / 2, -1))
            ).sum()
            for i in range(6)
        ]
    else:
        per_soft = [((student[i] - teacher[i]) ** 2).sum() for i in range(6)]
    soft = sum(per_soft) / 6
    hard = (-F.log_softmax(student[0], -1)[2] - F.log_softmax(student[3], -1)[1]) / 2
    assert torch.allclose(out.soft, soft, atol=1e-6) and torch.allclose(out.hard, hard, atol=1e-6)
    assert torch.allclose(out.total, 0.3 * soft + 0.7 * hard, atol=1e-6)
    # a batch of transfer rows only: no hard term
    none = loss(student, teacher, labels, torch.zeros(6, dtype=torch.bool))
    assert none.hard.item() == 0.0 and torch.allclose(none.total, 0.3 * soft, atol=1e-6)
    # all gold: the plain loss
    assert torch.allclose(
        loss(student, teacher, labels, torch.ones(6, dtype=torch.bool)).total, loss(student, teacher, labels).total
    )


# ---------------------------------------------------------------- augmentation (Tang et al. 2019 §3.3)

CORPUS = [(r["text"], None) for r in reviews("train", 3000)]


def test_augmentation_is_deterministic_for_a_seed_and_changes_with_it():
    options = AugmentSettings(n_iter=5, seed=3)
    first = Augmenter(CORPUS, options, "[MASK]").augment(CORPUS[:200])
    again = Augmenter(CORPUS, options, "[MASK]").augment(CORPUS[:200])
    other = Augmenter(CORPUS, AugmentSettings(n_iter=5, seed=4), "[MASK]").augment(CORPUS[:200])
    assert first == again and first != other
    # a sentence's copies do not depend on its position or on the other inputs
    alone = Augmenter(CORPUS, options, "[MASK]").copies(CORPUS[7])
    assert alone == Augmenter(CORPUS, options, "[MASK]").copies(CORPUS[7])
    assert alone and all(copy in first for copy in alone[:3])
    # distinct, none equal to an input
    assert len(set(first)) == len(first) and not set(first) & set(CORPUS[:200])


def test_augmentation_rates_land_within_tolerance():
    options = AugmentSettings(n_iter=1, p_mask=0.1, p_pos=0.2, p_ng=0.0, seed=0)
    augmenter = Augmenter(CORPUS, options, "[MASK]")
    counts = Counter(w for text, _ in CORPUS for w in text.split())
    total = sum(counts.values())
    rng = random.Random(0)
    words = masked = changed = 0
    expected_changed = 0.0
    for text, _ in CORPUS:
        original = text.split()
        out = augmenter.draw_side(original, None, rng)
        assert len(out) == len(original)
        for before, after in zip(original, out, strict=True):
            words += 1
            masked += after == "[MASK]"
            changed += after not in ("[MASK]", before)
            expected_changed += options.p_pos * (1 - counts[before] / total)  # a replacement may draw the same word
    assert words > 20_000
    assert abs(masked / words - 0.1) < 0.01
    assert abs(changed / words - expected_changed / words) < 0.01
    # n-gram sampling: with p_ng, one n-gram (n in 1..5) of the copy is kept
    ngram = Augmenter(CORPUS, AugmentSettings(n_iter=1, p_mask=0.0, p_pos=0.0, p_ng=0.25), "[MASK]")
    long = [text.split() for text, _ in CORPUS if len(text.split()) > 5]
    cut = []
    for original in long:
        out = ngram.draw_side(original, None, rng)
        if len(out) < len(original):
            cut.append(len(out))
            joined = " ".join(out)
            assert f" {joined} " in f" {' '.join(original)} "  # a contiguous n-gram of the sentence
    assert abs(len(cut) / len(long) - 0.25) < 0.03
    assert set(cut) == {1, 2, 3, 4, 5} and max(Counter(cut).values()) / len(cut) < 0.3


def test_part_of_speech_guided_replacement_keeps_the_tag():
    tags = {
        "the": "DET",
        "a": "DET",
        "film": "NOUN",
        "plot": "NOUN",
        "music": "NOUN",
        "was": "VERB",
        "good": "ADJ",
        "bad": "ADJ",
    }
    corpus = [("the film was good", None), ("a plot was bad", None), ("the music was good", None)]
    augmenter = Augmenter(
        corpus,
        AugmentSettings(n_iter=1, p_mask=0.0, p_pos=1.0, p_ng=0.0),
        "[MASK]",
        tagger=lambda ws: [tags[w] for w in ws],
    )
    assert augmenter.describe()["replacement"] == "pos"
    rng = random.Random(1)
    for _ in range(200):
        out = augmenter.draw_side("the film was good".split(), ["DET", "NOUN", "VERB", "ADJ"], rng)
        assert [tags[w] for w in out] == ["DET", "NOUN", "VERB", "ADJ"]
    assert Augmenter(corpus, AugmentSettings(), "[MASK]").describe()["replacement"] == "unigram"


def test_augmented_sets_are_cached_by_content(tmp_path):
    augmenter = Augmenter(CORPUS, AugmentSettings(n_iter=3), "[MASK]")
    first, hit = augmented(CORPUS[:100], [], augmenter, tmp_path)
    again, hit_again = augmented(CORPUS[:100], [], augmenter, tmp_path)
    assert (hit, hit_again) == (False, True) and first == again
    _, other = augmented(CORPUS[:101], [], augmenter, tmp_path)
    assert other is False


@pytest.mark.parametrize(
    "spec, key",
    [
        ({"p_mask": 1.5}, "data.transfer.augment.p_mask"),
        ({"p_ng": -0.1}, "data.transfer.augment.p_ng"),
        ({"n_iter": -1}, "data.transfer.augment.n_iter"),
        ({"p_mask": 0.6, "p_pos": 0.6}, "data.transfer.augment.p_pos"),
        ({"p_mak": 0.1}, "data.transfer.augment.p_mak"),
    ],
)
def test_bad_augmentation_settings_name_the_key(spec, key):
    with pytest.raises(ConfigError) as err:
        settings(spec)
    assert err.value.key == key


# ---------------------------------------------------------------- the transfer set


def data_cfg(transfer, train_limit=None):
    cfg = {
        "task": "classification",
        "labels": ["negative", "positive"],
        "columns": {"text": "text", "text_pair": None, "label": "label"},
        "train": {"embedded": "reviews", "split": "train", "size": 400, "seed": 0},
        "validation": {"embedded": "reviews", "split": "validation", "size": 100, "seed": 0},
        "test": {"embedded": "reviews", "split": "test", "size": 100, "seed": 0},
        "transfer": transfer,
    }
    if train_limit:
        cfg["train"]["limit"] = train_limit
    return cfg


def built(cfg, tmp_path):
    gold = split_records(cfg, "train")
    return gold, build(
        cfg, gold, split_records(cfg, "validation") + split_records(cfg, "test"), "[MASK]", str(tmp_path)
    )


def test_rest_of_train_generated_text_and_copies_are_distinct_and_never_gold(tmp_path):
    cfg = data_cfg(
        {
            "sources": [{"rest_of_train": True}, {"embedded": "reviews", "split": "train", "size": 600, "seed": 1}],
            "augment": {"n_iter": 2},
        },
        train_limit=100,
    )
    gold, transfer = built(cfg, tmp_path)
    assert len(gold) == 100
    gold_texts = {r["text"] for r in gold}
    texts = [t for t, _ in transfer.inputs]
    assert len(set(texts)) == len(texts) and not set(texts) & gold_texts
    rest, generated = transfer.info["sources"]
    assert (rest["rows"], rest["kept"]) == (300, 300)  # the 400-row source minus the 100 labelled ones
    assert generated["rows"] == 600 and generated["kept"] < 600  # seed 1 repeats a few of seed 0's texts
    assert transfer.info["augment"]["copies"] > 100 and transfer.info["augment"]["replacement"] == "unigram"
    assert (
        transfer.info["inputs"] == len(transfer.inputs) == 300 + generated["kept"] + transfer.info["augment"]["copies"]
    )


def test_a_file_source_reads_its_text_column_and_drops_evaluation_rows(tmp_path):
    test_texts = [r["text"] for r in reviews("test", 100)]
    path = tmp_path / "more.csv"
    path.write_text("sentence,other\nan unseen sentence about the film,x\nanother one,y\n" + f"{test_texts[0]},z\n")
    cfg = data_cfg({"sources": [{"path": str(path), "columns": {"text": "sentence"}}]})
    _, transfer = built(cfg, tmp_path)
    assert [t for t, _ in transfer.inputs] == ["an unseen sentence about the film", "another one"]
    assert transfer.info["sources"][0]["evaluation_rows_dropped"] == 1


def test_a_hugging_face_source_reads_its_column_and_is_told_apart_from_a_split_by_its_files(tmp_path):
    """`hf:` goes through the datasets loader as a split's source does; offline here, so the packaged csv builder
    reads local files. A test split from the same builder but other files is not the same source."""
    pytest.importorskip("datasets")
    test_texts = [r["text"] for r in reviews("test", 100)]
    path = tmp_path / "more.csv"
    path.write_text("sentence,other\nan unseen sentence about the film,x\nanother one,y\n" + f"{test_texts[0]},z\n")
    source = {"hf": "csv", "data_files": str(path), "hf_split": "train", "columns": {"text": "sentence"}}
    cfg = data_cfg({"sources": [source]})
    cfg["test"] = {"hf": "csv", "data_files": str(tmp_path / "test.csv"), "hf_split": "train"}
    check_spec(cfg)  # other files: not the test split's source
    cfg["test"] = data_cfg({})["test"]
    _, built_transfer = built(cfg, tmp_path)
    assert [t for t, _ in built_transfer.inputs] == ["an unseen sentence about the film", "another one"]
    assert built_transfer.info["sources"][0]["evaluation_rows_dropped"] == 1
    leaking = data_cfg({"sources": [source]})
    leaking["test"] = {k: v for k, v in source.items() if k != "columns"}
    with pytest.raises(ConfigError, match="it would leak"):
        check_spec(leaking)


@pytest.mark.parametrize(
    "transfer, says",
    [
        ({"sources": [{"embedded": "reviews", "split": "test", "size": 100, "seed": 0}]}, "it would leak"),
        ({"sources": [{"path": "MISSING"}]}, "MISSING"),
        (
            {
                "sources": [
                    {"embedded": "reviews", "split": "train", "size": 10, "seed": 0, "columns": {"text": "sentence"}}
                ]
            },
            "'sentence'",
        ),
    ],
)
def test_leaking_missing_or_wrong_column_sources_are_refused(tmp_path, transfer, says):
    cfg = data_cfg(transfer)
    with pytest.raises(KdlabError) as err:  # a ConfigError or a DataError: one line naming what is wrong
        built(cfg, tmp_path)
    assert says in str(err.value) and "\n" not in str(err.value)
    if says == "it would leak":
        assert isinstance(err.value, ConfigError) and err.value.key == "data.transfer.sources[0]"


def test_empty_file_source_and_bad_specs(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("text\n")
    with pytest.raises(Exception, match="empty"):  # noqa: B017
        built(data_cfg({"sources": [{"path": str(empty)}]}), tmp_path)
    for spec, key in [
        ({"sources": [{"rest_of_train": True}]}, "data.transfer.sources[0].rest_of_train"),
        ({"sources": []}, "data.transfer"),
        ({"sources": [{"path": "a", "embedded": "reviews"}]}, "data.transfer.sources[0]"),
        ({"sources": [{"embedded": "reviews"}], "gold_repeat": 0}, "data.transfer.gold_repeat"),
        ({"sources": [{"embedded": "reviews"}], "mix": 1}, "data.transfer.mix"),
    ]:
        with pytest.raises(ConfigError) as err:
            check_spec(data_cfg(spec))
        assert err.value.key == key


# ---------------------------------------------------------------- a hinton run with a transfer set

RUN = [
    "method.deploy_benchmark=false",
    "model.teacher.config.hidden_size=32",
    "model.teacher.config.num_hidden_layers=1",
    "model.teacher.config.num_attention_heads=2",
    "model.teacher.config.intermediate_size=64",
    "model.teacher.vocab_size=300",
    "data.train.size=120",
    "data.validation.size=40",
    "data.test.size=40",
    "method.teacher.epochs=1",
    "method.student.epochs=1",
    "data.batch_size=16",
    "method.baseline=true",
    "trainer.enable_progress_bar=false",
    "+data.transfer.sources=[{embedded: reviews, split: train, size: 200, seed: 1}]",
    "+data.transfer.augment={n_iter: 2}",
]


def test_the_student_trains_on_gold_and_transfer_rows_the_baseline_on_gold_only_and_the_cache_serves_a_rerun(tmp_path):
    import csv

    from conftest import kdlab_folders

    from kdlab.api import train

    with kdlab_folders(tmp_path):
        first = train(*RUN)
        info = json.loads((first.path / "student" / "transfer.json").read_text())
        assert info["labelled_rows"] == 120 and info["augment"]["copies"] > 0
        transfer_rows = info["inputs"]
        assert transfer_rows == info["sources"][0]["kept"] + info["augment"]["copies"]
        outputs = json.loads((first.path / "teacher" / "teacher.json").read_text())["outputs"]
        assert outputs["rows"] == 120 + transfer_rows and outputs["hit"] is False  # every transfer row labelled

        def steps(role: str) -> int:
            rows = list(csv.DictReader((first.path / "logs" / role / "metrics.csv").open()))
            return max(int(r["step"]) for r in rows) + 1

        # one epoch at batch 16: the KD student sees gold + transfer rows, the no-KD baseline the 120 gold rows
        assert steps("student") >= (120 + transfer_rows) // 16 > steps("baseline") >= 120 // 16 - 1
        log = (first.path / "train.log").read_text()
        assert f"120 labelled rows + {transfer_rows} transfer rows per epoch" in log

        again = train(*RUN)
        outputs = json.loads((again.path / "teacher" / "teacher.json").read_text())
        assert outputs["origin"].startswith("reused") and outputs["outputs"]["hit"] is True
        assert json.loads((again.path / "student" / "transfer.json").read_text())["augment"]["cached"] is True
        assert again.metrics["student/test/acc"] == first.metrics["student/test/acc"]

        # the transfer set is the student's: without it (or with another) the stored teacher is the same
        alone = train(*[o for o in RUN if "data.transfer" not in o])
        assert json.loads((alone.path / "teacher" / "teacher.json").read_text())["origin"].startswith("reused")

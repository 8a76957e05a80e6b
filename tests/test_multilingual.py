"""Multilingual distillation: the loss, the parallel DataModule, the cached teacher, the CLI run and its export."""

import json
import math

import pytest
import torch
from conftest import run_dirs
from settings import adamw

from kdlab.data.parallel import ParallelDataModule
from kdlab.errors import ConfigError, DataError
from kdlab.losses import multilingual_mse

TOY = [
    "method.deploy_benchmark=false",  # no export timing in tests (tests/test_deploy.py times them)
    "method=multilingual",
    "model=tiny_sentence",
    "data=parallel_toy",
    "trainer.enable_progress_bar=false",
    "data.sources.0.size=300",
    "data.sources.1.size=300",
    "data.dev.0.size=100",
    "data.dev.1.size=100",
    "model.teacher.config.hidden_size=32",
    "model.teacher.config.intermediate_size=64",
    "model.teacher.config.num_attention_heads=2",
    "method.student.epochs=4",
    "method.student.optimizer.lr=1e-3",
    "data.batch_size=16",
]


def test_loss_matches_an_independent_computation():
    s = torch.tensor([[1.0, 2.0], [0.0, -1.0]])
    t = torch.tensor([[1.5, 2.0], [1.0, 1.0]])
    m = torch.tensor([[1.0, 1.0], [0.5, -1.0]])
    # per pair ‖S(s)−M(s)‖²/D + ‖S(t)−M(s)‖²/D, averaged over the 2 pairs
    source = ((0 + 1) / 2 + (0.25 + 0) / 2) / 2
    target = ((0.25 + 1) / 2 + (0.25 + 4) / 2) / 2
    out = multilingual_mse(s, t, m)
    assert out.source.item() == pytest.approx(source, abs=1e-6)
    assert out.target.item() == pytest.approx(target, abs=1e-6)
    assert out.total.item() == pytest.approx(source + target, abs=1e-6)
    with pytest.raises(ValueError, match="student width 2 != teacher width 3"):
        multilingual_mse(s, t, torch.zeros(2, 3))


def parallel_cfg(tmp_path, **overrides):
    de = tmp_path / "en-de.tsv"
    de.write_text("en\tde\n" + "".join(f"sentence {i}\tSatz {i}\n" for i in range(20)) + "shared\tgeteilt\n")
    fr = tmp_path / "en-fr.jsonl"
    fr.write_text("".join(json.dumps({"en": f"sentence {i}", "fr": f"phrase {i}"}) + "\n" for i in range(10)))
    cfg = {
        "sources": [
            {"path": str(de), "columns": {"source": "en", "target": "de"}, "lang": "en-de"},
            {"path": str(fr), "columns": {"source": "en", "target": "fr"}, "lang": "en-fr", "limit": 6},
        ],
        "dev": [],
        "holdout": 2,
        "max_length": 16,
        "batch_size": 8,
        "eval_batch_size": 8,
    }
    cfg.update(overrides)
    return cfg


def test_parallel_sources_mix_languages_hold_out_dev_pairs_and_share_source_rows(tmp_path, tiny_tokenizer):
    module = ParallelDataModule(parallel_cfg(tmp_path), tokenizer=tiny_tokenizer)
    train, dev = module.pairs("train"), module.pairs("validation")
    assert len(train) == (21 - 2) + (6 - 2) and len(dev) == 4
    assert module.languages() == ["en-de", "en-fr"]
    assert not {(p["source"], p["target"]) for p in train} & {(p["source"], p["target"]) for p in dev}
    sources, rows = module.distinct_sources("train")
    assert len(sources) == len(set(p["source"] for p in train)) < len(train)  # "sentence i" appears in both languages
    assert [sources[r] for r in rows] == [p["source"] for p in train]
    module.setup()
    batch = next(iter(module.train_dataloader()))
    assert set(batch) == {
        "source_input_ids",
        "source_attention_mask",
        "target_input_ids",
        "target_attention_mask",
        "index",
        "teacher_index",
        "lang",
    }
    assert batch["source_input_ids"].shape[1] == int(batch["source_attention_mask"].sum(1).max())
    langs = torch.cat([b["lang"] for b in module.train_dataloader()])
    assert set(langs.tolist()) == {0, 1}


def test_pairs_are_grouped_by_both_side_lengths_and_pad_less_than_by_the_longer_side():
    import random

    from kdlab.data.sampling import LengthGroupedBatchSampler

    rng = random.Random(0)
    lengths = []
    for _ in range(1000):  # translations correlate with their sources, loosely
        source = rng.randint(5, 60)
        lengths.append((source, max(3, min(64, int(source * rng.uniform(0.6, 1.8))))))
    padded = lambda batches: sum(
        len(b) * (max(lengths[i][0] for i in b) + max(lengths[i][1] for i in b)) for b in batches
    )
    torch.manual_seed(0)
    both = list(LengthGroupedBatchSampler(lengths, 32))
    torch.manual_seed(0)
    longer = list(LengthGroupedBatchSampler([max(pair) for pair in lengths], 32))
    assert sorted(i for b in both for i in b) == list(range(1000)) and len(both) == len(longer) == 32
    assert padded(both) < 0.98 * padded(longer)


def test_parallel_file_with_an_empty_side_names_file_and_line(tmp_path):
    bad = tmp_path / "bad.tsv"
    bad.write_text("en\tde\nhello\thallo\nworld\t \n")
    cfg = parallel_cfg(
        tmp_path, sources=[{"path": str(bad), "columns": {"source": "en", "target": "de"}, "lang": "en-de"}]
    )
    with pytest.raises(DataError, match=r"bad\.tsv:3: empty target"):
        ParallelDataModule(cfg).pairs("train")
    with pytest.raises(ConfigError, match=r"data\.sources\[0\]\.lang: needs a language-pair tag"):
        ParallelDataModule(
            parallel_cfg(tmp_path, sources=[{"path": str(bad), "columns": {"source": "en", "target": "de"}}])
        ).pairs("train")


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
    import os
    import subprocess
    import sys

    from conftest import REPO

    tmp = tmp_path_factory.mktemp("ml")
    env = {
        **os.environ,
        "KDLAB_OUTPUT_DIR": str(tmp / "outputs"),
        "KDLAB_CACHE_DIR": str(tmp / "cache"),
        "HF_HUB_OFFLINE": "1",
    }

    def run(*extra):
        result = subprocess.run(
            [sys.executable, "-m", "kdlab.train", *TOY, *extra],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert result.returncode == 0, result.stderr[-3000:]
        return run_dirs(tmp)[-1]

    return run(), run, tmp


def test_dev_mse_falls_and_translation_accuracy_rises(toy_run):
    run, _, _ = toy_run
    metrics = json.loads((run / "metrics.json").read_text())
    for lang in ("en-rev", "en-vow"):
        assert metrics[f"student/val/mse/{lang}"] < 0.5 * metrics[f"student_init/val/mse/{lang}"]
        assert (
            metrics[f"student/val/translation/{lang}/mean"] > metrics[f"student_init/val/translation/{lang}/mean"] + 30
        )
    assert math.isclose(
        metrics["student/val/translation_acc"],
        (metrics["student/val/translation/en-rev/mean"] + metrics["student/val/translation/en-vow/mean"]) / 2,
        rel_tol=1e-6,
    )


def test_export_loads_in_sentence_transformers_with_the_same_embeddings(toy_run):
    st = pytest.importorskip("sentence_transformers")

    from kdlab.models.inference import encode
    from kdlab.models.sentence_encoder import load_sentence_encoder

    run, _, _ = toy_run
    folder = run / "student" / "model"
    texts = ["the plot was good", "ehto tolpo sawo doogo", "zthi zplut zwes zguud but the food was bad"]
    reference = torch.tensor(st.SentenceTransformer(str(folder), device="cpu").encode(texts))
    model, tokenizer = load_sentence_encoder({"name_or_path": str(folder)}, "model")
    mine = encode(model, tokenizer, texts, 64, 8)
    torch.testing.assert_close(mine, reference, rtol=1e-4, atol=1e-5)


def test_second_run_reads_cached_teacher_embeddings_and_a_changed_teacher_rebuilds(toy_run):
    first, run, _ = toy_run
    info = json.loads((first / "teacher" / "teacher.json").read_text())["outputs"]
    assert info["train"]["hit"] is False and info["validation"]["hit"] is False
    second = run("method.student.epochs=1")
    info2 = json.loads((second / "teacher" / "teacher.json").read_text())["outputs"]
    assert info2["train"]["hit"] is True and info2["train"]["key"] == info["train"]["key"]
    third = run("method.student.epochs=1", "seed=7")  # a different random-init teacher
    info3 = json.loads((third / "teacher" / "teacher.json").read_text())["outputs"]
    assert info3["train"]["hit"] is False and info3["train"]["key"] != info["train"]["key"]


def test_student_of_another_width_with_a_projection_trains_checkpoints_and_exports(cli):
    """model.student.projection=true: a learnt Linear(16 → 32) after pooling, trained with the student,
    kept in its checkpoints and exported as a sentence-transformers Dense module."""
    st = pytest.importorskip("sentence_transformers")

    from kdlab.data.embedded import parallel_toy
    from kdlab.models.inference import encode
    from kdlab.models.sentence_encoder import load_sentence_encoder

    texts = [text for row in parallel_toy("train", size=300) for text in (row["source"], row["rev"], row["vow"])]
    student = _tiny_encoder_folder(cli.tmp_path, texts)
    result = cli(
        *TOY,
        "method.student.epochs=3",
        "model.student.copy_teacher=false",
        "model.student.tokenizer=null",
        f"model.student.name_or_path={student}",
        "model.student.projection=true",
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    run = run_dirs(cli.tmp_path)[-1]
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["student/val/mse"] < 0.5 * metrics["student_init/val/mse"]
    checkpoint = torch.load(
        next((run / "student" / "checkpoints").glob("*.ckpt")), map_location="cpu", weights_only=True
    )
    assert checkpoint["state_dict"]["model.projection.weight"].shape == (32, 16)
    folder = run / "student" / "model"
    assert [m["type"].rsplit(".", 1)[-1] for m in json.loads((folder / "modules.json").read_text())] == [
        "Transformer",
        "Pooling",
        "Dense",
    ]
    model, tokenizer = load_sentence_encoder({"name_or_path": str(folder)}, "model")
    sample = texts[:5]
    mine = encode(model, tokenizer, sample, 64, 8)
    assert mine.shape == (5, 32)
    reference = torch.tensor(st.SentenceTransformer(str(folder), device="cpu").encode(sample))
    torch.testing.assert_close(mine, reference, rtol=0, atol=1e-5)


@pytest.mark.parametrize("normalize", [False, True])
def test_projection_export_gives_sentence_transformers_the_same_embeddings(tmp_path, tiny_tokenizer, normalize):
    st = pytest.importorskip("sentence_transformers")

    from kdlab.models.inference import encode
    from kdlab.models.sentence_encoder import load_sentence_encoder, random_encoder

    torch.manual_seed(0)
    model = random_encoder(
        {
            "config": {"hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 32},
            "normalize": normalize,
        },
        tiny_tokenizer,
    )
    model.add_projection(24)
    assert (model.hidden_size, model.dim) == (16, 24)
    texts = ["the plot was good", "the food was bad but the view was lovely", "dull"]
    mine = encode(model, tiny_tokenizer, texts, 32, 8)
    if normalize:  # the projection comes before normalisation
        torch.testing.assert_close(mine.norm(dim=-1), torch.ones(3))
    folder = model.save_sentence_transformers(tmp_path / "st", tiny_tokenizer, 32)
    loaded = st.SentenceTransformer(str(folder), device="cpu")
    assert loaded.get_embedding_dimension() == 24
    torch.testing.assert_close(torch.tensor(loaded.encode(texts)), mine, rtol=0, atol=1e-5)
    back, _ = load_sentence_encoder({"name_or_path": str(folder)}, "model")
    torch.testing.assert_close(encode(back, tiny_tokenizer, texts, 32, 8), mine, rtol=0, atol=1e-6)


def _tiny_encoder_folder(tmp_path, texts=None):
    """A random-init 16-wide BERT encoder folder with a WordPiece tokenizer trained on `texts` (default: reviews)."""
    from transformers import AutoModel, BertConfig

    from kdlab.data.embedded import reviews
    from kdlab.models.tokenization import train_wordpiece

    texts = texts or [r["text"] for r in reviews("train", size=200)]
    tokenizer = train_wordpiece(texts, 300, tmp_path / "tok")
    model = AutoModel.from_config(
        BertConfig(
            vocab_size=len(tokenizer), hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32
        )
    )
    folder = tmp_path / "enc16"
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def test_zipped_line_aligned_files_and_their_length_mismatch(tmp_path):
    (tmp_path / "en.tsv").write_text("x\tA man.\ny\tA dog.\nz\tA cat.\n")
    (tmp_path / "es.csv").write_text("Un hombre.,1\nUn perro.,2\nUn gato.,3\n")
    (tmp_path / "short.csv").write_text("Un hombre.,1\n")
    side = lambda path, column, **kw: {"path": str(tmp_path / path), "header": False, "column": column, **kw}
    cfg = parallel_cfg(tmp_path, sources=[{"zip": [side("en.tsv", 1), side("es.csv", 0)], "lang": "en-es"}], holdout=1)
    pairs = ParallelDataModule(cfg).pairs("train") + ParallelDataModule(cfg).pairs("validation")
    assert sorted((p["source"], p["target"]) for p in pairs) == [
        ("A cat.", "Un gato."),
        ("A dog.", "Un perro."),
        ("A man.", "Un hombre."),
    ]
    bad = parallel_cfg(
        tmp_path, sources=[{"zip": [side("en.tsv", 1), side("short.csv", 0)], "lang": "en-es"}], holdout=1
    )
    with pytest.raises(
        DataError, match=r"en\.tsv: has 3 rows but .*short\.csv has 1; zipped files must be row-aligned"
    ):
        ParallelDataModule(bad).pairs("train")


def test_skip_empty_drops_pairs_with_an_empty_side_only_when_asked(tmp_path):
    noisy = tmp_path / "noisy.tsv"
    noisy.write_text("en\tde\nhello\thallo\n\tleer\nworld\twelt\n")
    source = {"path": str(noisy), "columns": {"source": "en", "target": "de"}, "lang": "en-de"}
    with pytest.raises(DataError, match=r"noisy\.tsv:3: empty source"):
        ParallelDataModule(parallel_cfg(tmp_path, sources=[source], holdout=1)).pairs("train")
    kept = ParallelDataModule(parallel_cfg(tmp_path, sources=[{**source, "skip_empty": True}], holdout=1))
    assert sorted(p["source"] for p in kept.pairs("train") + kept.pairs("validation")) == ["hello", "world"]


def test_tatoeba_and_sts_evaluators_run_at_validation_on_the_student(tmp_path, tiny_tokenizer):
    import pytorch_lightning as pl

    from kdlab.data.benchmarks import crosslingual_sts
    from kdlab.evaluation.multilingual import CrosslingualSTSEvaluator, TatoebaEvaluator
    from kdlab.evaluation.retrieval import translation_accuracy
    from kdlab.evaluation.sts import cosine_spearman
    from kdlab.methods.multilingual import MultilingualDistillation
    from kdlab.models.inference import encode
    from kdlab.models.sentence_encoder import random_encoder

    (tmp_path / "tatoeba.deu-eng.deu").write_text("der film war gut\ndas essen war schlecht\ndie musik war laut\n")
    (tmp_path / "tatoeba.deu-eng.eng").write_text("the movie was good\nthe food was bad\nthe music was loud\n")
    for lang, rows in {
        "en": [
            "the plot was good,the plot was great,4.5",
            "the food was bad,the view was lovely,0.5",
            "the room was dull,the room was boring,4.0",
        ],
        "de": [
            "die handlung war gut,die handlung war toll,4.5",
            "das essen war schlecht,die aussicht war schön,0.5",
            "das zimmer war öde,das zimmer war langweilig,4.0",
        ],
    }.items():
        (tmp_path / f"stsb-{lang}-dev.csv").write_text("\n".join(rows) + "\n")
    torch.manual_seed(0)
    model = random_encoder(
        {"config": {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64}},
        tiny_tokenizer,
    )
    datamodule = ParallelDataModule(parallel_cfg(tmp_path), tokenizer=tiny_tokenizer)
    teacher_train = torch.randn(len(datamodule.distinct_sources("train")[0]), 32)
    teacher_dev = torch.randn(len(datamodule.distinct_sources("validation")[0]), 32)
    evaluators = {
        "val": [
            TatoebaEvaluator(str(tmp_path), ["deu"]),
            CrosslingualSTSEvaluator(str(tmp_path), [["en", "de"], ["de", "en"]], "dev"),
        ]
    }
    module = MultilingualDistillation(
        model, tiny_tokenizer, adamw(lr=1e-3), teacher_train, teacher_dev, datamodule.languages(), 16, 8, evaluators
    )
    metrics = pl.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False).validate(
        module, datamodule=datamodule, verbose=False
    )[0]
    run = lambda texts: encode(model, tiny_tokenizer, texts, 16, 8)
    german, english = (
        (tmp_path / "tatoeba.deu-eng.deu").read_text().split("\n")[:3],
        (tmp_path / "tatoeba.deu-eng.eng").read_text().split("\n")[:3],
    )
    assert metrics["val/tatoeba/deu/mean"] == pytest.approx(
        100 * translation_accuracy(run(german), run(english))["mean"], abs=1e-4
    )
    first, second, gold = crosslingual_sts(tmp_path, "en", "de", "dev")
    assert metrics["val/sts/en-de"] == pytest.approx(cosine_spearman(run(first), run(second), gold), abs=1e-3)
    assert metrics["val/sts_spearman"] == pytest.approx(
        (metrics["val/sts/en-de"] + metrics["val/sts/de-en"]) / 2, abs=1e-4
    )
    assert {"val/mse/en-de", "val/mse/en-fr", "val/translation_acc", "val/tatoeba_acc"} <= set(metrics)

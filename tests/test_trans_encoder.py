"""Trans-Encoder: its losses, the pair data, cross-encoder scoring, the cycle through the CLI (with the
mutual variant and a restart after a kill), and the exported encoders."""

import json
import math
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from conftest import REPO, run_dirs
from settings import TRANS_ENCODER

from kdlab.data.pairs import PairData
from kdlab.errors import ConfigError, DataError
from kdlab.losses import pseudo_label_loss, simcse_loss

TOY = TRANS_ENCODER  # tests/settings.py
KEY = "method.cross.loss"


# --- losses ------------------------------------------------------------------------------------------
def test_bce_on_logits_and_mse_on_cosines_match_independent_formulas():
    logits = torch.tensor([0.3, -1.2, 2.0])
    labels = torch.tensor([0.9, 0.2, 0.5])
    p = [1 / (1 + math.exp(-z)) for z in logits.tolist()]
    bce = -sum(y * math.log(q) + (1 - y) * math.log(1 - q) for y, q in zip(labels.tolist(), p)) / 3
    assert pseudo_label_loss("bce", logits, labels, scores_are_logits=True, key=KEY).item() == pytest.approx(
        bce, abs=1e-6
    )
    assert pseudo_label_loss("mse", logits, labels, scores_are_logits=True, key=KEY).item() == pytest.approx(
        sum((q - y) ** 2 for q, y in zip(p, labels.tolist())) / 3, abs=1e-6
    )
    cosines = torch.tensor([0.8, -0.1, 0.45])
    mse = ((0.8 - 0.9) ** 2 + (-0.1 - 0.2) ** 2 + (0.45 - 0.5) ** 2) / 3
    assert pseudo_label_loss("mse", cosines, labels, scores_are_logits=False, key=KEY).item() == pytest.approx(
        mse, abs=1e-6
    )
    clamped = [0.8, 1e-6, 0.45]  # bce on a cosine clamps it into (0, 1)
    bce_cos = -sum(y * math.log(c) + (1 - y) * math.log(1 - c) for y, c in zip(labels.tolist(), clamped)) / 3
    assert pseudo_label_loss("bce", cosines, labels, scores_are_logits=False, key=KEY).item() == pytest.approx(
        bce_cos, rel=1e-5
    )
    with pytest.raises(ConfigError, match=r"method.bi.loss: must be one of \['bce', 'mse'\], got 'kl'"):
        pseudo_label_loss("kl", cosines, labels, scores_are_logits=False, key="method.bi.loss")


def test_simcse_loss_is_cross_entropy_over_the_in_batch_cosine_matrix():
    z1 = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    z2 = torch.tensor([[1.0, 1.0], [0.0, 1.0]])
    s = 1 / math.sqrt(2)
    sim = [[s / 0.5, 0.0], [s / 0.5, 1 / 0.5]]  # cos(z1_i, z2_j) / τ with τ = 0.5
    expected = (
        -(
            sim[0][0]
            - math.log(math.exp(sim[0][0]) + math.exp(sim[0][1]))
            + sim[1][1]
            - math.log(math.exp(sim[1][0]) + math.exp(sim[1][1]))
        )
        / 2
    )
    assert simcse_loss(z1, z2, 0.5).item() == pytest.approx(expected, abs=1e-6)


# --- data --------------------------------------------------------------------------------------------
def pair_cfg(tmp_path, **overrides):
    train = tmp_path / "pairs.txt"
    train.write_text(
        "a cat sits||a cat is sitting\nthe sun is hot||it is cold\na cat is sitting||a cat sits\n\nthe sun is hot||it is cold\n"
    )
    dev = tmp_path / "dev.tsv"
    dev.write_text("s1\ts2\tscore\na dog\ta puppy\t4.5\nthe sea\ta car\t0.5\nred\tcrimson\t4.0\n")
    cfg = {
        "train": {"path": str(train), "separator": "||"},
        "validation": {"path": str(dev)},
        "test": {"path": str(dev)},
        "columns": {"text": "s1", "text_pair": "s2", "label": "score"},
        "max_length": 16,
        "eval_batch_size": 8,
    }
    cfg["train"]["columns"] = {"text": 0, "text_pair": 1}
    cfg.update(overrides)
    return cfg


def test_pairs_from_a_separator_file_are_deduplicated_and_the_cross_encoder_sees_both_orders(tmp_path, tiny_tokenizer):
    data = PairData(pair_cfg(tmp_path))
    assert data.pairs() == [
        ("a cat sits", "a cat is sitting"),
        ("the sun is hot", "it is cold"),
    ]  # reversed and exact repeats dropped
    assert data.info == {"pair_source": "train", "splits": ["train"], "rows": 4, "duplicates_removed": 2, "pairs": 2}
    features = data.training_features("cross", tiny_tokenizer, torch.tensor([0.25, 0.75]), 16)
    ids = lambda a, b: tiny_tokenizer(a, b, truncation=True, max_length=16)["input_ids"]  # noqa: E731
    assert features[0]["input_ids"] == ids("a cat sits", "a cat is sitting")  # (a, b) ...
    assert features[2]["input_ids"] == ids("a cat is sitting", "a cat sits")  # ... then (b, a)
    assert [f["label"] for f in features] == [0.25, 0.75, 0.25, 0.75]
    batch = next(iter(data.stage("bi", tiny_tokenizer, 8, torch.tensor([0.25, 0.75]), 16).train_dataloader()))
    assert {"a_input_ids", "a_attention_mask", "b_input_ids", "b_attention_mask", "labels"} <= set(batch)
    pairs, gold = data.labelled("validation")
    assert pairs[0] == ("a dog", "a puppy") and gold == [4.5, 0.5, 4.0]


def test_eval_pairs_as_the_pair_source_must_be_asked_for(tmp_path):
    data = PairData(pair_cfg(tmp_path, pair_source="eval_pairs"))
    assert data.pairs() == [("a dog", "a puppy"), ("the sea", "a car"), ("red", "crimson")]  # dev + test, deduplicated
    assert data.info["splits"] == ["validation", "test"]
    with pytest.raises(ConfigError, match="data.pair_source: must be train, eval_pairs .* or all_splits"):
        PairData(pair_cfg(tmp_path, pair_source="dev"))


def test_bad_pair_files_name_file_and_line(tmp_path):
    (tmp_path / "bad.txt").write_text("one||two\nno separator here\n")
    cfg = pair_cfg(tmp_path)
    cfg["train"]["path"] = str(tmp_path / "bad.txt")
    with pytest.raises(DataError, match=r"bad\.txt:2: no '\|\|' separator in this line"):
        PairData(cfg).pairs()
    (tmp_path / "empty.txt").write_text("\n\n")
    cfg["train"]["path"] = str(tmp_path / "empty.txt")
    with pytest.raises(DataError, match=r"empty\.txt: empty file: no data rows"):
        PairData(cfg).pairs()
    (tmp_path / "scores.tsv").write_text("s1\ts2\tscore\na\tb\t3.0\nc\td\thigh\n")
    with pytest.raises(DataError, match=r"scores\.tsv:3: score 'high' is not a number"):
        PairData(pair_cfg(tmp_path, validation={"path": str(tmp_path / "scores.tsv")})).labelled("validation")
    with pytest.raises(ConfigError, match="data.columns.label: the validation pairs need a gold score column"):
        PairData(pair_cfg(tmp_path, columns={"text": "s1", "text_pair": "s2"})).labelled("validation")


# --- cross-encoder -----------------------------------------------------------------------------------
def tiny_cross(tokenizer):
    from kdlab.models.cross_encoder import build_cross_encoder

    torch.manual_seed(0)
    spec = {
        "config": {
            "hidden_size": 32,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "intermediate_size": 64,
            "initializer_range": 0.5,
        }
    }
    return build_cross_encoder(spec, tokenizer, "model.cross_encoders[0]").eval()


def test_cross_encoder_labels_are_the_mean_of_both_orders(tiny_tokenizer):
    from kdlab.models.cross_encoder import cross_scores

    model = tiny_cross(tiny_tokenizer)
    pairs = [("the plot was good", "the acting was bad"), ("the food", "the service was slow and cold")]

    def sigma(a, b):  # one pair at a time, no padding, no batching
        with torch.no_grad():
            return torch.sigmoid(model(**tiny_tokenizer(a, b, return_tensors="pt")).logits).item()

    forward = [sigma(a, b) for a, b in pairs]
    backward = [sigma(b, a) for a, b in pairs]
    assert forward[0] != pytest.approx(backward[0], abs=1e-3)  # the order matters to a cross-encoder
    got = cross_scores(model, tiny_tokenizer, pairs, 32, 8)
    assert got.tolist() == pytest.approx([(f + b) / 2 for f, b in zip(forward, backward)], abs=1e-5)
    assert cross_scores(model, tiny_tokenizer, pairs, 32, 8, both_orders=False).tolist() == pytest.approx(
        forward, abs=1e-5
    )


def test_a_tokenizer_without_a_pair_template_is_refused_for_a_cross_encoder(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from kdlab.models.cross_encoder import check_pair_tokenizer

    raw = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    raw.pre_tokenizer = pre_tokenizers.Whitespace()
    raw.train_from_iterator(
        ["a cat sits", "b dog runs"], trainers.WordPieceTrainer(vocab_size=60, special_tokens=["[PAD]", "[UNK]"])
    )
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=raw, unk_token="[UNK]", pad_token="[PAD]")
    with pytest.raises(
        ConfigError, match=r"model.cross_encoders\[0\].tokenizer: the tokenizer .* cannot encode sentence pairs"
    ):
        check_pair_tokenizer(tokenizer, "model.cross_encoders[0].tokenizer")


# --- the cycle through the CLI -----------------------------------------------------------------------
def read_tsv(path):
    lines = path.read_text(encoding="utf-8").splitlines()
    header = lines[0].split("\t")
    return [dict(zip(header, line.split("\t"))) for line in lines[1:]]


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("te")
    env = {
        **os.environ,
        "KDLAB_OUTPUT_DIR": str(tmp / "outputs"),
        "KDLAB_CACHE_DIR": str(tmp / "cache"),
        "HF_HUB_OFFLINE": "1",
    }
    out = subprocess.run(
        [sys.executable, "-m", "kdlab.train", *TOY], cwd=REPO, env=env, capture_output=True, text=True, timeout=600
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return run_dirs(tmp)[-1]


def test_one_cycle_through_the_cli_keeps_checkpoints_pseudo_labels_and_dev_scores(toy_run):
    progress = json.loads((toy_run / "progress.json").read_text())
    assert progress["done"] == [
        "start",
        "cycle1/bi_labels",
        "cycle1/cross_train",
        "cycle1/cross_labels",
        "cycle1/bi_train",
    ]
    for kind in ("bi", "cross"):
        assert (toy_run / "cycle1" / kind / "checkpoints" / "best.ckpt").exists()
        rows = read_tsv(toy_run / "cycle1" / f"pseudo_labels_{kind}.tsv")
        assert len(rows) == 160 and all(0.0 <= float(r["label"]) <= 1.0 for r in rows)
    info = json.loads((toy_run / "trans_encoder.json").read_text())
    assert info["pairs"]["pair_source"] == "train" and info["losses"] == {"bi_to_cross": "bce", "cross_to_bi": "mse"}
    metrics = json.loads((toy_run / "metrics.json").read_text())
    for key in (
        "bi_start/val/spearman",
        "bi_cycle1/val/spearman",
        "cross_cycle1/val/spearman",
        "bi/test/spearman",
        "cross/test/spearman",
    ):
        assert -100 <= metrics[key] <= 100, key
    assert metrics["bi/best_cycle"] == 1.0


def test_exported_encoders_load_back_with_the_scores_kdlab_reported(toy_run):
    from scipy.stats import spearmanr
    from sentence_transformers import SentenceTransformer
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from kdlab.data.embedded import sts_toy

    metrics = json.loads((toy_run / "metrics.json").read_text())
    dev = sts_toy("validation", 80)
    a, b, gold = [r["sentence1"] for r in dev], [r["sentence2"] for r in dev], [r["score"] for r in dev]
    bi = SentenceTransformer(str(toy_run / "best" / "bi"), device="cpu")
    ea, eb = bi.encode(a, convert_to_tensor=True), bi.encode(b, convert_to_tensor=True)
    cosines = torch.nn.functional.cosine_similarity(ea, eb).numpy()
    assert 100 * spearmanr(cosines, gold)[0] == pytest.approx(metrics["bi/val/spearman"], abs=1e-3)
    cross = AutoModelForSequenceClassification.from_pretrained(str(toy_run / "best" / "cross")).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(toy_run / "best" / "cross"))
    with torch.no_grad():
        logits = cross(**tokenizer(a, b, padding=True, return_tensors="pt")).logits.view(-1).numpy()
    # kdlab ranks logits (σ is monotone; in float32 it can tie logits that differ, so compare before σ)
    assert 100 * spearmanr(logits, gold)[0] == pytest.approx(metrics["cross/val/spearman"], abs=1e-3)


def test_mutual_variant_averages_the_models_scores(cli):
    out = cli(*TOY, "model=trans_tiny_mutual", "method.simcse.enabled=false")
    assert out.returncode == 0, out.stderr[-3000:]
    run = run_dirs(cli.tmp_path)[-1]
    info = json.loads((run / "trans_encoder.json").read_text())
    assert info["bi_encoders"] == ["bi0", "bi1"] and info["cross_encoders"] == ["cross0", "cross1"]
    for kind in ("bi", "cross"):
        rows = read_tsv(run / "cycle1" / f"pseudo_labels_{kind}.tsv")
        first, second = (float(r[f"{kind}0"]) for r in rows), (float(r[f"{kind}1"]) for r in rows)
        pairs = list(zip(first, second))
        assert any(abs(x - y) > 1e-3 for x, y in pairs)  # two different models ...
        assert [float(r["label"]) for r in rows] == pytest.approx(
            [(x + y) / 2 for x, y in pairs], abs=1e-6
        )  # ... averaged
    for name in ("bi0", "bi1", "cross0", "cross1"):
        assert (run / "cycle1" / name / "model" / "config.json").exists()


def test_a_killed_run_restarts_from_its_last_finished_step(cli, tmp_path):
    env = {
        **os.environ,
        "KDLAB_OUTPUT_DIR": str(tmp_path / "outputs"),
        "KDLAB_CACHE_DIR": str(tmp_path / "cache"),
        "HF_HUB_OFFLINE": "1",
    }
    args = [*TOY, "method.simcse.enabled=false", "method.bi.epochs=3"]
    process = subprocess.Popen(
        [sys.executable, "-m", "kdlab.train", *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.time() + 300
    progress_file = None
    while time.time() < deadline and process.poll() is None:
        found = run_dirs(tmp_path)
        progress_file = found[-1] / "progress.json" if found else None
        if progress_file and progress_file.exists() and "cycle1/cross_labels" in progress_file.read_text():
            break
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    run = progress_file.parent
    done = json.loads(progress_file.read_text())["done"]
    assert "cycle1/cross_labels" in done and "cycle1/bi_train" not in done, done
    cross_ckpt = run / "cycle1" / "cross" / "checkpoints" / "best.ckpt"
    stamp = cross_ckpt.stat().st_mtime_ns
    labels_before = (run / "cycle1" / "pseudo_labels_cross.tsv").read_text()

    refused = cli(*args, f"hydra.run.dir={run}")  # without resume=auto an unfinished run folder is left alone
    assert refused.returncode == 2 and "holds an unfinished run; add resume=auto" in refused.stderr

    out = cli(*args, f"hydra.run.dir={run}", "resume=auto")
    assert out.returncode == 0, out.stderr[-3000:]
    assert "resuming" in out.stderr + out.stdout
    assert json.loads(progress_file.read_text())["done"][-1] == "cycle1/bi_train"
    assert cross_ckpt.stat().st_mtime_ns == stamp  # the finished cross-encoder was not trained again
    assert (run / "cycle1" / "pseudo_labels_cross.tsv").read_text() == labels_before
    assert "bi_cycle1/val/spearman" in json.loads((run / "metrics.json").read_text())

    changed = cli(*args, "method.bi.optimizer.lr=1e-3", f"hydra.run.dir={run}", "resume=auto")
    assert changed.returncode == 2
    assert "kdlab: error: resume:" in changed.stderr and "another config" in changed.stderr

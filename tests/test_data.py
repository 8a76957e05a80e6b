"""The shared data layer: local files with column mappings, HF datasets, the embedded default, and every bad input."""

import json

import pytest
import torch

from kdlab.data.collate import PadCollator, tokenize
from kdlab.data.embedded import reviews
from kdlab.data.loading import check_columns, load_records
from kdlab.data.text import TextDataModule
from kdlab.errors import ConfigError, DataError

COLUMNS = {"text": "sentence", "text_pair": None, "label": "label"}


def data_cfg(train, validation=None, test=None, **overrides):
    cfg = {
        "name": "t",
        "task": "classification",
        "labels": ["neg", "pos"],
        "label_scale": None,
        "columns": dict(COLUMNS),
        "train": train,
        "validation": validation or train,
        "test": test or train,
        "max_length": 16,
        "batch_size": 4,
        "eval_batch_size": 8,
        "num_workers": 0,
    }
    cfg.update(overrides)
    return cfg


def write(path, text, encoding="utf-8"):
    path.write_bytes(text.encode(encoding) if isinstance(text, str) else text)
    return path


def test_reads_tsv_csv_and_jsonl_with_column_mapping(tmp_path):
    tsv = write(tmp_path / "a.tsv", 'sentence\tlabel\nit is "great"\tpos\nbad\tneg\n')
    csv_ = write(tmp_path / "a.csv", 'label,sentence\npos,"fine, really"\nneg,awful\n')
    jsonl = write(
        tmp_path / "a.jsonl",
        json.dumps({"sentence": "ok", "label": "pos"}) + "\n\n" + json.dumps({"sentence": "no", "label": "neg"}) + "\n",
    )
    for path, first in ((tsv, 'it is "great"'), (csv_, "fine, really"), (jsonl, "ok")):
        module = TextDataModule(data_cfg({"path": str(path)}))
        rows = module.records("train")
        assert [r["text"] for r in rows][0] == first
        assert [r["label"] for r in rows] == [1, 0]
        assert rows[0]["_where"].endswith(f"{path.name}:2" if path.suffix != ".jsonl" else f"{path.name}:1")


def test_headerless_file_uses_field_indices_and_pairs(tmp_path):
    path = write(
        tmp_path / "sts.tsv",
        "g\tf\t2012\t1\t4.0\tA man plays.\tA man is playing.\textra\ng\tf\t2012\t2\t1.5\tA dog.\tA cat.\n",
    )
    cfg = data_cfg(
        {"path": str(path), "header": False},
        task="regression",
        labels=None,
        label_scale=5.0,
        columns={"text": 5, "text_pair": 6, "label": 4},
    )
    rows = TextDataModule(cfg).records("train")
    assert [(r["text"], r["text_pair"], r["label"]) for r in rows] == [
        ("A man plays.", "A man is playing.", 0.8),
        ("A dog.", "A cat.", 0.3),
    ]


def test_holdout_splits_one_file_into_disjoint_train_and_dev_parts(tmp_path):
    lines = "".join(f"s{i}\t{'pos' if i % 2 else 'neg'}\n" for i in range(40))
    path = write(tmp_path / "train_only.tsv", "sentence\tlabel\n" + lines)
    held = load_records({"path": str(path), "holdout": {"size": 8, "seed": 1, "part": "held"}}, COLUMNS)
    rest = load_records({"path": str(path), "holdout": {"size": 8, "seed": 1, "part": "rest"}}, COLUMNS)
    assert len(held) == 8 and len(rest) == 32
    assert sorted(r["text"] for r in held + rest) == sorted(f"s{i}" for i in range(40))
    again = load_records({"path": str(path), "holdout": {"size": 8, "seed": 1, "part": "held"}}, COLUMNS)
    other = load_records({"path": str(path), "holdout": {"size": 8, "seed": 2, "part": "held"}}, COLUMNS)
    assert held == again and held != other
    # a limit applies after the split: the train part never reaches into the held-out rows
    limited = load_records({"path": str(path), "limit": 10, "holdout": {"size": 8, "seed": 1, "part": "rest"}}, COLUMNS)
    assert len(limited) == 10 and not {r["text"] for r in limited} & {r["text"] for r in held}
    for spec, match in (
        ({"size": 40, "part": "held"}, r"holdout\.size: must be an integer in \[1, 39\]"),
        ({"size": 8, "part": "dev"}, r"holdout\.part: must be held .* got 'dev'"),
        ({"size": 8, "part": "held", "fraction": 0.1}, r"holdout: unknown keys \['fraction'\]"),
    ):
        with pytest.raises(ConfigError, match=match):
            load_records({"path": str(path), "holdout": spec}, COLUMNS)


def test_a_task_without_a_test_source_has_no_test_split(tmp_path, tiny_tokenizer):
    path = write(tmp_path / "t.tsv", "sentence\tlabel\nok\tpos\nbad\tneg\n")
    cfg = data_cfg({"path": str(path)})
    cfg["test"] = None
    module = TextDataModule(cfg, tokenizer=tiny_tokenizer)
    module.setup()
    assert module.has_split("validation") and not module.has_split("test")
    with pytest.raises(ConfigError, match=r"^data\.test: needs a source \(path, hf or embedded\)$"):
        module.records("test")


def test_limit_takes_a_seeded_subset_in_file_order(tmp_path):
    lines = "".join(f"s{i}\t{'pos' if i % 2 else 'neg'}\n" for i in range(50))
    path = write(tmp_path / "big.tsv", "sentence\tlabel\n" + lines)
    first = load_records({"path": str(path), "limit": 10, "seed": 3}, COLUMNS)
    again = load_records({"path": str(path), "limit": 10, "seed": 3}, COLUMNS)
    other = load_records({"path": str(path), "limit": 10, "seed": 4}, COLUMNS)
    numbers = [int(r["text"][1:]) for r in first]
    assert first == again and first != other and len(first) == 10 and numbers == sorted(numbers)


@pytest.mark.parametrize(
    "name,content,match",
    [
        ("few.tsv", "sentence\tlabel\ngood\tpos\nonly-one-column\n", r"few\.tsv:3: expected 2 columns, found 1"),
        (
            "many.tsv",
            "sentence\tlabel\ngood\tpos\tsurplus\n",
            r"many\.tsv:2: expected 2 columns \(as the header\), found 3",
        ),
        (
            "label.tsv",
            "sentence\tlabel\ngood\tpos\nmeh\tneutral\n",
            r"label\.tsv:3: label 'neutral' is not in the label set \['neg', 'pos'\]",
        ),
        ("empty.tsv", "", r"empty\.tsv: empty file"),
        ("header_only.tsv", "sentence\tlabel\n", r"header_only\.tsv: empty file"),
        ("blank_text.tsv", "sentence\tlabel\n  \tpos\n", r"blank_text\.tsv:2: empty text"),
        ("bad.jsonl", '{"sentence": "a", "label": "pos"}\n{"sentence": oops}\n', r"bad\.jsonl:2: invalid JSON"),
        (
            "nokey.jsonl",
            '{"sentence": "a", "label": "pos"}\n{"sentence": "b"}\n',
            r"nokey\.jsonl:2: missing key 'label'",
        ),
    ],
)
def test_bad_files_raise_data_error_naming_file_and_line(tmp_path, name, content, match):
    path = write(tmp_path / name, content)
    with pytest.raises(DataError, match=match):
        TextDataModule(data_cfg({"path": str(path)})).records("train")


def test_score_that_is_not_a_number(tmp_path):
    path = write(tmp_path / "s.tsv", "sentence\tlabel\nfine\t3.5\nodd\tabc\n")
    cfg = data_cfg({"path": str(path)}, task="regression", labels=None)
    with pytest.raises(DataError, match=r"s\.tsv:3: score 'abc' is not a number"):
        TextDataModule(cfg).records("train")


def test_missing_file_and_bad_encoding(tmp_path):
    with pytest.raises(DataError, match=r"nowhere\.tsv: file not found"):
        load_records({"path": str(tmp_path / "nowhere.tsv")}, COLUMNS)
    path = write(tmp_path / "latin.tsv", "sentence\tlabel\ngood\tpos\ncaf\xe9\tneg\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"latin\.tsv:3: not valid utf-8-sig text"):
        load_records({"path": str(path)}, COLUMNS)


def test_unknown_column_is_a_config_error_from_the_header_alone(tmp_path):
    path = write(tmp_path / "a.tsv", "sentence\tlabel\ngood\tpos\n")
    with pytest.raises(
        ConfigError,
        match=r"data\.columns\.text: column 'sentense' is not in .*a\.tsv \(columns: \['sentence', 'label'\]\)",
    ):
        check_columns({"path": str(path)}, {"text": "sentense", "label": "label"}, "data.columns")


def test_hugging_face_dataset_source(tmp_path):
    datasets = pytest.importorskip("datasets")
    path = write(tmp_path / "hf.csv", "sentence,label\ngood,pos\nbad,neg\nfine,pos\n")
    records = load_records({"hf": "csv", "data_files": str(path), "hf_split": "train"}, COLUMNS)
    assert [(r["text"], r["label"]) for r in records] == [("good", "pos"), ("bad", "neg"), ("fine", "pos")]
    assert records[0]["_where"] == "hf:csv/train:1"
    assert datasets is not None


def test_embedded_reviews_are_deterministic_disjoint_and_balanced():
    train, val, test = reviews("train"), reviews("validation"), reviews("test")
    assert reviews("train") == train
    texts = [{r["text"] for r in split} for split in (train, val, test)]
    assert not (texts[0] & texts[1]) and not (texts[0] & texts[2]) and not (texts[1] & texts[2])
    share = sum(r["label"] == "positive" for r in train) / len(train)
    assert 0.45 < share < 0.55


def test_tokenize_truncates_and_collator_pads_to_longest_in_batch(tiny_tokenizer):
    texts = ["the plot was good", "the food was not very good but the view was lovely and the staff was warm"]
    features = tokenize(tiny_tokenizer, texts, None, max_length=8)
    assert len(features[1]["input_ids"]) == 8 and len(features[0]["input_ids"]) < 8
    for f, label in zip(features, (1, 0)):
        f["label"] = label
    batch = PadCollator(tiny_tokenizer.pad_token_id)(features)
    assert batch["input_ids"].shape == (2, 8)
    short = len(features[0]["input_ids"])
    assert batch["attention_mask"][0].tolist() == [1] * short + [0] * (8 - short)
    assert (batch["input_ids"][0, short:] == tiny_tokenizer.pad_token_id).all()
    assert batch["labels"].tolist() == [1, 0]
    # a batch of short sequences is padded only to its own longest
    assert PadCollator(tiny_tokenizer.pad_token_id)(features[:1])["input_ids"].shape == (1, short)


def test_sentence_pairs_get_segment_ids(tiny_tokenizer):
    features = tokenize(tiny_tokenizer, ["the plot was good"], ["the food was bad"], max_length=32)
    types = features[0]["token_type_ids"]
    assert 0 in types and 1 in types and types == sorted(types)


def test_datamodule_batches_are_dynamically_padded(tiny_tokenizer):
    cfg = data_cfg(
        {"embedded": "reviews", "split": "train", "size": 40},
        labels=["negative", "positive"],
        columns={"text": "text", "text_pair": None, "label": "label"},
    )
    module = TextDataModule(cfg, tokenizer=tiny_tokenizer)
    module.setup("fit")
    batch = next(iter(module.val_dataloader()))
    lengths = batch["attention_mask"].sum(dim=1)
    assert batch["input_ids"].shape[1] == int(lengths.max())
    assert batch["labels"].dtype == torch.long and module.num_labels == 2


def test_length_grouped_batches_cover_every_example_once_and_pad_less():
    from kdlab.data.sampling import LengthGroupedBatchSampler

    torch.manual_seed(0)
    lengths = [int(x) for x in torch.randint(3, 60, (1000,))]
    sampler = LengthGroupedBatchSampler(lengths, batch_size=16, mega_batches=20)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 63
    assert sorted(i for b in batches for i in b) == list(range(1000))
    padded = sum(len(b) * max(lengths[i] for i in b) for b in batches)
    random_padded = sum(16 * max(lengths[i] for i in range(s, min(s + 16, 1000))) for s in range(0, 1000, 16))
    assert padded < 0.75 * random_padded
    assert list(sampler) != batches  # a new grouping each epoch


def test_embedded_splits_stay_disjoint_for_any_size_and_seed():
    train = {r["text"] for r in reviews("train", size=12000, seed=1)}
    validation = {r["text"] for r in reviews("validation", seed=2)}
    test = {r["text"] for r in reviews("test", size=1500)}
    assert len(train) == 12000 and not (train & validation) and not (train & test) and not (validation & test)

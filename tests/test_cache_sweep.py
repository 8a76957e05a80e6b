"""Per-row reuse through kdlab-train (issue 20, item 2): a sweep over data.train.limit with a given teacher runs the
teacher once per distinct training input, and each job's teacher.json and log say how many rows it computed and read."""

import json

from conftest import run_dirs


def test_a_sweep_over_the_training_limit_computes_each_row_once(cli, tmp_path, tiny_tokenizer):
    from kdlab.models.backbone import build_model
    from kdlab.models.files import export_model

    tiny = {"config": {"hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 32}}
    teacher = build_model(tiny, "classification", ["negative", "positive"], tiny_tokenizer)
    export_model(teacher, tiny_tokenizer, tmp_path / "teacher")
    result = cli(
        "-m",
        "data.train.limit=60,120,240",
        "data.train.size=240",
        "data.validation.size=32",
        "data.test.size=32",
        "debug=fast",
        "method.deploy_benchmark=false",
        f"model.teacher.trained={tmp_path / 'teacher'}",
        "model.teacher.tokenizer=null",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (sweep,) = {path.parent for path in (tmp_path / "outputs").rglob("multirun.yaml")}
    jobs = sorted((p for p in sweep.iterdir() if p.is_dir() and p.name.isdigit()), key=lambda p: int(p.name))
    counts = []
    for job in jobs:
        outputs = json.loads((job / "teacher" / "teacher.json").read_text())["outputs"]
        counts.append((outputs["rows"], outputs["computed"], outputs["read"]))
        log = (job / "train.log").read_text()
        assert f"teacher outputs: {outputs['computed']} rows computed, {outputs['read']} read from the cache" in log
    assert counts == [(60, 60, 0), (120, 60, 60), (240, 120, 120)]  # 240 rows computed in all, not 420
    assert not run_dirs(tmp_path)

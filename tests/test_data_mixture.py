"""Dataset mixtures: three local sources in three schemas, a cross-source duplicate, a planted benchmark
question and an answer-only source, every row accounted for; weights, splits and determinism."""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from medsft import cli
from medsft.chat_format import assistant_content, is_non_thinking
from medsft.data import prepare_mixture
from medsft.mixture import MixtureError, load_mixture

BENCHMARK = [
    {
        "question": "患者男，45岁，饮酒后上腹部剧痛并向腰背部放射，血淀粉酶显著升高，最可能的诊断是",
        "options": "(A) 急性胰腺炎\n(B) 急性胆囊炎\n(C) 消化性溃疡穿孔\n(D) 急性心肌梗死",
        "answer": "(A)",
        "source": "planted",
    },
    {
        "question": "治疗青霉素过敏性休克首选的药物是",
        "options": "(A) 肾上腺素\n(B) 地塞米松\n(C) 异丙嗪\n(D) 多巴胺",
        "answer": "(A)",
        "source": "planted",
    },
]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def reasoning_rows(count: int, prefix: str) -> list[dict]:
    return [
        {
            "question": f"{prefix}问题{i}：感冒第{i}天应该注意什么？",
            "think": f"思考{i}。",
            "answer": f"回答{i}。",
        }
        for i in range(count)
    ]


@pytest.fixture
def three_sources(tmp_path) -> Path:
    """delicate-like (question/think/answer), o1-like (Question/Complex_CoT/Response, a .json list) and an
    answer-only source (instruction/output) with a duplicate of an o1 question; a planted benchmark question,
    reworded, in the first source."""
    first = reasoning_rows(20, "甲")
    # the benchmark's first stem inside a longer question, punctuation changed, options reordered
    first.append(
        {
            "question": "请帮我看这道题： 患者男, 45 岁, 饮酒后上腹部剧痛, 并向腰背部放射；血淀粉酶显著升高。"
            "最可能的诊断是？ A. 急性心肌梗死 B. 急性胰腺炎 C. 急性胆囊炎 D. 消化性溃疡穿孔",
            "think": "饮酒、上腹痛放射至背部、淀粉酶升高。",
            "answer": "急性胰腺炎。",
        }
    )
    first.append({"question": "缺少回答"})  # missing_field
    write_jsonl(tmp_path / "delicate" / "data.jsonl", first)
    o1 = [
        {
            "Question": f"乙问题{i}：高血压患者第{i}周如何复查？",
            "Complex_CoT": f"推理{i}。",
            "Response": f"答{i}。",
        }
        for i in range(10)
    ]
    o1_dir = tmp_path / "o1"
    o1_dir.mkdir()
    (o1_dir / "medical_o1_sft_Chinese.json").write_text(json.dumps(o1, ensure_ascii=False), encoding="utf-8")
    (o1_dir / "medical_o1_sft.json").write_text(json.dumps(o1[:2], ensure_ascii=False), encoding="utf-8")
    answers = [{"instruction": f"丙问题{i}：如何预防龋齿第{i}条？", "output": f"丙答{i}。"} for i in range(8)]
    answers.append({"instruction": "乙问题3：高血压患者第3周如何复查？", "output": "另一种回答。"})
    write_jsonl(tmp_path / "answers.jsonl", answers)
    (tmp_path / "bench").mkdir()
    (tmp_path / "bench" / "planted.json").write_text(
        json.dumps(BENCHMARK, ensure_ascii=False), encoding="utf-8"
    )
    mixture = {
        "datasets": [
            {"id": "krisfu/delicate_medical_r1_data", "path": "./delicate"},
            {
                "id": "FreedomIntelligence/medical-o1-reasoning-SFT",
                "path": "./o1",
                "config": "zh",
                "weight": 2,
            },
            {
                "id": "./answers.jsonl",
                "columns": {"question": "instruction", "answer": "output"},
                "thinking": False,
                "weight": 0.5,
            },
        ],
        "seed": 7,
        "val_ratio": 0.2,
        "decontaminate": ["./bench"],
    }
    path = tmp_path / "mix.yaml"
    path.write_text(yaml.safe_dump(mixture, allow_unicode=True), encoding="utf-8")
    return path


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_three_sources_every_row_accounted_for(three_sources, tmp_path):
    report = prepare_mixture(three_sources, tmp_path / "out")
    out = tmp_path / "out"
    train, val, rejects = (read_jsonl(out / f"{name}.jsonl") for name in ("train", "val", "rejects"))
    delicate, o1, answers = report["sources"]

    assert delicate["rows"] == {"read": 22, "kept": 20, "rejected": 2}
    assert delicate["rejected_by_reason"] == {"missing_field": 1, "benchmark_overlap": 1}
    overlap = next(r for r in rejects if r["reason"] == "benchmark_overlap")
    assert overlap["benchmark_question"] == BENCHMARK[0]["question"]
    assert "planted" in overlap["benchmark"] and "最可能的诊断是" in overlap["detail"]

    assert o1["rows"] == {"read": 10, "kept": 10, "rejected": 0}  # config zh: the en file is left out
    assert {"file": "medical_o1_sft.json", "reason": "another config than 'zh'"} in o1["skipped_files"]
    assert o1["kept"]["train"] + o1["kept"]["val"] == 10
    assert o1["after_weighting"]["train"] == 2 * o1["kept"]["train"]  # weight 2 repeats every train row

    duplicate = next(r for r in rejects if r["reason"] == "duplicate")
    assert duplicate["source"] == "./answers.jsonl"
    assert duplicate["kept_by"] == "FreedomIntelligence/medical-o1-reasoning-SFT:zh"
    assert answers["rows"]["read"] == 9
    assert answers["rejected_by_reason"] == {"duplicate": 1, "sampled_out": 4}  # weight 0.5 keeps 4 of 8
    assert answers["rows"]["kept"] == 4 and answers["kept"]["non_thinking"] == 4

    # the totals add up, per source and overall
    for source in report["sources"]:
        rows = source["rows"]
        assert (
            rows["read"]
            == rows["kept"] + rows["rejected"]
            == rows["kept"] + sum(source["rejected_by_reason"].values())
        )
        assert source["kept"]["train"] + source["kept"]["val"] == rows["kept"]
    assert report["rows"]["read"] == 22 + 10 + 9 == report["rows"]["kept"] + len(rejects)
    assert len(train) == sum(s["after_weighting"]["train"] for s in report["sources"])
    assert len(val) == sum(s["kept"]["val"] for s in report["sources"])
    # each source keeps its share in val (val_ratio 0.2 of its own rows)
    assert [s["kept"]["val"] for s in report["sources"]] == [4, 2, 1]

    # the answer-only rows train the non-thinking mode: an empty think block, as Qwen3 renders it
    non_thinking = [row for row in train + val if is_non_thinking(row["messages"])]
    assert len(non_thinking) == 4
    assert non_thinking[0]["messages"][-1]["content"].startswith(assistant_content("", ""))
    assert report["splits"]["non_thinking"]["train"] + report["splits"]["non_thinking"]["val"] == 4


def test_deterministic_for_a_seed_and_different_for_another(three_sources, tmp_path):
    prepare_mixture(three_sources, tmp_path / "a")
    prepare_mixture(three_sources, tmp_path / "b")
    for name in ("train.jsonl", "val.jsonl", "rejects.jsonl"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    content = yaml.safe_load(three_sources.read_text(encoding="utf-8"))
    content["seed"] = 8
    three_sources.write_text(yaml.safe_dump(content, allow_unicode=True), encoding="utf-8")
    prepare_mixture(three_sources, tmp_path / "c")
    assert (tmp_path / "a" / "val.jsonl").read_bytes() != (tmp_path / "c" / "val.jsonl").read_bytes()


def test_no_think_ratio_turns_that_share_non_thinking(tmp_path):
    write_jsonl(tmp_path / "rows.jsonl", reasoning_rows(20, "丁"))
    mix = tmp_path / "mix.yaml"
    mix.write_text(
        yaml.safe_dump({"datasets": [{"id": "./rows.jsonl", "no_think_ratio": 0.25}], "val_ratio": 0.1}),
        encoding="utf-8",
    )
    report = prepare_mixture(mix, tmp_path / "out")
    assert report["sources"][0]["kept"]["non_thinking"] == 5
    rows = read_jsonl(tmp_path / "out" / "train.jsonl") + read_jsonl(tmp_path / "out" / "val.jsonl")
    plain = [row for row in rows if is_non_thinking(row["messages"])]
    assert len(plain) == 5 and all(row["messages"][-1]["content"].endswith("。") for row in plain)


def test_command_and_one_line_errors(three_sources, tmp_path, capsys):
    out_dir = tmp_path / "processed"
    assert (
        cli.main(["data", "--mixture", str(three_sources), "--out-dir", str(out_dir), "--max-length", "none"])
        == 0
    )
    assert (out_dir / "mix" / "report.json").is_file()
    assert "rows read 41 = kept 34 + rejected 7" in capsys.readouterr().err

    bad = tmp_path / "bad.yaml"
    for content, expected in (
        ({"datasets": [{"id": "./x.jsonl", "wieght": 2}]}, "unknown key 'wieght'"),
        ({"datasets": [{"id": "./x.jsonl", "weight": 0}]}, "must be above 0"),
        ({"datasets": [{"id": "./x.jsonl", "thinking": False, "no_think_ratio": 0.5}]}, "thinking source"),
        ({"datasets": []}, "non-empty list"),
        (
            {"datasets": [{"id": "FreedomIntelligence/medical-o1-reasoning-SFT", "config": "fr"}]},
            "configs en, zh",
        ),
    ):
        bad.write_text(yaml.safe_dump(content), encoding="utf-8")
        with pytest.raises(MixtureError, match=expected):
            load_mixture(bad)
    bad.write_text(yaml.safe_dump({"datasets": [{"id": "./x.jsonl"}], "decontaminate": ["nosuchbench"]}))
    write_jsonl(tmp_path / "x.jsonl", reasoning_rows(3, "戊"))
    assert cli.main(["data", "--mixture", str(bad), "--out-dir", str(out_dir), "--max-length", "none"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Unknown benchmark 'nosuchbench'" in err[0]
    assert not (out_dir / "bad").exists()
    bad.write_text("datasets:\n  - id: ./x.jsonl\n    weight: 2\n    weight: 0.5\n", encoding="utf-8")
    with pytest.raises(MixtureError, match=r"key 'weight' is set twice \(lines 3 and 4\)"):
        load_mixture(bad)
    bad.write_text("datasets: [\n", encoding="utf-8")
    for mixture, expected in ((bad, "not valid YAML"), (tmp_path / "none.yaml", "cannot be read")):
        assert cli.main(["data", "--mixture", str(mixture), "--out-dir", str(out_dir)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and expected in err[0]


def test_wrong_columns_name_the_source(tmp_path):
    write_jsonl(tmp_path / "x.jsonl", [{"q": "问题", "a": "回答"}])
    mix = tmp_path / "mix.yaml"
    mix.write_text(yaml.safe_dump({"datasets": [{"id": "./x.jsonl"}]}), encoding="utf-8")
    with pytest.raises(Exception, match=r"Source ./x.jsonl: 0 of 1 rows converted .*columns:"):
        prepare_mixture(mix, tmp_path / "out")


def test_shipped_mixture_loads_by_name_and_path():
    from medsft.mixture import KNOWN_SOURCES
    from medsft.paths import recipes_dir

    by_name = load_mixture("mix_zh")
    assert by_name == load_mixture(recipes_dir() / "data" / "mix_zh.yaml")
    assert [source.id for source in by_name.sources] == list(KNOWN_SOURCES)  # no columns needed
    assert by_name.decontaminate == ("xmedbench",)
    assert any(source.no_think_ratio for source in by_name.sources)
    with pytest.raises(MixtureError, match="shipped mixtures: mix_zh"):
        load_mixture("mix_fr")


def test_flags_a_mixture_file_holds_are_refused_beside_it(three_sources, tmp_path, capsys):
    for flag in (["--seed", "3"], ["--question-field", "Question"], ["--src", "x.jsonl"]):
        with pytest.raises(SystemExit) as stopped:
            cli.main(["data", "--mixture", str(three_sources), "--out-dir", str(tmp_path), *flag])
        assert stopped.value.code == 2
        assert f"{flag[0]} does not apply to --mixture" in capsys.readouterr().err


def test_a_hub_source_that_cannot_be_downloaded_says_how_to_pass_a_local_copy(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    mix = tmp_path / "mix.yaml"
    mix.write_text(yaml.safe_dump({"datasets": [{"id": "hf:FreedomIntelligence/medical-o1-reasoning-SFT"}]}))
    with pytest.raises(Exception, match=r"Hugging Face hub dataset failed .*`path: DIR` beside its id"):
        prepare_mixture(mix, tmp_path / "out")


def test_shipped_mixture_and_recipe_run_end_to_end_on_local_stand_ins(tmp_path, real_val_rows):
    """recipes/data/mix_zh.yaml with each hub source replaced by a local stand-in in its own schema (the real
    delicate rows; medical-o1's and R1-distill's field and file names), decontaminated against the real
    XMedBench, then recipes/mix_zh.yaml trained at the smoke shape on CPU."""
    from conftest import require_shared

    from medsft import train
    from medsft.paths import recipes_dir
    from medsft.recipe import load_recipe

    benchmark = json.loads(require_shared("benchmarks/xmedbench_zh/test_zh.json").read_text(encoding="utf-8"))
    real = [json.loads(line) for line in real_val_rows.read_text(encoding="utf-8").splitlines()]
    o1 = [
        {"Question": f"乙问题{i}：高血压患者如何复查（{i}）？", "Complex_CoT": "推理。", "Response": "回答。"}
        for i in range(20)
    ]
    o1.append({"Question": real[0]["question"], "Complex_CoT": "另一推理。", "Response": "另一回答。"})
    (tmp_path / "o1").mkdir()
    (tmp_path / "o1" / "medical_o1_sft_Chinese.json").write_text(json.dumps(o1, ensure_ascii=False), "utf-8")
    (tmp_path / "o1" / "medical_o1_sft.json").write_text(json.dumps(o1[:3], ensure_ascii=False), "utf-8")
    fields = ("question", "reasoning (reasoning_content)", "response (content)")
    distill = [
        dict(zip(fields, (f"丙问题{i}：糖尿病饮食（{i}）？", "推理。", "回答。"), strict=True))
        for i in range(20)
    ]
    planted = next(q for q in benchmark if len(q["question"]) > 30)
    distill.append(
        dict(
            zip(
                fields,
                (f"请解答：{planted['question']}\n{planted['options']}", "推理。", "答。"),
                strict=True,
            )
        )
    )
    (tmp_path / "r1").mkdir()
    (tmp_path / "r1" / "medical_r1_distill_sft_Chinese.json").write_text(
        json.dumps(distill, ensure_ascii=False), "utf-8"
    )
    mixture = yaml.safe_load((recipes_dir() / "data" / "mix_zh.yaml").read_text(encoding="utf-8"))
    copies = [str(real_val_rows), str(tmp_path / "o1"), str(tmp_path / "r1")]
    for entry, copy in zip(mixture["datasets"], copies, strict=True):
        entry["path"] = copy
    (tmp_path / "mix_zh.yaml").write_text(yaml.safe_dump(mixture, allow_unicode=True), encoding="utf-8")

    report = prepare_mixture(tmp_path / "mix_zh.yaml", tmp_path / "mix_zh")
    delicate, medical_o1, distilled = report["sources"]
    assert delicate["rows"] == {"read": 241, "kept": 241, "rejected": 0}
    assert (
        medical_o1["rejected_by_reason"]["duplicate"] == 1 and medical_o1["rows"]["kept"] == 5
    )  # 0.25 of 20
    assert medical_o1["kept"]["non_thinking"] == 2  # round(0.5 * 5): Python rounds half to even
    assert distilled["rejected_by_reason"]["benchmark_overlap"] == 1 and distilled["rows"]["kept"] == 6
    assert report["rows"]["read"] == 241 + 21 + 21 == report["rows"]["kept"] + report["rows"]["rejected"]

    out = tmp_path / "run"
    overrides = [
        "--dataset",
        str(tmp_path / "mix_zh"),
        "--output_dir",
        str(out),
        "--model_name_or_path",
        "tiny",
    ]
    overrides += [
        "--dtype",
        "float32",
        "--bf16",
        "false",
        "--use_cpu",
        "true",
        "--activation_checkpointing",
        "false",
    ]
    overrides += ["--gradient_accumulation_steps", "1", "--max_steps", "2", "--eval_strategy", "no"]
    overrides += ["--logging_steps", "1"]
    overrides += [
        "--save_strategy",
        "no",
        "--report_to",
        "none",
        "--val_questions",
        "1",
        "--val_max_new_tokens",
        "4",
    ]
    train.run(load_recipe("mix_zh", overrides))
    card = json.loads((out / "run_card.json").read_text(encoding="utf-8"))
    assert card["global_step"] == 2 and card["config"]["medsft"]["empty_think_loss"] is False
    assert (out / "final" / "model.safetensors").is_file()


def test_strict_counts_problems_not_weights(tmp_path):
    write_jsonl(tmp_path / "rows.jsonl", reasoning_rows(10, "己"))
    mix = tmp_path / "mix.yaml"
    mix.write_text(yaml.safe_dump({"datasets": [{"id": "./rows.jsonl", "weight": 0.5}]}), encoding="utf-8")
    report = prepare_mixture(mix, tmp_path / "out", strict=True)  # 5 sampled_out rejects: a choice
    assert report["rejected_by_reason"]["sampled_out"] == 5
    write_jsonl(tmp_path / "rows.jsonl", [*reasoning_rows(10, "己"), {"question": "缺字段"}])
    with pytest.raises(Exception, match=r"--strict: 1 rows rejected \(missing_field=1\)"):
        prepare_mixture(mix, tmp_path / "out", strict=True)


def test_a_question_left_out_by_a_weight_is_kept_from_a_later_source(tmp_path):
    write_jsonl(tmp_path / "a.jsonl", reasoning_rows(10, "庚"))
    write_jsonl(tmp_path / "b.jsonl", reasoning_rows(10, "庚"))  # the same ten questions
    mix = tmp_path / "mix.yaml"
    sources = [{"id": "./a.jsonl", "weight": 0.3}, {"id": "./b.jsonl"}]
    mix.write_text(yaml.safe_dump({"datasets": sources, "val_ratio": 0}), encoding="utf-8")
    first, second = prepare_mixture(mix, tmp_path / "out")["sources"]
    assert first["rows"]["kept"] == 3 and first["rejected_by_reason"] == {"sampled_out": 7}
    assert second["rows"]["kept"] == 7 and second["rejected_by_reason"] == {"duplicate": 3}
    questions = [row["messages"][1]["content"] for row in read_jsonl(tmp_path / "out" / "train.jsonl")]
    assert sorted(questions) == sorted(row["question"] for row in reasoning_rows(10, "庚"))


SOURCE_SHAPES = st.lists(
    st.tuples(
        st.integers(min_value=1, max_value=25),  # rows
        st.sampled_from([0.2, 0.5, 1.0, 1.5, 2.0, 3.3]),  # weight
        st.booleans(),  # thinking
        st.sampled_from([0.0, 0.3]),  # no_think_ratio (thinking sources)
        st.integers(min_value=0, max_value=5),  # questions shared with the previous source
        st.integers(min_value=0, max_value=3),  # broken rows
    ),
    min_size=1,
    max_size=4,
)


@settings(max_examples=40, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(shapes=SOURCE_SHAPES, seed=st.integers(0, 2**31), val_ratio=st.sampled_from([0.0, 0.1, 0.3]))
def test_every_row_is_accounted_for_whatever_the_mix(shapes, seed, val_ratio):
    """Random sources, weights, modes, shared questions and broken rows: per source and overall, rows read =
    kept + rejected; train = the weighted kept train rows; val rows are each source's own, never repeated,
    and no val question is trained on."""
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        entries, previous = [], []
        for number, (count, weight, thinking, ratio, shared, broken) in enumerate(shapes):
            rows = reasoning_rows(count, f"源{number}")
            rows += [dict(row, answer="另答。") for row in previous[:shared]]  # a question kept earlier
            rows += [{"question": f"坏{number}-{i}"} for i in range(broken)]
            write_jsonl(folder / f"s{number}.jsonl", rows)
            entry = {"id": f"./s{number}.jsonl", "weight": weight, "thinking": thinking}
            if thinking and ratio:
                entry["no_think_ratio"] = ratio
            entries.append(entry)
            previous = rows[:count]
        mix = folder / "mix.yaml"
        mix.write_text(yaml.safe_dump({"datasets": entries, "seed": seed, "val_ratio": val_ratio}), "utf-8")
        try:
            report = prepare_mixture(mix, folder / "out")
        except Exception as error:  # only when no source keeps a training row
            assert "no source kept a training row" in str(error)
            return
        train, val, rejects = (
            read_jsonl(folder / "out" / f"{name}.jsonl") for name in ("train", "val", "rejects")
        )

    for source in report["sources"]:
        rows = source["rows"]
        assert (
            rows["read"]
            == rows["kept"] + rows["rejected"]
            == rows["kept"] + sum(source["rejected_by_reason"].values())
        )
        assert source["kept"]["train"] + source["kept"]["val"] == rows["kept"]
        weighted, kept_train = source["after_weighting"]["train"], source["kept"]["train"]
        if source["weight"] > 1:
            assert (
                math.floor(source["weight"]) * kept_train
                <= weighted
                <= math.ceil(source["weight"]) * kept_train
            )
        else:
            assert weighted == kept_train
    assert report["rows"]["read"] == report["rows"]["kept"] + len(rejects)
    assert len(train) == sum(s["after_weighting"]["train"] for s in report["sources"])
    assert len(val) == sum(s["kept"]["val"] for s in report["sources"])
    val_questions = [row["messages"][1]["content"] for row in val]
    assert len(set(val_questions)) == len(val_questions)
    assert not set(val_questions) & {row["messages"][1]["content"] for row in train}

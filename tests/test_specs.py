"""distill_core.specs: the model-spec grammar, the one Hub-id rule everywhere it applies, and what is read from a
model folder without loading it (shape, parameters, size, labels)."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import LABEL_NAMES

from distill_core import data, hosting, hub, specs
from distill_core.config import DataConfig
from distill_core.errors import UserError

# ---------------------------------------------------------------- the grammar


@pytest.mark.parametrize("spec, kind, value, layers, hidden", [
    ("org/name", "hub", "org/name", 0, 0),
    ("google/bert_uncased_L-10_H-256_A-4", "hub", "google/bert_uncased_L-10_H-256_A-4", 0, 0),
    ("  odunola/bert-base-uncased-ag-news-finetuned-2 ", "hub", "odunola/bert-base-uncased-ag-news-finetuned-2",
     0, 0),
    ("./some/folder", "local", "some/folder", 0, 0),
    ("/abs/folder", "local", "/abs/folder", 0, 0),
    ("bundled:minilm-l6", "bundled", "minilm-l6", 0, 0),
    ("truncate:3", "truncate", "truncate:3", 3, 0),
    ("config:L4-H256", "config", "config:L4-H256", 4, 256),
    ("config:l2-h128", "config", "config:l2-h128", 2, 128),
], ids=["hub", "hub-compact-bert", "hub-stripped", "relative-folder", "absolute-folder", "bundled", "truncate",
        "config", "config-lowercase"])
def test_good_specs_parse(spec, kind, value, layers, hidden):
    parsed = specs.parse_spec(spec)
    assert (parsed.kind, parsed.layers, parsed.hidden) == (kind, layers, hidden)
    if kind == "local":
        assert Path(parsed.value) == Path(value)
    else:
        assert parsed.value == value


def test_existing_folder_without_prefix_is_local(tmp_path, monkeypatch):
    (tmp_path / "my-model").mkdir()
    monkeypatch.chdir(tmp_path)
    assert specs.parse_spec("my-model").kind == "local"


@pytest.mark.parametrize("spec, match", [
    ("", "empty"),
    ("   ", "empty"),
    ("bundled:gpt5", "unknown bundled model"),
    ("truncate:", "malformed"),
    ("truncate:two", "malformed"),
    ("truncate:-1", "malformed"),
    ("config:L4", "malformed"),
    ("config:H256-L4", "malformed"),
    ("config:L0-H256", "layers must be >= 1"),
    ("config:L4-H100", "multiple of 64"),
    ("config:L4-H32", "multiple of 64"),
    ("bert-base-uncased", "neither an existing folder nor a Hub id"),
    ("org/name/extra", "neither an existing folder nor a Hub id"),
    ("https://huggingface.co/org/name", "neither an existing folder nor a Hub id"),
    ("org/-x", "neither an existing folder nor a Hub id"),
], ids=["empty", "blank", "unknown-bundled", "truncate-no-number", "truncate-word", "truncate-negative",
        "config-no-hidden", "config-swapped", "config-zero-layers", "config-hidden-100", "config-hidden-32",
        "hub-id-without-org", "hub-id-three-parts", "url", "name-starting-with-dash"])
def test_bad_specs_are_refused(spec, match):
    with pytest.raises(UserError, match=match):
        specs.parse_spec(spec)


# ---------------------------------------------------------------- one Hub-id rule, everywhere
# (value, a Hub id at all, a Hub id with an owner): data sources take either, model specs and push targets the
# second, and hosted mode follows the same two.
HUB_ID_CASES = [
    pytest.param("org/name", True, True, id="org-name"),
    pytest.param("ag_news", True, False, id="bare-name"),
    pytest.param("SetFit/ag_news", True, True, id="dataset-with-org"),
    pytest.param("google/bert_uncased_L-4_H-256_A-4", True, True, id="compact-bert"),
    pytest.param("org/-x", False, False, id="part-starts-with-dash"),
    pytest.param("-x", False, False, id="bare-starts-with-dash"),
    pytest.param("org/x-", False, False, id="part-ends-with-dash"),
    pytest.param(".x/y", False, False, id="part-starts-with-dot"),
    pytest.param("a..b/c", False, False, id="dot-dot"),
    pytest.param("org/..", False, False, id="org-dot-dot"),
    pytest.param("a--b/c", False, False, id="dash-dash"),
    pytest.param("org/name.git", False, False, id="dot-git"),
    pytest.param("a/b/c", False, False, id="three-parts"),
    pytest.param("org/na me", False, False, id="space"),
    pytest.param("org/" + "x" * 97, False, False, id="part-over-96"),
    pytest.param("../secret", False, False, id="parent-path"),
    pytest.param("~/models", False, False, id="home-path"),
]


@pytest.mark.parametrize("value, hub_id, org_id", HUB_ID_CASES)
def test_is_hub_id(value, hub_id, org_id):
    assert specs.is_hub_id(value) is hub_id
    assert specs.is_hub_id(value, require_org=True) is org_id


@pytest.mark.parametrize("value, hub_id, org_id", HUB_ID_CASES)
def test_the_rule_is_huggingface_hubs(value, hub_id, org_id):
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(value)
        accepted = True
    except HFValidationError:
        accepted = False
    assert accepted is hub_id


@pytest.mark.parametrize("value, hub_id, org_id", HUB_ID_CASES)
def test_model_specs_take_hub_ids_with_an_owner(value, hub_id, org_id, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # nothing here is a folder of that name
    try:
        kind = specs.parse_spec(value).kind
    except UserError:
        kind = None
    assert (kind == "hub") is org_id


@pytest.mark.parametrize("value, hub_id, org_id", HUB_ID_CASES)
def test_data_sources_take_hub_ids(value, hub_id, org_id, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(data.DATA_DIR_ENV, raising=False)

    def from_hub(source, cfg):
        raise RuntimeError(f"hub:{source}")

    monkeypatch.setattr(data, "_load_hub", from_hub)
    with pytest.raises((RuntimeError, UserError)) as caught:
        data.load_data(DataConfig(source=value), seed=0)
    assert (str(caught.value) == f"hub:{value}") is hub_id


@pytest.mark.parametrize("value, hub_id, org_id", HUB_ID_CASES)
def test_push_takes_hub_ids_with_an_owner(value, hub_id, org_id, tmp_path):
    with pytest.raises(UserError) as caught:
        hub.push_run(tmp_path / "not-a-run", value)  # past the repo id check it fails on the missing run
    assert ("invalid repo id" not in str(caught.value)) is org_id


@pytest.mark.parametrize("value, hub_id, org_id", HUB_ID_CASES)
def test_hosted_mode_takes_the_same_hub_ids(value, hub_id, org_id, tmp_path, monkeypatch):
    monkeypatch.setenv("KD_HOSTED", "1")
    monkeypatch.setenv("KD_RUNS_DIR", str(tmp_path / "store"))
    monkeypatch.delenv(data.DATA_DIR_ENV, raising=False)
    monkeypatch.delenv("KD_EXTRA_MODELS", raising=False)
    monkeypatch.chdir(tmp_path)
    root = hosting.visitor_root("a" * 32, tmp_path / "store")

    def allowed(check) -> bool:
        try:
            check()
        except UserError:
            return False
        return True

    assert allowed(lambda: hosting.check_data_source(value, [tmp_path / "data"])) is hub_id
    assert allowed(lambda: hosting.check_model_spec(value, root)) is org_id


def test_hosted_mode_keeps_the_message_of_a_mistyped_recipe(tmp_path, monkeypatch):
    monkeypatch.setenv("KD_HOSTED", "1")
    with pytest.raises(UserError, match="malformed student spec"):
        hosting.check_model_spec("truncate:x", hosting.visitor_root("a" * 32, tmp_path))


# ---------------------------------------------------------------- folders
def test_model_folder_takes_a_model_or_a_run_folder(tiny_teacher_dir, tmp_path):
    assert specs.model_folder(tiny_teacher_dir) == tiny_teacher_dir
    run_dir = tmp_path / "run"
    shutil.copytree(tiny_teacher_dir, run_dir / "model")
    (run_dir / "config.json").write_text("{}", encoding="utf-8")  # the run's config, not a model's
    assert specs.model_folder(run_dir) == run_dir / "model"
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    shutil.copy(tiny_teacher_dir / "config.json", pickled)
    (pickled / "pytorch_model.bin").write_bytes(b"pickles can run code")
    assert specs.model_folder(pickled) is None
    assert specs.model_folder(tmp_path / "absent") is None


def test_resolve_folder_names_what_is_missing(tiny_teacher_dir, tmp_path):
    local = specs.parse_spec(str(tiny_teacher_dir))
    assert specs.resolve_folder(local) == tiny_teacher_dir
    assert specs.resolve_folder(specs.parse_spec("bundled:minilm-l6")) == specs.bundled_path()
    with pytest.raises(UserError, match="does not exist"):
        specs.resolve_folder(specs.parse_spec(str(tmp_path / "absent")))
    with pytest.raises(UserError, match=r"no config\.json"):
        specs.resolve_folder(specs.parse_spec(str(tmp_path)))
    with pytest.raises(ValueError, match="no local folder"):
        specs.resolve_folder(specs.parse_spec("org/name"))


def test_bundled_specs_lists_installed_bundled_models():
    assert specs.bundled_specs() == [f"bundled:{name}" for name in specs.BUNDLED]


def test_seed_recipe_models_are_in_the_grammar():
    assert specs.SEED_STUDENT in specs.COMPACT_BERTS and len(specs.COMPACT_BERTS) == 24
    assert specs.parse_spec(specs.SEED_TEACHER).kind == specs.parse_spec(specs.SEED_STUDENT).kind == "hub"


# ---------------------------------------------------------------- facts without loading weights
@pytest.mark.parametrize("spec, teacher, shape", [
    ("google/bert_uncased_L-4_H-256_A-4", None, (4, 256)),
    ("config:L2-H128", None, (2, 128)),
    ("truncate:3", "bundled:minilm-l6", (3, 384)),
    ("truncate:3", None, None),
    ("bundled:minilm-l6", None, (6, 384)),
    ("odunola/bert-base-uncased-ag-news-finetuned-2", None, (12, 768)),
    ("someone/unknown-model", None, None),
    (None, None, None),
], ids=["compact-bert", "config", "truncate", "truncate-without-teacher", "bundled", "seed-teacher", "unknown",
        "none"])
def test_model_shape_without_loading_weights(spec, teacher, shape):
    assert specs.model_shape(spec, teacher) == shape


def test_model_shape_of_a_local_folder(tiny_teacher_dir):
    assert specs.model_shape(str(tiny_teacher_dir)) == (2, 64)
    assert specs.model_shape("truncate:1", str(tiny_teacher_dir)) == (1, 64)


def test_model_facts_read_from_safetensors_headers(tiny_teacher_dir):
    import torch
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(tiny_teacher_dir)
    facts = specs.model_facts(str(tiny_teacher_dir))
    assert facts["parameters"] == sum(p.numel() for p in model.parameters())
    assert facts["size_mb"] == pytest.approx(facts["parameters"] * torch.finfo(torch.float32).bits / 8 / 1e6, rel=0.01)


@pytest.mark.parametrize("spec", ["org/name", "truncate:2", None, "/no/such/folder"],
                         ids=["hub", "recipe", "none", "missing-folder"])
def test_model_facts_are_unknown_without_a_local_model(spec):
    assert specs.model_facts(spec) == {"parameters": None, "size_mb": None}


def test_model_facts_of_a_corrupt_header_are_unknown(tiny_teacher_dir, tmp_path):
    shutil.copy(tiny_teacher_dir / "config.json", tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"\x05")
    assert specs.model_facts(str(tmp_path)) == {"parameters": None, "size_mb": None}


def test_config_labels_and_head(tiny_teacher_dir, tmp_path):
    config = specs.read_model_config(str(tiny_teacher_dir))
    assert config is not None and specs.is_classifier_config(config)
    assert specs.label_names(str(tiny_teacher_dir)) == LABEL_NAMES
    assert specs.read_model_config("org/name") is None and specs.label_names("org/name") is None
    assert not specs.is_classifier_config({"architectures": ["BertModel"]})
    assert not specs.is_classifier_config(None)
    assert specs.config_label_names({"id2label": {"1": "b", "0": "a"}}) == ["a", "b"]
    assert specs.config_label_names({"id2label": {"x": "a"}}) is None


@pytest.mark.parametrize("spec, root, label", [
    (None, None, "—"),
    ("bundled:minilm-l6", None, "bundled:minilm-l6"),
    ("truncate:3", None, "truncate:3"),
    ("org/name", None, "org/name"),
    ("/store/runs/abc", "/store/runs", "run abc"),
    ("/store/runs/abc/model", "/store/runs", "run abc"),
    ("/elsewhere/teacher/model", "/store/runs", "teacher"),
    ("./my-model", None, "my-model"),
], ids=["none", "bundled", "recipe", "hub", "run-folder", "run-model-folder", "other-folder", "relative-folder"])
def test_spec_label(spec, root, label):
    assert specs.spec_label(spec, Path(root) if root else None) == label


def test_importing_specs_stays_cheap():
    code = ("import sys, distill_core.specs; "
            "print(sorted(m for m in ('torch', 'transformers', 'datasets', 'safetensors') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"

"""Loading what a spec names: students built from a teacher, label checks, refusals, and model facts.

The spec grammar itself is tested in test_specs.py."""
from __future__ import annotations

import shutil

import pytest
from conftest import LABEL_NAMES

from distill_core import models
from distill_core.errors import HubUnreachableError, UserError

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def teacher(tiny_teacher_dir):
    model, tokenizer = models.load_classifier(str(tiny_teacher_dir), LABEL_NAMES, require_trained=True)
    return model.eval(), tokenizer


@pytest.fixture(scope="module")
def four_layer_teacher():
    """A 4-layer tiny BERT classifier in memory (random, seeded) to see which layers truncate:N keeps."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(1)
    config = BertConfig(vocab_size=120, hidden_size=32, num_hidden_layers=4, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64,
                        architectures=["BertForSequenceClassification"], **models.label_maps(LABEL_NAMES))
    return BertForSequenceClassification(config).eval()


# ---------------------------------------------------------------- layer choice (the spec grammar: test_specs.py)

def test_evenly_spaced_layers():
    assert models.evenly_spaced_layers(6, 3) == [0, 2, 5]
    assert models.evenly_spaced_layers(12, 4) == [0, 4, 7, 11]
    assert models.evenly_spaced_layers(4, 2) == [0, 3]
    assert models.evenly_spaced_layers(2, 1) == [1]
    for total in range(2, 13):
        for keep in range(1, total):
            kept = models.evenly_spaced_layers(total, keep)
            assert len(kept) == keep and kept == sorted(set(kept)) and kept[-1] == total - 1


# ---------------------------------------------------------------- students

def assert_same_tensors(module_a, module_b):
    state_a, state_b = module_a.state_dict(), module_b.state_dict()
    assert state_a.keys() == state_b.keys()
    for key in state_a:
        assert state_a[key].equal(state_b[key]), key


def test_truncate_keeps_evenly_spaced_layers_with_exact_weights(four_layer_teacher):
    names = ["a", "b", "c", "d"]
    student = models.build_student("truncate:2", four_layer_teacher, names)
    assert student.config.num_hidden_layers == 2
    assert student.config.kd_studio_kept_layers == [0, 3]
    assert_same_tensors(student.bert.embeddings, four_layer_teacher.bert.embeddings)
    assert_same_tensors(student.bert.encoder.layer[0], four_layer_teacher.bert.encoder.layer[0])
    assert_same_tensors(student.bert.encoder.layer[1], four_layer_teacher.bert.encoder.layer[3])
    assert_same_tensors(student.classifier, four_layer_teacher.classifier)
    assert student.config.id2label == {0: "a", 1: "b", 2: "c", 3: "d"}
    # A copy, not shared storage: training the student must never change the teacher.
    teacher_before = four_layer_teacher.bert.encoder.layer[3].output.dense.weight.clone()
    student.bert.encoder.layer[1].output.dense.weight.data.add_(1.0)
    assert four_layer_teacher.bert.encoder.layer[3].output.dense.weight.equal(teacher_before)


def test_truncate_of_the_tiny_teacher(teacher):
    model, _ = teacher
    student = models.build_student("truncate:1", model, LABEL_NAMES)
    assert student.config.num_hidden_layers == 1
    assert_same_tensors(student.bert.encoder.layer[0], model.bert.encoder.layer[1])


@pytest.mark.parametrize("spec", ["truncate:4", "truncate:0", "truncate:9"],
                         ids=["all-layers", "zero-layers", "more-than-teacher"])
def test_truncate_needs_fewer_layers_than_the_teacher(four_layer_teacher, spec):
    with pytest.raises(UserError, match="the teacher has 4 layers; keep between 1 and 3"):
        models.build_student(spec, four_layer_teacher, LABEL_NAMES)


def test_config_student_has_the_named_shape_and_teacher_vocabulary(teacher):
    model, _ = teacher
    student = models.build_student("config:L2-H128", model, LABEL_NAMES)
    config = student.config
    assert (config.num_hidden_layers, config.hidden_size) == (2, 128)
    assert config.num_attention_heads == 2
    assert config.intermediate_size == 512
    assert config.vocab_size == model.config.vocab_size
    assert student.bert.embeddings.word_embeddings.weight.shape == (model.config.vocab_size, 128)
    assert config.num_labels == 4 and config.id2label[3] == "Sci/Tech"


def test_derived_student_needs_a_teacher():
    with pytest.raises(UserError, match="--teacher"):
        models.build_student("truncate:1", None, LABEL_NAMES)


def test_dropout_override_is_applied(tiny_teacher_dir, four_layer_teacher):
    import torch

    model, _ = models.load_classifier(str(tiny_teacher_dir), LABEL_NAMES, dropout=0.25)
    assert model.config.hidden_dropout_prob == 0.25
    hidden_dropouts = [m.p for name, m in model.named_modules()
                       if isinstance(m, torch.nn.Dropout) and "attention.self" not in name]
    assert hidden_dropouts and all(p == 0.25 for p in hidden_dropouts)
    student = models.build_student("truncate:2", four_layer_teacher, LABEL_NAMES, dropout=0.3)
    assert student.config.hidden_dropout_prob == 0.3
    assert student.bert.encoder.layer[0].output.dropout.p == 0.3
    assert four_layer_teacher.config.hidden_dropout_prob == 0.1  # the teacher's config is untouched
    fresh = models.build_student("config:L1-H64", four_layer_teacher, LABEL_NAMES, dropout=0.4)
    assert fresh.bert.encoder.layer[0].output.dropout.p == 0.4


def _train_mode_logits_twice(model):
    import torch

    model.train()
    ids = torch.tensor([[2, 5, 6, 7, 8, 9, 3]])  # within the tiny test vocabulary
    with torch.no_grad():
        return model(input_ids=ids).logits, model(input_ids=ids).logits


def test_attention_dropout_reaches_every_student_kind_and_zero_switches_it_off(tiny_teacher_dir, four_layer_teacher):
    import torch

    loaded, _ = models.load_classifier(str(tiny_teacher_dir), LABEL_NAMES, dropout=0.0, attention_dropout=0.0)
    truncated = models.build_student("truncate:2", four_layer_teacher, LABEL_NAMES, dropout=0.0,
                                     attention_dropout=0.0)
    fresh = models.build_student("config:L1-H64", four_layer_teacher, LABEL_NAMES, dropout=0.0,
                                 attention_dropout=0.0)
    for model in (loaded, truncated, fresh):
        assert model.config.attention_probs_dropout_prob == 0.0
        first, second = _train_mode_logits_twice(model)
        assert torch.equal(first, second)  # no dropout left anywhere: training-mode passes agree exactly
    noisy = models.build_student("truncate:2", four_layer_teacher, LABEL_NAMES, dropout=0.0, attention_dropout=0.5)
    torch.manual_seed(0)
    first, second = _train_mode_logits_twice(noisy)
    assert not torch.equal(first, second)  # the attention dropout alone makes them differ
    assert four_layer_teacher.config.attention_probs_dropout_prob == 0.1  # the teacher's config is untouched


# ---------------------------------------------------------------- label checks and refusals

def test_label_count_mismatch_is_refused(tiny_teacher_dir):
    with pytest.raises(UserError, match=r"predicts 4 classes but the data has 3") as info:
        models.load_classifier(str(tiny_teacher_dir), ["World", "Sports", "Business"], require_trained=True)
    assert "\n" not in str(info.value)


def test_label_names_mismatch_is_refused(tiny_teacher_dir):
    with pytest.raises(UserError, match="class order must match"):
        models.load_classifier(str(tiny_teacher_dir), ["Sports", "World", "Business", "Sci/Tech"])


def test_numeric_label_names_are_accepted_and_renamed(tiny_teacher_dir):
    model, _ = models.load_classifier(str(tiny_teacher_dir), ["0", "1", "2", "3"])
    assert model.config.num_labels == 4


def test_base_model_gets_a_head_with_the_data_labels(tiny_teacher_dir, tmp_path):
    from transformers import BertConfig, BertModel

    config = BertConfig.from_pretrained(tiny_teacher_dir)
    config.architectures = ["BertModel"]
    BertModel(config).save_pretrained(tmp_path, safe_serialization=True)
    shutil.copy(tiny_teacher_dir / "tokenizer.json", tmp_path)
    shutil.copy(tiny_teacher_dir / "tokenizer_config.json", tmp_path)
    model, _ = models.load_classifier(str(tmp_path), ["neg", "pos"])
    assert model.config.num_labels == 2 and model.config.id2label == {0: "neg", 1: "pos"}
    with pytest.raises(UserError, match="no classification head"):
        models.load_classifier(str(tmp_path), ["neg", "pos"], require_trained=True)


def test_folder_without_config_is_refused(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(UserError, match="not a model folder"):
        models.load_classifier(str(tmp_path), LABEL_NAMES)


def test_folder_without_safetensors_is_refused(tiny_teacher_dir, tmp_path):
    shutil.copy(tiny_teacher_dir / "config.json", tmp_path)
    (tmp_path / "pytorch_model.bin").write_bytes(b"pickles can run code")
    with pytest.raises(UserError, match=r"no \.safetensors weights"):
        models.load_classifier(str(tmp_path), LABEL_NAMES)


def test_missing_folder_is_refused(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        models.load_classifier(str(tmp_path / "absent"), LABEL_NAMES)


def test_unreachable_hub_id_fails_with_a_clear_message(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(HubUnreachableError) as info:
        models.load_classifier("some-org/some-model", LABEL_NAMES)
    message = str(info.value)
    assert "some-org/some-model" in message and "Hub" in message and "\n" not in message


def test_run_folder_is_accepted_as_a_model_spec(tiny_teacher_dir, tmp_path):
    run_dir = tmp_path / "runs" / "my-run"
    shutil.copytree(tiny_teacher_dir, run_dir / "model")
    (run_dir / "config.json").write_text("{}", encoding="utf-8")  # the run's own config.json is not a model's
    model, tokenizer = models.load_classifier(str(run_dir), LABEL_NAMES, require_trained=True)
    reference, _ = models.load_classifier(str(tiny_teacher_dir), LABEL_NAMES, require_trained=True)
    assert_same_tensors(model, reference)
    assert tokenizer.get_vocab() == models.load_tokenizer(str(tiny_teacher_dir)).get_vocab()


def test_recipes_are_not_models():
    with pytest.raises(UserError, match="teacher"):
        models.load_classifier("truncate:2", LABEL_NAMES)
    with pytest.raises(UserError, match="tokenizer"):
        models.load_tokenizer("config:L2-H128")


# ---------------------------------------------------------------- model facts

def test_parameter_count_and_size_on_disk(teacher, tiny_teacher_dir):
    model, _ = teacher
    count = models.parameter_count(model)
    assert count == sum(p.numel() for p in model.parameters())
    embeddings = model.config.vocab_size * model.config.hidden_size
    assert embeddings < count < embeddings + 200_000  # a 2-layer, 64-wide BERT is mostly its embeddings
    size_mb = models.size_on_disk_mb(model)
    file_mb = (tiny_teacher_dir / "model.safetensors").stat().st_size / 1e6
    assert size_mb == pytest.approx(file_mb, rel=0.01)  # safetensors bytes, header aside
    assert size_mb >= count * 4 / 1e6  # fp32 weights (+ buffers such as position ids)


def test_describe_names_the_shape(teacher):
    assert models.describe(teacher[0]).startswith("bert 2 layers x 64 hidden")


def test_max_length_above_the_model_limit_is_refused(teacher):
    models.check_max_length(teacher[0], 512, "t")
    with pytest.raises(UserError, match=r"max_length=1000 exceeds .*512 positions"):
        models.check_max_length(teacher[0], 1000, "t")


def test_teacher_fingerprint_follows_the_weights(tiny_teacher_dir, tmp_path):
    model, _ = models.load_classifier(str(tiny_teacher_dir), LABEL_NAMES)
    key = models.model_fingerprint(model, str(tiny_teacher_dir))
    shutil.copytree(tiny_teacher_dir, tmp_path / "copy")
    assert models.model_fingerprint(model, str(tmp_path / "copy")) == key  # same weights, other folder
    changed = tmp_path / "changed"
    model.classifier.bias.data.add_(1.0)
    model.save_pretrained(changed, safe_serialization=True)
    assert models.model_fingerprint(model, str(changed)) != key

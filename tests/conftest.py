"""Shared fixtures: a tiny random causal LM with a real (tiny, trained-here) tokenizer, a
tracking store per test, and small dialogue files. Nothing is downloaded."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
# hpo's default storage: a shell that ran `eval "$(python -m server env)"` must not send the
# tests' studies to its server (the `postgres` fixture names that server's URL where wanted).
os.environ.pop("OPTUNA_STORAGE", None)

import torch

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

REPO = Path(__file__).resolve().parents[1]

DIALOGUES = [
    ("Ana: Can we meet at noon?\nBen: Yes, at the cafe.", "Ana and Ben meet at noon at the cafe."),
    ("Carl: My bike is broken.\nDina: Take mine today.", "Dina lends Carl her bike today."),
    ("Eva: The train is late again.\nFin: I will drive you.", "Fin drives Eva because the train is late."),
    ("Gus: Did you feed the cat?\nHana: Yes, this morning.", "Hana fed the cat this morning."),
    ("Ivo: Is the shop open on Sunday?\nJo: Only until two.", "The shop is open on Sunday until two."),
    ("Kim: I lost my keys.\nLeo: They are on the table.", "Leo tells Kim the keys are on the table."),
    ("Mia: Want pizza tonight?\nNed: Sure, I will order it.", "Ned will order pizza for tonight."),
    ("Olga: The meeting moved to Friday.\nPaul: Thanks, noted.", "Olga tells Paul the meeting is on Friday."),
]

CHAT_TEMPLATE = (
    "{% for message in messages %}<|{{ message['role'] }}|>{{ message['content'] }}<|end|>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def build_tiny_causal_lm(folder: Path, chat_template: bool = True, seed: int = 0) -> Path:
    """A 2-layer llama with a byte-level BPE tokenizer trained on the fixture text.
    Hidden size 64, not smaller: bitsandbytes' CPU 4-bit kernels need in_features >= 64."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    specials = ["<unk>", "<pad>", "<eos>", "<|user|>", "<|assistant|>", "<|end|>"]
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    corpus = [d for pair in DIALOGUES for d in pair] * 4 + ["Summarize the following dialogue in one or two sentences."]
    tok.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=400, special_tokens=specials,
                                                        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", pad_token="<pad>", eos_token="<eos>")
    if chat_template:
        tokenizer.chat_template = CHAT_TEMPLATE
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=512, tie_word_embeddings=True,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, bos_token_id=None,
    )
    model = LlamaForCausalLM(config)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_lm_dir(tmp_path_factory) -> Path:
    return build_tiny_causal_lm(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="session")
def tiny_lm_plain_dir(tmp_path_factory) -> Path:
    """Same tiny model, with no chat template: exercises the plain-prompt path."""
    return build_tiny_causal_lm(tmp_path_factory.mktemp("tiny-llama-plain"), chat_template=False)


@pytest.fixture
def tiny_lm(tiny_lm_dir):
    from pipelines.sources.models import load_lm

    model, tokenizer, _ = load_lm(str(tiny_lm_dir))
    return model, tokenizer


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture
def dialogue_files(tmp_path) -> dict[str, Path]:
    rows = [{"dialogue": d, "summary": s} for d, s in DIALOGUES]
    return {"train": write_jsonl(tmp_path / "train.jsonl", rows * 2),
            "eval": write_jsonl(tmp_path / "eval.jsonl", rows[:4])}


@pytest.fixture
def tracking(tmp_path, monkeypatch) -> str:
    """A fresh SQLite tracking store (with registry) for one test."""
    import mlflow

    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    (tmp_path / "mlruns").mkdir()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.chdir(tmp_path)
    mlflow.set_tracking_uri(uri)
    _forget_experiment()
    yield uri
    while mlflow.active_run():
        mlflow.end_run()
    _forget_experiment()


def _forget_experiment() -> None:
    """An entry point run in-process chose an experiment of the previous test's store."""
    import mlflow

    mlflow.tracking.fluent._active_experiment_id = None


@pytest.fixture(scope="session")
def team_server():
    """The project's real tracking server (`make server`: PostgreSQL + mlflow server with basic
    auth), started if `.ci/run` or the developer has not started it, and then stopped again."""
    from server.__main__ import servers, start

    settings, postgres, mlflow_server = servers()
    started_here = not (postgres.running() and mlflow_server.healthy())
    if started_here:
        start()
    yield settings, postgres, mlflow_server
    if started_here:
        mlflow_server.stop()
        postgres.stop()


@pytest.fixture
def server_tracking(team_server, monkeypatch) -> str:
    """MLFLOW_TRACKING_URI=http://… on the team server, as its admin, for this test and its children."""
    import mlflow

    settings, postgres, mlflow_server = team_server
    monkeypatch.setenv("MLFLOW_TRACKING_URI", settings.tracking_uri)
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", mlflow_server.credentials.admin_user)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", mlflow_server.credentials.admin_password)
    monkeypatch.setenv("PGPASSFILE", str(postgres.pgpass))
    mlflow.set_tracking_uri(settings.tracking_uri)
    _forget_experiment()
    yield settings.tracking_uri
    while mlflow.active_run():
        mlflow.end_run()
    _forget_experiment()


def build_tiny_seq2seq(folder: Path, family: str, seed: int = 0) -> Path:
    """A tiny random T5 or BART with the fixture's BPE tokenizer (no seq2seq weights exist offline)."""
    from transformers import BartConfig, BartForConditionalGeneration, T5Config, T5ForConditionalGeneration

    causal_dir = build_tiny_causal_lm(folder / "_tok", chat_template=False)
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(causal_dir)
    ids = {"pad_token_id": tokenizer.pad_token_id, "eos_token_id": tokenizer.eos_token_id,
           "decoder_start_token_id": tokenizer.pad_token_id}
    torch.manual_seed(seed)
    if family == "t5":
        config = T5Config(vocab_size=len(tokenizer), d_model=64, d_kv=16, d_ff=128, num_layers=2, num_decoder_layers=2,
                          num_heads=4, **ids)
        model = T5ForConditionalGeneration(config)
    else:
        config = BartConfig(vocab_size=len(tokenizer), d_model=64, encoder_layers=2, decoder_layers=2,
                            encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=128,
                            decoder_ffn_dim=128, max_position_embeddings=512, bos_token_id=tokenizer.pad_token_id,
                            forced_eos_token_id=None, **ids)
        model = BartForConditionalGeneration(config)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.decoder_start_token_id = tokenizer.pad_token_id
    target = folder / family
    model.save_pretrained(target)
    tokenizer.save_pretrained(target)
    return target


@pytest.fixture(scope="session", params=["t5", "bart"])
def tiny_seq2seq_dir(request, tmp_path_factory) -> Path:
    return build_tiny_seq2seq(tmp_path_factory.mktemp(f"tiny-{request.param}"), request.param)


# A separable sentiment set: the label is carried by one cue word among filler words.
POSITIVE_CUES = ["good", "great", "love", "nice", "fun"]
NEGATIVE_CUES = ["bad", "awful", "hate", "dull", "poor"]
FILLER = ["the", "movie", "was", "plot", "and", "really", "film", "story", "a", "very"]


def sentiment_rows(n: int, seed: int = 0, labels=("negative", "positive")) -> list[dict]:
    import random

    rng = random.Random(seed)
    rows = []
    for i in range(n):
        positive = i % 2 == 1
        words = rng.sample(FILLER, 4)
        words.insert(rng.randrange(5), rng.choice(POSITIVE_CUES if positive else NEGATIVE_CUES))
        rows.append({"text": " ".join(words), "label": labels[int(positive)]})
    return rows


def build_tiny_encoder(folder: Path, seed: int = 0) -> Path:
    """A 2-layer BERT with a WordPiece tokenizer trained on the sentiment fixture words."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    corpus = [" ".join(POSITIVE_CUES + NEGATIVE_CUES + FILLER)] * 4
    tok.train_from_iterator(corpus, trainers.WordPieceTrainer(vocab_size=120, special_tokens=specials))
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", tok.token_to_id("[CLS]")), ("[SEP]", tok.token_to_id("[SEP]"))])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                                        sep_token="[SEP]", mask_token="[MASK]")
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                        num_attention_heads=4, max_position_embeddings=128, pad_token_id=tokenizer.pad_token_id)
    folder.mkdir(parents=True, exist_ok=True)
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_encoder_dir(tmp_path_factory) -> Path:
    return build_tiny_encoder(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture
def sentiment_files(tmp_path) -> dict[str, Path]:
    return {"train": write_jsonl(tmp_path / "sent_train.jsonl", sentiment_rows(96, seed=1)),
            "eval": write_jsonl(tmp_path / "sent_eval.jsonl", sentiment_rows(32, seed=2))}


@pytest.fixture(scope="session")
def postgres(team_server):
    """The team server's PostgreSQL, for Optuna studies; clients read its password from PGPASSFILE."""
    _, server, _ = team_server
    os.environ["PGPASSFILE"] = str(server.pgpass)
    return server


def every_experiment() -> list[str]:
    """The ids of every experiment of the current store (a grid's runs go to its spec's)."""
    from mlflow import MlflowClient

    return [e.experiment_id for e in MlflowClient().search_experiments()]


def evaluate_run():
    """The newest run that `pipelines.evaluate` logged, in whichever experiment it went to."""
    from mlflow import MlflowClient

    return next(r for r in MlflowClient().search_runs(every_experiment(), order_by=["attributes.start_time DESC"])
                if r.data.tags.get("mlflow.runName") == "evaluate")

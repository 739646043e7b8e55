"""One CLI convention, checked on every verb: `-o/--out` where a verb writes, `--json` where it prints results (and
then only JSON on stdout), `--template` as a name or a file, help on every option and argument, and defaults read
from the config dataclasses. A new verb must be added to the table, so it is checked too."""

from __future__ import annotations

import dataclasses
import json

import pytest
import typer
from typer.testing import CliRunner

from v2l.cli import app

runner = CliRunner()

# verb: (writes files, prints results)
CONVENTION = {
    "bench": (True, True),
    "info": (False, True),
    "version": (False, True),
    "classify": (False, True),
    "fewshot": (True, True),
    "caption": (False, True),
    "vqa": (False, True),
    "denoise": (True, True),
    "tokenize": (True, True),
    "reconstruct": (True, True),
    "decode": (True, True),
    "train": (True, True),
    "words": (False, True),
    "data export": (True, True),
    "codebook build": (True, True),
    "codebook show": (False, True),
    "recipe list": (False, True),
    "recipe show": (False, True),
    "recipe run": (True, True),
    "recipe ship": (True, True),
    "tune": (True, True),
    "restore": (True, True),
    "generate": (True, True),
    "seed caption": (False, True),
    "seed encode": (False, True),
    "seed reconstruct": (True, True),
    "seed generate": (True, True),
    "seed train": (True, True),
    "serve": (False, False),
    "plan": (True, True),
}


def _verbs() -> dict:
    out = {}

    def walk(cmd, path=()):
        if hasattr(cmd, "commands"):
            for name, sub in cmd.commands.items():
                walk(sub, (*path, name))
        else:
            out[" ".join(path)] = cmd

    walk(typer.main.get_command(app))
    return out


VERBS = _verbs()


def test_the_table_names_every_verb():
    assert set(VERBS) == set(CONVENTION)


@pytest.mark.parametrize("verb", sorted(CONVENTION))
def test_the_convention(verb):
    writes, prints = CONVENTION[verb]
    cmd = VERBS[verb]
    opts = {o: p for p in cmd.params for o in p.opts}
    if writes:
        assert "-o" in opts and "--out" in opts and opts["-o"] is opts["--out"], f"{verb}: -o/--out"
    if prints:
        assert "--json" in opts, f"{verb}: --json"
    for p in cmd.params:
        assert getattr(p, "help", None), f"{verb}: {p.name} has no help"
    if "--template" in opts:
        text = opts["--template"].help
        assert "paper" in text and "JSON file" in text, f"{verb}: --template takes a name or a file"


def _defaults_match(verb: str, config) -> list[str]:
    cmd = VERBS[verb]
    fields = {f.name: f.default for f in dataclasses.fields(config) if f.default is not dataclasses.MISSING}
    return [
        f"{p.name}: {p.default!r} != {fields[p.name]!r}"
        for p in cmd.params
        if p.name in fields and not isinstance(p.default, list | type(None)) and p.default != fields[p.name]
    ]


def test_defaults_are_read_from_their_configs():
    from v2l.codebooks.config import CodebookConfig
    from v2l.tasks.denoise import DenoiseConfig
    from v2l.training import TrainConfig

    assert _defaults_match("train", TrainConfig) == []
    assert _defaults_match("codebook build", CodebookConfig) == []
    assert _defaults_match("denoise", DenoiseConfig) == []
    checked = {p.name for p in VERBS["denoise"].params} & {f.name for f in dataclasses.fields(DenoiseConfig)}
    assert {"n", "m", "seed", "par_layers"} <= checked
    from v2l.tuning import TuneConfig

    tune_fields = {f.name for f in dataclasses.fields(TuneConfig)}
    settings = {p.name for p in VERBS["tune"].params} - {"out", "recipe", "resume", "dry_run", "ship", "data_root"}
    assert (
        settings - {"allow_nonempty", "as_json", "device", "dtype"} <= tune_fields
    )  # every setting is a TuneConfig field (defaults
    # None: the recipe's, or TuneConfig's)


@pytest.mark.parametrize(
    "args",
    [
        ["version", "--json"],
        ["recipe", "list", "--json"],
        ["recipe", "run", "cpu", "--dry-run", "--json"],
        ["recipe", "show", "table6", "--json"],
        ["tune", "--recipe", "lora-cpu", "--dry-run", "--json"],
    ],
)
def test_json_is_the_only_thing_on_stdout(args):
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    json.loads(res.stdout)  # the whole of stdout parses


def test_codebook_show_prints_text_or_json_never_both(tiny_codebook_dir):
    text = runner.invoke(app, ["codebook", "show", str(tiny_codebook_dir), "--top", "2"])
    assert text.exit_code == 0 and not text.stdout.lstrip().startswith("{") and "local:" in text.stdout
    as_json = runner.invoke(app, ["codebook", "show", str(tiny_codebook_dir), "--top", "2", "--json"])
    assert as_json.exit_code == 0
    data = json.loads(as_json.stdout)
    assert set(data) == {"counts", "top"} and len(data["top"]) == 2


def test_generation_templates_take_a_name_or_a_file(tmp_path):
    from v2l.errors import ConfigError
    from v2l.tasks.incontext import CAPTION_PAPER, GenerationTemplate

    assert GenerationTemplate.load(CAPTION_PAPER, "paper") is CAPTION_PAPER
    f = tmp_path / "t.json"
    f.write_text(json.dumps({"max_new_tokens": 7}))
    assert GenerationTemplate.load(CAPTION_PAPER, str(f)).max_new_tokens == 7
    with pytest.raises(ConfigError, match="use paper"):
        GenerationTemplate.load(CAPTION_PAPER, "fancy")

"""``iptalker demo``: the whole loop, locally, on a generated corpus, in one resumable command.

synth (real faces of the face bank speaking espeak-ng sentences, plus every bad input kind) ->
the pipeline's stages (``orchestration.pipeline``: curate with Ray in-process -> train SyncNet,
then IPTalker with DeepSpeed on CPU -> bundle -> evaluate -> register -> promote through the
gate) -> dub a held-out person's video with a new sentence. Everything lives under one workdir:
sqlite MLflow, local folders. A rerun skips finished stages; ``--from STAGE`` redoes from one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestration.pipeline import LoopStages, PipelineConfig, summary_lines
from orchestration.stages import Stage, StageRunner

if TYPE_CHECKING:
    from orchestration.settings import Settings

NEW_SENTENCE = ("Thank you very much for listening today, we will meet again soon.", "en-gb", 165)


def run_demo(settings: Settings, workdir: str | Path, *, videos: int = 8, seed: int = 0,
             redo_from: str | None = None, log: Callable[[str], None] = print) -> dict:
    """Run the demo's stages that have no record yet; returns every stage's outputs."""
    work = Path(workdir).resolve()
    settings = _with_whisper(settings, log)
    loop = LoopStages(settings, PipelineConfig(workdir=str(work), inputs=(str(work / "raw"),)), log)
    stages = [Stage("synth", lambda o: _synth(work / "raw", videos, seed))]
    stages += [Stage("curate", lambda o: _curate_holding_one_out(loop, o))]
    stages += [s for s in loop.stages() if s.name != "curate"]
    stages += [Stage("dub", lambda o: loop.dub(*_held_out_and_new_speech(loop, o)))]
    runner = StageRunner(work, stages, log)
    if redo_from:
        runner.redo_from(redo_from)
    outputs = runner.run()
    log("")
    log("Demo finished.")
    for line in summary_lines(outputs, loop.settings.tracking.tracking_uri):
        log(line)
    return outputs


def _with_whisper(settings: Any, log: Callable[[str], None]) -> Any:
    """The demo's encoder: the configured checkpoint, else the real tiny.en that `make setup`
    converted into .cache/whisper/, else (setup could not fetch it) random init, said out loud."""
    from preprocessing.whisper_weights import CHECKPOINT, FETCH_FAILED

    whisper = settings.preprocess.whisper
    if whisper.checkpoint or whisper.allow_random:
        return _model_reads(settings)
    if CHECKPOINT.is_file():
        whisper = dataclasses.replace(whisper, checkpoint=str(CHECKPOINT))
        log(f"Whisper encoder: tiny.en converted by `make setup` ({CHECKPOINT})")
    else:
        whisper = dataclasses.replace(whisper, allow_random=True)
        why = FETCH_FAILED.read_text().strip() if FETCH_FAILED.is_file() else "run `make setup`"
        log(f"WARNING: no Whisper weights at {CHECKPOINT} ({why}): the demo uses a RANDOM-INIT encoder")
    settings = dataclasses.replace(settings)
    settings.preprocess = dataclasses.replace(settings.preprocess, whisper=whisper)
    return _model_reads(settings)


def _model_reads(settings: Any) -> Any:
    """The demo's model reads its own encoder's features: ``model.audio_dim`` = the encoder width
    (a recipe written for another feature width would otherwise be refused by the loader)."""
    from preprocessing.audio_features import encoder_identity

    dim = encoder_identity(settings.preprocess.whisper)["dim"]
    if settings.model.audio_dim != dim:
        settings = dataclasses.replace(settings)
        settings.model = dataclasses.replace(settings.model, audio_dim=dim)
    return settings


def _synth(raw: Path, videos: int, seed: int) -> dict:
    from preprocessing.synthetic.corpus import generate_corpus, write_bad_inputs

    paths = generate_corpus(raw, videos, seed=seed, n_identities=max(2, videos // 2))
    bad = write_bad_inputs(raw / "bad", seed=seed)
    people = sorted({p.parent.name for p in paths})
    return {"raw": str(raw), "videos": len(paths), "bad_inputs": len(bad), "identities": people}


def _curate_holding_one_out(loop: LoopStages, outputs: dict) -> dict:
    """Curate the synthetic corpus with its last person held out (validation, evaluation and the
    final dub): a hash split of a few identities may leave val empty."""
    st = loop.settings
    if not st.curate.val_identities:
        st.curate = dataclasses.replace(st.curate, val_identities=(outputs["synth"]["identities"][-1],))
    return loop.curate(outputs, [outputs["synth"]["raw"]])


def _held_out_and_new_speech(loop: LoopStages, outputs: dict) -> tuple[str, str]:
    """A video of the held-out person and a sentence none of the corpus videos says."""
    import pandas as pd

    from preprocessing.encode import write_wav
    from preprocessing.synthetic.speech import SAMPLE_RATE, espeak

    inputs = pd.read_parquet(Path(outputs["curate"]["dataset"]) / "index" / "inputs.parquet")
    val = inputs[(inputs["split"] == "val") & (inputs["status"] == "accepted")]
    if val.empty:
        raise RuntimeError("the curated dataset has no accepted validation video to dub")
    video = str(val.sort_values("uri")["uri"].iloc[0])
    speech = loop.work / "dub" / "new_sentence.wav"
    speech.parent.mkdir(parents=True, exist_ok=True)
    write_wav(speech, espeak(*NEW_SENTENCE), SAMPLE_RATE)
    return video, str(speech)

"""The stage runner behind ``iptalker demo`` and ``iptalker pipeline``: finished stages are skipped
on a rerun, a failed stage is redone, ``--from`` redoes a stage and everything after it."""

from __future__ import annotations

import pytest

from orchestration.stages import Stage, StageRunner
from pipelines.errors import UserError


def make(calls: list[str], fail: set[str]):
    def stage(name: str):
        def fn(outputs: dict) -> dict:
            calls.append(name)
            if name in fail:
                raise RuntimeError(f"{name} broke")
            return {"value": len(outputs)}  # sees the outputs of every stage before it
        return Stage(name, fn)
    return [stage(n) for n in ("a", "b", "c")]


def test_rerun_skips_finished_stages_and_redoes_the_failed_one(tmp_path):
    calls: list[str] = []
    log: list[str] = []
    with pytest.raises(RuntimeError, match="b broke"):
        StageRunner(tmp_path, make(calls, {"b"}), log.append).run()
    assert calls == ["a", "b"]
    outputs = StageRunner(tmp_path, make(calls, set()), log.append).run()
    assert calls == ["a", "b", "b", "c"]  # a not redone
    assert outputs == {"a": {"value": 0}, "b": {"value": 1}, "c": {"value": 2}}
    assert any(line.startswith("[1/3] a: skipped, done at") for line in log)


def test_redo_from_drops_that_stage_and_the_later_ones(tmp_path):
    calls: list[str] = []
    StageRunner(tmp_path, make(calls, set())).run()
    runner = StageRunner(tmp_path, make(calls, set()))
    runner.redo_from("b")
    runner.run()
    assert calls == ["a", "b", "c", "b", "c"]
    with pytest.raises(UserError, match="unknown stage 'z'"):
        runner.redo_from("z")


def test_pipeline_with_a_given_syncnet_leaves_out_the_syncnet_stages(tmp_path):
    """A SyncNet trained once serves every IPTalker run: ``train.syncnet_checkpoint`` drops the two
    SyncNet stages (``test_multinode`` trains the IPTalker stage against such a file)."""
    import dataclasses

    from orchestration.pipeline import LoopStages, PipelineConfig
    from orchestration.settings import load_settings

    st = load_settings([], [], use_default_file=False)
    names = [s.name for s in LoopStages(st, PipelineConfig(workdir=str(tmp_path))).stages()]
    assert names[:4] == ["curate", "train-syncnet", "export-syncnet", "train-iptalker"]
    st.train = dataclasses.replace(st.train, syncnet_checkpoint="/experts/syncnet.pt")
    loop = LoopStages(st, PipelineConfig(workdir=str(tmp_path)))
    assert [s.name for s in loop.stages()] == ["curate", "train-iptalker", "bundle", "evaluate", "register",
                                               "promote"]

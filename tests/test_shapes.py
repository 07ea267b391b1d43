"""Load shapes: their ticks, their numbers, LOAD_SHAPE selection, and how Locust finds them."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import pytest
from locust.util.load_locustfile import load_locustfile
from test_gate_helpers import child_env, locust, shop

from locust_c.shapes import SHAPES, ParamShape, SoakShape, SpikeShape, StepShape, StressShape, shape_from_env


def ticks(shape: ParamShape, times: list[float]) -> list:
    result = []
    for t in times:
        shape.get_run_time = lambda t=t: t  # type: ignore[method-assign]
        result.append(shape.tick())
    return result


def test_step_adds_users_every_step_then_stops() -> None:
    shape = StepShape()
    assert ticks(shape, [0, 29.9, 30, 149.9, 150]) == [(10, 10.0), (10, 10.0), (20, 10.0), (50, 10.0), None]
    assert ticks(StepShape(step_users=3, step_duration=1, steps=2), [0, 1.5, 2]) == [(3, 10.0), (6, 10.0), None]


def test_spike_is_baseline_then_ten_times_then_recovery() -> None:
    shape = SpikeShape()
    got = ticks(shape, [0, 59.9, 60, 89.9, 90, 149.9, 150])
    assert got == [(10, 100.0), (10, 100.0), (100, 100.0), (100, 100.0), (10, 100.0), (10, 100.0), None]
    assert SpikeShape(baseline_users=4, spike_factor=5).spike_users == 20


def test_stress_ramps_up_holds_and_ramps_down() -> None:
    users = [tick[0] if tick else None for tick in ticks(StressShape(), [0, 30, 60, 179, 195, 209, 210])]
    assert users == [1, 50, 100, 100, 50, 3, None]


def test_soak_holds_its_users_for_the_duration() -> None:
    shape = SoakShape(users=20, ramp_up=10, duration=100)
    assert ticks(shape, [0, 109.9, 110]) == [(20, 2.0), (20, 2.0), None]


def test_numbers_are_checked() -> None:
    with pytest.raises(TypeError, match="StepShape has no number users"):
        StepShape(users=3)
    with pytest.raises(ValueError, match="SpikeShape.spike_factor is -1"):
        SpikeShape(spike_factor=-1)


def test_class_level_numbers_are_the_defaults() -> None:
    class Shape(StepShape):
        step_users = 7

    assert Shape().at(0) == (7, 10.0)
    assert Shape.abstract is False and StepShape.abstract is True


def test_shape_from_env() -> None:
    assert shape_from_env({}) is None
    assert shape_from_env({"LOAD_SHAPE": " "}) is None
    spike = shape_from_env({"LOAD_SHAPE": "Spike", "LOAD_SHAPE_SPIKE_FACTOR": "3", "LOAD_SHAPE_BASELINE_USERS": "2"})
    assert spike is not None and issubclass(spike, SpikeShape) and spike.abstract is False
    assert spike().spike_users == 6
    step = shape_from_env({"LOAD_SHAPE": "step"}, step={"step_users": 4})
    assert step is not None and step().at(0) == (4, 10.0)
    assert set(SHAPES) == {"step", "stress", "spike", "soak", "arrival"}
    # Seconds and rates are declared float: a fraction of them is a number; users are whole.
    stress = shape_from_env({"LOAD_SHAPE": "stress", "LOAD_SHAPE_HOLD": "1.5", "LOAD_SHAPE_PEAK_USERS": "8"})
    assert stress is not None and (stress().hold, stress().peak_users) == (1.5, 8)


@pytest.mark.parametrize(
    ("env", "defaults", "expected"),
    [
        ({"LOAD_SHAPE": "wave"}, {}, "LOAD_SHAPE='wave' is not a load shape (expected one of: step, stress"),
        ({"LOAD_SHAPE": "step", "LOAD_SHAPE_STEPS": "many"}, {}, "LOAD_SHAPE_STEPS='many' is not a whole number"),
        ({"LOAD_SHAPE": "stress", "LOAD_SHAPE_PEAK_USERS": "8.5"}, {}, "LOAD_SHAPE_PEAK_USERS='8.5' is not a whole"),
        ({"LOAD_SHAPE": "soak", "LOAD_SHAPE_DURATION": "1h"}, {}, "LOAD_SHAPE_DURATION='1h' is not a number"),
        ({"LOAD_SHAPE": "spike", "LOAD_SHAPE_SPIKE_FACTOR": "-2"}, {}, "LOAD_SHAPE_SPIKE_FACTOR='-2' must be >= 0"),
        ({"LOAD_SHAPE": "step"}, {"step": {"users": 1}}, "StepShape has no number users"),
        ({}, {"wave": {}}, "no shape named wave"),
    ],
)
def test_shape_from_env_errors(env: dict, defaults: dict, expected: str) -> None:
    with pytest.raises(ValueError, match=re.escape(expected)):
        shape_from_env(env, **defaults)


# ---------------------------------------------------------------------------------------------------- Locust finds them

USER = """
from locust import HttpUser, task

class Visitor(HttpUser):
    @task
    def index(self):
        self.client.get("/api/products")
"""


def found_shapes(tmp_path: Path, body: str) -> list:
    path = tmp_path / f"locustfile_{uuid.uuid4().hex}.py"
    path.write_text(USER + body)
    _users, shapes = load_locustfile(str(path))
    return shapes


def test_locust_finds_a_subclass_but_not_the_imported_bases(tmp_path: Path) -> None:
    assert found_shapes(tmp_path, "from locust_c.shapes import StepShape, SpikeShape, shape_from_env\n") == []
    shapes = found_shapes(tmp_path, "from locust_c.shapes import StepShape\nclass Shape(StepShape):\n    steps = 2\n")
    assert [type(s).__name__ for s in shapes] == ["Shape"] and shapes[0].steps == 2


def test_locust_finds_the_shape_load_shape_names(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    body = "from locust_c.shapes import shape_from_env\nShape = shape_from_env()\n"
    monkeypatch.delenv("LOAD_SHAPE", raising=False)
    assert found_shapes(tmp_path, body) == []
    monkeypatch.setenv("LOAD_SHAPE", "soak")
    shapes = found_shapes(tmp_path, body)
    assert len(shapes) == 1 and isinstance(shapes[0], SoakShape)


def test_a_real_run_follows_load_shape_step(tmp_path: Path) -> None:
    locustfile = tmp_path / "locustfile.py"
    locustfile.write_text(USER + "from locust_c.shapes import shape_from_env\nShape = shape_from_env()\n")
    env = child_env(LOAD_SHAPE="step", LOAD_SHAPE_STEP_USERS="2", LOAD_SHAPE_STEP_DURATION="1", LOAD_SHAPE_STEPS="2")
    with shop() as (url, _):
        result = locust(locustfile, "-H", url, env=env)
    assert result.returncode == 0, result.stderr
    updates = re.findall(r"Shape test updating to (\d+) users", result.stderr)
    assert updates[:2] == ["2", "4"]
    assert "Shape test stopping" in result.stderr

"""arrival_rate: the schedule of an open model, its late and dropped iterations (a clock of the test's own)."""

from __future__ import annotations

import pytest

from locust_c.arrival import ArrivalSchedule, arrival_rate


def test_iterations_are_due_every_one_over_rate_whoever_takes_them():
    s = ArrivalSchedule(100.0)
    dues = [s.take(1000.0) for _ in range(5)]  # five free users at once: the next five due times
    assert dues == pytest.approx([1000.0, 1000.01, 1000.02, 1000.03, 1000.04])
    assert s.issued == 5 and s.late == 0 and s.dropped == 0


def test_a_late_iteration_starts_at_once_and_is_counted_late():
    s = ArrivalSchedule(10.0, max_lag=1.0)
    s.take(0.0)
    assert s.take(0.5) == pytest.approx(0.1)  # due 0.4 s ago: within max_lag, run now
    assert s.late == 1 and s.dropped == 0


def test_iterations_more_than_max_lag_late_are_dropped_not_delayed():
    s = ArrivalSchedule(100.0, max_lag=1.0)
    assert s.take(0.0) == 0.0
    # Every user was busy for 3 s (a stall): the due times before 2.0 can no longer run within 1 s.
    due = s.take(3.0)
    assert due == pytest.approx(2.0)  # exactly max_lag late: still run
    assert s.dropped == 199  # 0.01 .. 1.99
    assert s.take(3.0) == pytest.approx(2.01)  # the schedule goes on where it was, not from now
    assert s.issued == 3


def test_poisson_arrivals_keep_the_rate_on_average():
    s = ArrivalSchedule(200.0, poisson=True, rng=__import__("random").Random(5))
    dues = [s.take(0.0) for _ in range(20_000)]
    assert 20_000 / dues[-1] == pytest.approx(200.0, rel=0.03)
    gaps = sorted(b - a for a, b in zip(dues, dues[1:], strict=False))
    assert gaps[len(gaps) // 2] == pytest.approx(0.6931 / 200.0, rel=0.05)  # the median gap of an exponential


@pytest.mark.parametrize(("kwargs", "message"), [({"rate": 0}, "rate must be > 0"),
                                                 ({"rate": 5, "max_lag": -1}, "max_lag must be >= 0")])
def test_bad_arguments_fail_where_the_locustfile_gives_them(kwargs, message):
    with pytest.raises(ValueError, match=message):
        arrival_rate(**kwargs)


class _User:
    pass


class _OtherUser:
    pass


class _TaskSet:
    def __init__(self, user):
        self.user = user


def test_the_wait_time_shares_one_schedule_per_user_class(monkeypatch):
    clock = [100.0]
    monkeypatch.setattr("locust_c.arrival.time.time", lambda: clock[0])
    wait = arrival_rate(4.0)
    a, b, other = _User(), _User(), _OtherUser()
    assert wait(a) == 0.0 and a.locust_c_due == 100.0
    assert wait(b) == pytest.approx(0.25) and b.locust_c_due == pytest.approx(100.25)
    assert wait(_TaskSet(a)) == pytest.approx(0.5)  # a TaskSet waits for its user, on its user's class schedule
    assert wait(other) == 0.0  # another class, another schedule
    per_user = arrival_rate(4.0, per_user=True)
    assert per_user(a) == 0.0 and per_user(b) == 0.0 and per_user(a) == pytest.approx(0.25)


def test_arrival_rate_is_imported_from_locust_c():
    import locust_c

    assert locust_c.arrival_rate is arrival_rate


def test_at_the_end_every_due_time_is_run_dropped_or_unstarted():
    s = ArrivalSchedule(10.0, max_lag=1.0)
    assert s.take(0.0) == 0.0
    s.finish(3.0)  # one user, busy from 0 s to the end: the due times 0.1 .. 2.9 never ran
    assert (s.issued, s.dropped, s.unstarted) == (1, 19, 10)  # 0.1-1.9 more than max_lag before the end
    t = ArrivalSchedule(10.0, max_lag=1.0)
    t.take(0.0)
    assert t.take(0.0) == pytest.approx(0.1)  # a second user, asleep until 0.1 ...
    t.finish(0.05)  # ... when the test stopped: that iteration never ran
    assert (t.issued, t.cancelled, t.dropped, t.unstarted) == (2, 1, 0, 0)
    u = ArrivalSchedule(10.0)
    u.take(0.0)
    due = u.take(0.0)
    u.cancel(due, 0.05)  # its user was stopped (a ramp down) while it waited for 0.1
    u.finish(0.05)
    assert (u.issued, u.cancelled) == (2, 1)  # cancelled once, not again at the end


def test_the_shape_sizes_the_users_by_littles_law_and_says_when_max_users_is_too_few(capsys):
    from types import SimpleNamespace

    from locust_c.shapes import ArrivalRateShape

    tallies = {"Visitor": {"busy_s": 0.0, "ended": 0, "dropped": 0}}
    events = SimpleNamespace(quitting=SimpleNamespace(add_listener=lambda f: quitting.append(f)))
    quitting: list = []
    shape = ArrivalRateShape(100, 40)
    shape.runner = SimpleNamespace(environment=SimpleNamespace(locust_c_arrival=lambda: tallies, events=events))
    assert shape.at(0) == (10, 10.0)  # one per 10 iterations a second before anything is measured
    tallies["Visitor"] = {"busy_s": 20 * 0.2, "ended": 20, "dropped": 0}  # 0.2 s an iteration
    assert shape.at(1)[0] == 30  # 100/s x 0.2 s x 1.5
    tallies["Visitor"] = {"busy_s": 4.0 + 20 * 0.1, "ended": 40, "dropped": 0}  # faster now: users stay
    assert shape.at(2)[0] == 30
    tallies["Visitor"] = {"busy_s": 6.0 + 20 * 0.5, "ended": 60, "dropped": 123}
    assert shape.at(3)[0] == 40  # 75 needed, 40 at most
    quitting[0]()
    assert "max_users=40 was too few: 100 iterations/s needed about 75 users; 123 iterations were dropped" in \
        capsys.readouterr().out


def test_a_share_of_zero_from_the_master_does_not_stop_a_new_user(monkeypatch):
    from locust_c.arrival import REGISTRY

    class Early:
        pass

    REGISTRY.reset(workers=2)
    try:
        wait = arrival_rate(10.0)
        REGISTRY.set_shares({"Early": 0.0})  # the master had not counted this worker's users yet
        monkeypatch.setattr("locust_c.arrival.time.time", lambda: 50.0)
        assert wait(Early()) == 0.0  # no error: the schedule runs 1 / workers of the rate until told otherwise
        assert wait.schedules[Early].rate == 5.0
        REGISTRY.set_shares({"Early": 1.0})
        assert wait.schedules[Early].rate == 10.0 and REGISTRY.tallies["Early"].rate == 10.0
    finally:
        REGISTRY.reset()
        REGISTRY.waits.remove(wait)

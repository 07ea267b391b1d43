"""A pytest-style locustfile on the C engine: each test function is a user's task, csession its client.

Named without test_ so that the project's own suite does not collect it; tests/test_locust_cli.py copies it to a
test_ name, which is what makes Locust load a file as pytest-style."""


def test_index_and_echo(csession):
    csession.get("/")
    r = csession.post("/echo", json={"order": 1}, name="/echo")
    r.raise_for_status()
    assert r.json()["method"] == "POST"

import requests


def test_sandbox_health(sandbox):
    r = requests.get(f"{sandbox.url}/_sandbox/health", timeout=5)
    assert r.status_code == 200
    assert r.json()["status"] == "ok"


def test_roles_exist(db):
    from django.contrib.auth.models import Group

    assert set(Group.objects.values_list("name", flat=True)) >= {"ops", "cx", "finance", "admin"}

"""storage/roles.py: a read-only PostgreSQL role for the dashboard, checked before anything is made."""

from __future__ import annotations

import uuid

import optuna
import psycopg2
import pytest
from sqlalchemy.engine import make_url

from errors import StorageError
from storage import open_storage
from storage.roles import check_readonly_role, ensure_readonly_role

# These tests ask and tell outside a worker, which Optuna warns of on a storage with heartbeats.
pytestmark = pytest.mark.filterwarnings("ignore:Heartbeat of storage:UserWarning")


@pytest.mark.parametrize(("url", "role", "message"), [
    ("sqlite:///x.db", "ro", "--readonly-role needs PostgreSQL storage (SQLite has no roles)"),
    ("postgresql://sarsweep@h/db", "Bad-Name", "--readonly-role: 'Bad-Name' is not a plain role name"),
    ("postgresql://sarsweep@h/db", "sarsweep", "--readonly-role: 'sarsweep' is the role sarsweep itself connects as"),
])
def test_a_role_that_cannot_be_made_is_refused_first(url: str, role: str, message: str) -> None:
    with pytest.raises(StorageError) as caught:
        check_readonly_role(url, role)
    assert str(caught.value).startswith(message)


def test_the_role_reads_every_table_and_writes_none(pg_url: str) -> None:
    role = f"sarsweep_ro_{uuid.uuid4().hex[:8]}"
    storage = open_storage(pg_url, create_schema=True)
    study = optuna.create_study(study_name="s", storage=storage)
    study.tell(study.ask(), 1.0)
    try:
        assert ensure_readonly_role(storage, role, "pw-for-test") is True
        assert ensure_readonly_role(storage, role, "pw-for-test") is False  # there already: password updated
        url = make_url(pg_url).set(username=role, password="pw-for-test")
        conn = psycopg2.connect(host=url.host, port=url.port or 5432, dbname=url.database, user=role,
                                password="pw-for-test")
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT count(*) FROM trials")
                assert cur.fetchone() == (1,)
                with pytest.raises(psycopg2.errors.InsufficientPrivilege):
                    cur.execute("DELETE FROM trials")
        finally:
            conn.close()
    finally:
        storage.engine.dispose()
        admin = psycopg2.connect(make_url(pg_url).render_as_string(hide_password=False).replace("+psycopg2", ""))
        admin.autocommit = True
        with admin.cursor() as cur:
            db = make_url(pg_url).database
            cur.execute(f'REVOKE ALL ON DATABASE "{db}" FROM "{role}"')
            cur.execute(f'DROP OWNED BY "{role}"')
            cur.execute(f'DROP ROLE IF EXISTS "{role}"')
        admin.close()

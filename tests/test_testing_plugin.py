"""The pytest plugin for the package's users (``monps_store.testing``): its helpers here, and
a small downstream project, installed, whose own tests use the fixtures through the
``pytest11`` entry point."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from monps_store.errors import LazyLoadError
from monps_store.models import QuantumFrictionMatrix
from monps_store.repositories import friction, teams
from monps_store.testing import no_lazy_loads, query_count
from tests.factories import add_friction, add_team


def test_query_count_counts_this_threads_statements(db):
    add_team("Lyon")
    with query_count() as queries:
        teams.get_by_name("Lyon")
        teams.get_by_league("Ligue 1")
    assert queries.count == 2
    assert all(sql.lstrip().startswith("SELECT") for sql in queries.statements)
    with query_count() as none:
        pass
    assert none.count == 0


def test_no_lazy_loads_names_the_model_and_field_and_lets_eager_loads_through(db):
    lyon, nice, lens = add_team("Lyon"), add_team("Nice"), add_team("Lens")
    add_friction(lyon, nice, "80")
    add_friction(nice, lens, "30")
    add_friction(lens, lyon, "20")
    (lazy, *_) = list(QuantumFrictionMatrix.select().order_by(QuantumFrictionMatrix.id))
    with no_lazy_loads(), pytest.raises(LazyLoadError,
                                        match=r"QuantumFrictionMatrix\.home_team"):
        lazy.home_team  # noqa: B018 - the read is the test
    with query_count() as queries, no_lazy_loads():
        pairs = friction.get_high_friction_matches(0)
        names = [(p.home_team.team_name, p.away_team.team_name) for p in pairs]
    # The rows, then their teams in one more query: two, whatever the number of rows.
    assert sorted(names) == [("Lens", "Lyon"), ("Lyon", "Nice"), ("Nice", "Lens")]
    assert queries.count == 2, queries.statements
    assert lazy.home_team.team_name == "Lyon"  # outside the block a lazy load still works


DOWNSTREAM = {
    "pyproject.toml": """
        [build-system]
        requires = ["setuptools>=68"]
        build-backend = "setuptools.build_meta"

        [project]
        name = "downstream-app"
        version = "0.1"
        dependencies = ["monps-store"]
    """,
    "downstream_app/__init__.py": """
        from monps_store.models import QuantumFrictionMatrix
        from monps_store.repositories import crud, friction


        def rivalries(threshold=70):
            return [(f.home_team.team_name, f.away_team.team_name)
                    for f in friction.get_high_friction_matches(threshold)]


        def rivalries_lazily(threshold=70):
            return [(f.home_team.team_name, f.away_team.team_name)
                    for f in QuantumFrictionMatrix.select().where(
                        QuantumFrictionMatrix.friction_score >= threshold)]
    """,
    "tests/test_app.py": """
        import pytest
        from monps_store.errors import LazyLoadError
        from monps_store.models import QuantumFrictionMatrix, TeamQuantumDNA
        from monps_store.repositories import crud
        from monps_store.testing import no_lazy_loads, query_count

        import downstream_app


        def add_pair():
            home = crud.create(TeamQuantumDNA, team_name="Lyon", league="L1")
            away = crud.create(TeamQuantumDNA, team_name="Nice", league="L1")
            crud.create(QuantumFrictionMatrix, home_team=home, away_team=away,
                        friction_score=80)


        def test_rivalries_in_one_query(monps_db):
            add_pair()
            with query_count() as queries, no_lazy_loads():
                assert downstream_app.rivalries() == [("Lyon", "Nice")]
            assert queries.count == 2  # the pairs, then their teams


        def test_the_lazy_version_is_caught(monps_db):
            add_pair()
            with no_lazy_loads(), pytest.raises(LazyLoadError, match="home_team"):
                downstream_app.rivalries_lazily()


        def test_each_test_starts_empty(monps_db, monps_server):
            assert crud.count(TeamQuantumDNA) == 0
            assert monps_server.sql("SELECT count(*) FROM quantum.team_quantum_dna") == [(0,)]
    """,
}


def test_a_downstream_project_installed_beside_the_package_uses_the_plugin(tmp_path,
                                                                           empty_database):
    project = tmp_path / "downstream"
    for name, text in DOWNSTREAM.items():
        path = project / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip())
    site = tmp_path / "site"
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--target", str(site), str(project)], capture_output=True, text=True)
    assert install.returncode == 0, install.stderr
    assert (site / "downstream_app" / "__init__.py").exists()
    env = {**os.environ, "PYTHONPATH": str(site), "MONPS_TEST_DATABASE_URL": empty_database}
    # Run from outside the project, so that its package is imported from where pip put it.
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                          "downstream/tests"], cwd=tmp_path, capture_output=True, text=True,
                         env=env)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "3 passed" in run.stdout, run.stdout

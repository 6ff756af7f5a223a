"""Shared pytest options: `--update-regression` rewrites the stored regression results."""


def pytest_addoption(parser):
    parser.addoption("--update-regression", action="store_true", default=False,
                     help="rewrite tests/regression/<case>/results_true.json from this build")

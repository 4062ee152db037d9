"""wfclock's development harness: the local control plane, Postgres, the pod runner and the local
stack (`make up`). Installed with the tests (`devstack/pyproject.toml`), never in the product image.
"""

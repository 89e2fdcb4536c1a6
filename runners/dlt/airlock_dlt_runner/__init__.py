"""airlock-dlt-runner: the airlock's job runner built on dlt (runners/dlt/README.md).

It honours the contract of every airlock job runner (src/runner/runner.h,
docs/runner.md): it reads an AnalyticsWorkspaceDataSource and a credentials
file, collects each spec.objects[].table into DIR/<table>.csv (or .csv.gz,
.parquet) with dlt's sql_database source, or an https connection's files
into DIR/<file name> with dlt's filesystem source, and describes the result with
`airlock rocrate build`, so its RO-Crate has the same form as the native
runner's.
"""

__version__ = "0.1.0"
RUNNER_NAME = "airlock-dlt-runner"

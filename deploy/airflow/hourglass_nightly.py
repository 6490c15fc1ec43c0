"""Airflow DAG: the nightly ``hourglass infer`` over the day's input prefix.

Copy this file into the Airflow DAGs folder of an environment where ``hourglass`` is installed
(or swap the BashOperator for a KubernetesPodOperator running REGISTRY/hourglass:0.1.0).
``{{ ds }}`` is the run's logical date (YYYY-MM-DD): a rerun of a day replaces its partition.
"""

import pendulum
from airflow import DAG
from airflow.operators.bash import BashOperator

INFER_COMMAND = (
    "hourglass infer"
    " --model-dir gs://BUCKET/hourglass/model"
    " --input gs://BUCKET/images/{{ ds }}/"
    " --output gs://BUCKET/hourglass/predictions"
    " --run-id {{ ds }}"
    " -- --runner=DataflowRunner --project=PROJECT --region=REGION --temp_location=gs://BUCKET/tmp/"
)

with DAG(
    dag_id="hourglass_nightly_infer",
    schedule="0 2 * * *",
    start_date=pendulum.datetime(2026, 11, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["hourglass"],
) as dag:
    BashOperator(task_id="infer", bash_command=INFER_COMMAND, retries=2)

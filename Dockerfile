# The SoleMate maintenance image: the official Airflow image plus our pinned dependencies and code.
# docker-compose.yaml builds it (and mounts dags/, plugins/, include/ over the copies for development);
# the Helm chart runs it as is (helm-values.yaml).
FROM apache/airflow:3.3.2

# The official image installs as the airflow user into its own environment; constraints.txt keeps
# every transitive version the tests ran with.
COPY --chown=airflow:0 requirements.txt constraints.txt /opt/solemate/
RUN pip install --no-cache-dir -r /opt/solemate/requirements.txt -c /opt/solemate/constraints.txt

# Baked in so that the image alone is a deployment (Helm, no bind mounts). Airflow puts plugins/ on
# sys.path; the package finds include/ next to it, as it does in this repository.
COPY --chown=airflow:0 dags/ /opt/airflow/dags/
COPY --chown=airflow:0 plugins/ /opt/airflow/plugins/
COPY --chown=airflow:0 include/ /opt/airflow/include/

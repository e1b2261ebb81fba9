-- The tracking profile's MLflow server keeps its runs in a database of its own, on the same
-- PostgreSQL as the prediction log. Runs once, when the data volume is first initialised.
CREATE DATABASE mlflow;

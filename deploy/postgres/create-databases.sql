-- Runs once, when the compose PostgreSQL volume is new: the telemetry service keeps
-- its data in a database of its own (the check-in database is POSTGRES_DB).
CREATE DATABASE telemetry;

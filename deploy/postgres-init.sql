-- The pool lives in database "hardmine" (POSTGRES_DB); Prefect's server gets its own.
CREATE DATABASE prefect OWNER hardmine;

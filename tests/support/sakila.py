"""MySQL's Sakila sample database (``tests/data/sakila``), loaded into a fresh
MariaDB database with the ``mariadb`` client, which runs its triggers and
procedures (``DELIMITER``) as written."""

import gzip
import re
import subprocess
from pathlib import Path

from sqlalchemy.engine import make_url

SAKILA = Path(__file__).parents[1] / "data" / "sakila"

TABLES = (
    *("actor", "address", "category", "city", "country", "customer", "film", "film_actor"),
    *("film_category", "film_text", "inventory", "language", "payment", "rental", "staff"),
    "store",
)
VIEWS = (
    *("actor_info", "customer_list", "film_list", "nicer_but_slower_film_list"),
    *("sales_by_film_category", "sales_by_store", "staff_list"),
)


def load_sakila(url: str) -> None:
    """Sakila's schema and data in the (existing, empty) database of ``url``."""
    parsed = make_url(url)
    name = parsed.database
    schema = re.sub(r"\bsakila\b", name, (SAKILA / "sakila-schema.sql").read_text()).encode()
    # bytes: the data holds a BLOB (a staff member's picture) that is no text
    data = gzip.decompress((SAKILA / "sakila-data.sql.gz").read_bytes())
    data = data.replace(b"USE sakila;", f"USE {name};".encode(), 1)
    command = [
        "mariadb",
        f"--host={parsed.host or '127.0.0.1'}",
        f"--port={parsed.port or 3306}",
        f"--user={parsed.username or 'root'}",
    ]
    if parsed.password:
        command.append(f"--password={parsed.password}")
    for script in (schema, data):
        subprocess.run(command, input=script, check=True, capture_output=True)
    # Statistics settled before any test reads: InnoDB gathers them in the
    # background after a load, and a plan chosen before they are in most
    # likely made the view sales_by_store run past the statement timeout.
    analyze = f"ANALYZE TABLE {', '.join(TABLES)};".encode()
    subprocess.run([*command, name], input=analyze, check=True, capture_output=True)


# Beside Sakila: the MySQL types it lacks, a binary key, a generated column,
# and a table without a primary key.
MYSQL_TYPES = """
CREATE TABLE mysql_types (
  code BINARY(4) NOT NULL PRIMARY KEY,
  flags BIT(5) NULL,
  clock TIME NULL,
  yr YEAR NULL,
  exact DECIMAL(30,10) NULL,
  huge BIGINT UNSIGNED NULL,
  tiny TINYINT NULL,
  ratio DOUBLE NULL,
  next_year INT AS (yr + 1) VIRTUAL,
  doc JSON NULL
);
CREATE TABLE no_key (label VARCHAR(20) NOT NULL, n INT NULL)
"""

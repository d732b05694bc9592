"""The read side: plain reads outside any transaction, on an engine of their own.

gate.py      a first-come-first-served wait for a read connection
reader.py    the read engine behind its gate; one retry on a dead connection
loader.py    point reads coalesced into one statement a batch
compiled.py  SELECTs compiled once and run on the driver's cursor
lists.py     pages, counts and exports of PostgREST's query language
"""

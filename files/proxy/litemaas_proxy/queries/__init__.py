"""SQL of the management plane, one module per table: ``keys``, ``users``, ``teams``, ``models``, ``spend``.

Handlers in ``api/`` call these functions and never write SQL themselves. Every function takes the
connection (or pool) to run on, so a handler decides the transaction. Table and column names come from
``litemaas_proxy.db``; values are always bound parameters, identifiers only ever come from those constants.
"""

"""Operator tools that run from the proxy image (``python -m litemaas_proxy.tools.<name>``).

They use only the standard library (plus psycopg2 when it is importable), so the image needs nothing extra.
"""

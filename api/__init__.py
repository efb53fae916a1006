"""The HTTP front: a Flask app factory (`api.factory.create_app`), thin views, one error
shape.

Importing this package imports nothing else: the serving command's gunicorn master imports
`api.server` before forking, and the gevent workers must import the database driver only
after they patch the standard library (see api/server.py).
"""

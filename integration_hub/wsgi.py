"""
WSGI config for integration_hub project.

It exposes the WSGI callable as a module-level variable named ``application``.

For more information on this file, see
https://docs.djangoproject.com/en/5.2/howto/deployment/wsgi/
"""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'integration_hub.settings')
os.umask(0o077)  # files the web process writes are owner-only (integration_hub/core/filemodes.py)

application = get_wsgi_application()

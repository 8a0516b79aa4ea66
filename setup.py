"""Shim so that older pip and `python setup.py develop` work; metadata lives in setup.cfg."""
from setuptools import setup

setup()
